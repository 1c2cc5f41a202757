"""Scoring for one alias slot of the credit-risk platform (seldon-core 1.19 and MLServer 1.7)."""

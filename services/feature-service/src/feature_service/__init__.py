"""The feature-service: Feast feature definitions, materialization, online and point-in-time retrieval.

The domain API lives in :mod:`feature_service.core` (``FeatureStoreCore``); the transports (the gRPC
servicer) only convert between their messages and its types. ``import feast`` is slow (10-17 s on
the CI machine), so this package imports it lazily: importing ``feature_service`` or its settings
does not import Feast.
"""

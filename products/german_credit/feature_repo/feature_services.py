"""Feature services: the model's inputs, the protected attributes, and the ground truth.

Each carries a ``version`` tag, recorded in a model's lineage: bump it when its feature list changes.
"""

from feast import FeatureService
from feature_views import (
    credit_label,
    credit_standing,
    demographics,
    employment_and_residence,
    loan_request,
    protected_attributes,
)
from on_demand import loan_affordability

credit_risk_v1 = FeatureService(
    name="credit_risk_v1",
    features=[loan_request, credit_standing, employment_and_residence, demographics, loan_affordability],
    description="Model inputs of the credit-risk model under the default feature policy.",
    tags={"version": "1"},
)
credit_risk_fairness_v1 = FeatureService(
    name="credit_risk_fairness_v1",
    features=[protected_attributes],
    description="Protected attributes for fairness monitoring; never model inputs.",
    tags={"version": "1"},
)
credit_risk_labels_v1 = FeatureService(
    name="credit_risk_labels_v1",
    features=[credit_label],
    description="Ground truth (offline only): creditability, bad = 1.",
    tags={"version": "1"},
)

"""The feature views: four of model inputs, the protected attributes, and the label (offline only)."""

from datetime import timedelta

from data_sources import (
    credit_label_push,
    credit_standing_push,
    demographics_push,
    employment_and_residence_push,
    loan_request_push,
    protected_attributes_push,
)
from entities import applicant
from feast import FeatureView, Field
from feast.types import Int64, String

TTL = timedelta(days=3650)

loan_request = FeatureView(
    name="loan_request",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="duration_in_month", dtype=Int64),
        Field(name="credit_amount", dtype=Int64),
        Field(name="purpose", dtype=String),
        Field(name="installment_rate_in_percentage_of_disposable_income", dtype=Int64),
        Field(name="other_debtors_or_guarantors", dtype=String),
        Field(name="other_installment_plans", dtype=String),
    ],
    source=loan_request_push,
    description="The credit applied for: amount, duration, purpose, installment rate, guarantors.",
    tags={"group": "model_input"},
)
credit_standing = FeatureView(
    name="credit_standing",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="status_of_existing_checking_account", dtype=String),
        Field(name="credit_history", dtype=String),
        Field(name="savings_account_and_bonds", dtype=String),
        Field(name="number_of_existing_credits_at_this_bank", dtype=Int64),
        Field(name="property", dtype=String),
    ],
    source=credit_standing_push,
    description="Accounts, savings, property and credit history at the time of application.",
    tags={"group": "model_input"},
)
employment_and_residence = FeatureView(
    name="employment_and_residence",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="present_employment_since", dtype=String),
        Field(name="job", dtype=String),
        Field(name="present_residence_since", dtype=Int64),
        Field(name="housing", dtype=String),
        Field(name="telephone", dtype=String),
    ],
    source=employment_and_residence_push,
    description="Employment, job, residence, housing and telephone.",
    tags={"group": "model_input"},
)
demographics = FeatureView(
    name="demographics",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="age_in_years", dtype=Int64),
        Field(name="number_of_people_being_liable_to_provide_maintenance_for", dtype=Int64),
    ],
    source=demographics_push,
    description="Age and number of dependants (model inputs).",
    tags={"group": "model_input"},
)
protected_attributes = FeatureView(
    name="protected_attributes",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="personal_status_and_sex", dtype=String),
        Field(name="foreign_worker", dtype=String),
    ],
    source=protected_attributes_push,
    description="Protected attributes, kept for fairness monitoring only; not model inputs.",
    tags={"group": "protected"},
)
# Labels have no TTL: a label, once known, stays the ground truth; never in the online store.
credit_label = FeatureView(
    name="credit_label",
    entities=[applicant],
    ttl=timedelta(0),
    schema=[Field(name="applicant_id", dtype=Int64), Field(name="creditability", dtype=Int64)],
    source=credit_label_push,
    online=False,
    description="Ground truth: creditability, bad = 1 (positive class); stamped when the label is known.",
    tags={"group": "label"},
)

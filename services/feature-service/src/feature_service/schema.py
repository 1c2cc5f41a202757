"""The German credit data's columns and how the feature views group them (no Feast import).

Kept apart from :mod:`feature_service.repo` so ingestion validation and the offline writers know the
layout without importing Feast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ENTITY_NAME = "applicant"
ENTITY_KEY = "applicant_id"
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
LABEL = "creditability"
#: Column of the label table: when the labelled application was made (the label's event time is
#: when it became known). Not a Feast feature: ``LabelledEntities`` reads it to build entity rows.
APPLICATION_TIMESTAMP = "application_timestamp"
#: Column of a labelled-entities result: the label's event timestamp (when it became known).
LABEL_TIMESTAMP = "label_timestamp"

Kind = Literal["int", "string", "timestamp"]


@dataclass(frozen=True)
class ViewSpec:
    """One feature view and its offline table.

    Attributes:
        name: feature view name.
        table: offline table name (Parquet file stem, or PostgreSQL table in the offline schema).
        features: ``(column, kind)`` pairs, in table order.
        online: whether the view is materialized to the online store (labels are not).
        push: whether the view has a push source for fresh values.
        description: what the view holds.
        extras: ``(column, kind)`` pairs of further offline columns that are not Feast features
            (nullable; e.g. the label table's ``application_timestamp``).
    """

    name: str
    table: str
    features: tuple[tuple[str, Kind], ...]
    online: bool = True
    push: bool = True
    description: str = ""
    extras: tuple[tuple[str, Kind], ...] = ()

    @property
    def feature_names(self) -> list[str]:
        """Feature columns, in table order."""
        return [name for name, _ in self.features]

    @property
    def columns(self) -> list[str]:
        """All columns of the offline table, in order: key, features, extras, event and created time."""
        return [
            ENTITY_KEY,
            *self.feature_names,
            *(name for name, _ in self.extras),
            EVENT_TIMESTAMP,
            CREATED_TIMESTAMP,
        ]

    @property
    def push_source_name(self) -> str:
        """Name of the view's push source."""
        return f"{self.name}_push"


LOAN_REQUEST = ViewSpec(
    "loan_request",
    "applicant_loan_request",
    (
        ("duration_in_month", "int"),
        ("credit_amount", "int"),
        ("purpose", "string"),
        ("installment_rate_in_percentage_of_disposable_income", "int"),
        ("other_debtors_or_guarantors", "string"),
        ("other_installment_plans", "string"),
    ),
    description="The credit applied for: amount, duration, purpose, installment rate, guarantors.",
)
CREDIT_STANDING = ViewSpec(
    "credit_standing",
    "applicant_credit_standing",
    (
        ("status_of_existing_checking_account", "string"),
        ("credit_history", "string"),
        ("savings_account_and_bonds", "string"),
        ("number_of_existing_credits_at_this_bank", "int"),
        ("property", "string"),
    ),
    description="Accounts, savings, property and credit history at the time of application.",
)
EMPLOYMENT_AND_RESIDENCE = ViewSpec(
    "employment_and_residence",
    "applicant_employment_and_residence",
    (
        ("present_employment_since", "string"),
        ("job", "string"),
        ("present_residence_since", "int"),
        ("housing", "string"),
        ("telephone", "string"),
    ),
    description="Employment, job, residence, housing and telephone.",
)
DEMOGRAPHICS = ViewSpec(
    "demographics",
    "applicant_demographics",
    (
        ("age_in_years", "int"),
        ("number_of_people_being_liable_to_provide_maintenance_for", "int"),
    ),
    description="Age and number of dependants (model inputs).",
)
PROTECTED_ATTRIBUTES = ViewSpec(
    "protected_attributes",
    "applicant_protected_attributes",
    (
        ("personal_status_and_sex", "string"),
        ("foreign_worker", "string"),
    ),
    description="Protected attributes, kept for fairness monitoring only; not model inputs.",
)
CREDIT_LABEL = ViewSpec(
    "credit_label",
    "applicant_credit_label",
    ((LABEL, "int"),),
    online=False,
    description="Ground truth: creditability, bad = 1 (positive class); stamped when the label is known.",
    extras=((APPLICATION_TIMESTAMP, "timestamp"),),
)

#: Views whose features are model inputs under the default feature policy.
MODEL_VIEWS: tuple[ViewSpec, ...] = (LOAN_REQUEST, CREDIT_STANDING, EMPLOYMENT_AND_RESIDENCE, DEMOGRAPHICS)
#: Every view, in ingestion order.
ALL_VIEWS: tuple[ViewSpec, ...] = (*MODEL_VIEWS, PROTECTED_ATTRIBUTES, CREDIT_LABEL)
VIEWS_BY_NAME: dict[str, ViewSpec] = {v.name: v for v in ALL_VIEWS}

#: The 20 attributes of the German credit data, in file order, and the label.
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "status_of_existing_checking_account",
    "duration_in_month",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_account_and_bonds",
    "present_employment_since",
    "installment_rate_in_percentage_of_disposable_income",
    "personal_status_and_sex",
    "other_debtors_or_guarantors",
    "present_residence_since",
    "property",
    "age_in_years",
    "other_installment_plans",
    "housing",
    "number_of_existing_credits_at_this_bank",
    "job",
    "number_of_people_being_liable_to_provide_maintenance_for",
    "telephone",
    "foreign_worker",
)
CSV_COLUMNS: tuple[str, ...] = (*ATTRIBUTE_COLUMNS, LABEL)
INT_ATTRIBUTES: frozenset[str] = frozenset(
    name for view in ALL_VIEWS for name, kind in view.features if kind == "int" and name != LABEL
)

#: On-demand feature: monthly installment, and the request-time overrides it accepts.
ODFV_NAME = "loan_affordability"
MONTHLY_INSTALLMENT = "monthly_installment"
REQUEST_SOURCE_NAME = "loan_request_overrides"
#: caller-facing name -> request source field (distinct names: Feast merges request data and
#: feature values into one row, so a request field named ``credit_amount`` would collide).
REQUEST_FIELDS: dict[str, str] = {
    "credit_amount": "requested_credit_amount",
    "duration_in_month": "requested_duration_in_month",
}
#: Every name a request value is accepted under (caller-facing or the request source's) -> the latter.
REQUEST_ALIASES: dict[str, str] = {**REQUEST_FIELDS, **{v: v for v in REQUEST_FIELDS.values()}}

FEATURE_SERVICE_MODEL = "credit_risk_v1"
FEATURE_SERVICE_FAIRNESS = "credit_risk_fairness_v1"

assert sorted(n for v in (*MODEL_VIEWS, PROTECTED_ATTRIBUTES) for n in v.feature_names) == sorted(
    ATTRIBUTE_COLUMNS
), "every attribute belongs to exactly one feature view"

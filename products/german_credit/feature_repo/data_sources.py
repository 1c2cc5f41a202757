"""Where the views' rows live: one table per feature view, each with a push source for fresh values.

The paths are the tables' names: the platform places each table in its profile's offline store
(Parquet files under the data folder, or PostgreSQL tables) and keeps these names.
"""

from feast import FileSource, PushSource, RequestSource
from feast.field import Field
from feast.types import Int64


def _table(name: str) -> FileSource:
    return FileSource(
        name=name,
        path=f"{name}.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )


loan_request_push = PushSource(name="loan_request_push", batch_source=_table("applicant_loan_request"))
credit_standing_push = PushSource(
    name="credit_standing_push", batch_source=_table("applicant_credit_standing")
)
employment_and_residence_push = PushSource(
    name="employment_and_residence_push", batch_source=_table("applicant_employment_and_residence")
)
demographics_push = PushSource(name="demographics_push", batch_source=_table("applicant_demographics"))
protected_attributes_push = PushSource(
    name="protected_attributes_push", batch_source=_table("applicant_protected_attributes")
)
credit_label_push = PushSource(name="credit_label_push", batch_source=_table("applicant_credit_label"))

loan_request_overrides = RequestSource(
    name="loan_request_overrides",
    schema=[
        Field(name="requested_credit_amount", dtype=Int64),
        Field(name="requested_duration_in_month", dtype=Int64),
    ],
    description="Optional request-time values of the loan request; null means 'use the stored value'.",
)

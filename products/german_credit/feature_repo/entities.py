"""The entity of the German credit product."""

from feast import Entity, ValueType

applicant = Entity(
    name="applicant",
    join_keys=["applicant_id"],
    value_type=ValueType.INT64,
    description="A credit applicant; applicant_id is the row number in the ingested file (from 1).",
)

"""On-demand feature view: the monthly installment, with request-time overrides of the loan request."""

from typing import Any

from data_sources import loan_request_overrides
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feature_views import loan_request


@on_demand_feature_view(
    sources=[loan_request[["credit_amount", "duration_in_month"]], loan_request_overrides],
    schema=[Field(name="monthly_installment", dtype=Float64)],
    mode="python",
    description="monthly_installment = credit_amount / duration_in_month (DM per month).",
)
def loan_affordability(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Monthly installment in DM per month = credit_amount / duration_in_month (batched).

    A non-null ``requested_credit_amount`` / ``requested_duration_in_month`` (request data) replaces
    the stored value. Null (or NaN, as an offline null may arrive) in the amount, or a null or zero
    duration, gives null. Self-contained: Feast serializes it into the registry.
    """
    import math

    def usable(value: Any) -> bool:
        return value is not None and not (isinstance(value, float) and math.isnan(value))

    amounts = inputs["credit_amount"]
    months = inputs["duration_in_month"]
    n = len(amounts)
    req_amounts = inputs.get("requested_credit_amount") or [None] * n
    req_months = inputs.get("requested_duration_in_month") or [None] * n
    out: list[float | None] = []
    for amount, month, req_amount, req_month in zip(amounts, months, req_amounts, req_months, strict=True):
        a = req_amount if usable(req_amount) else amount
        m = req_month if usable(req_month) else month
        out.append(float(a) / float(m) if usable(a) and usable(m) and float(m) != 0.0 else None)
    return {"monthly_installment": out}

"""The Feast repository of the feature-service: entity, feature views, on-demand view, feature services.

Built by :func:`build_repo` from the settings, so the batch source class follows the profile
(:mod:`feature_service.sources`) and the TTL follows configuration; the definitions are the same in
both profiles.

* Entity ``applicant`` (join key ``applicant_id``, Int64).
* Feature views ``loan_request``, ``credit_standing``, ``employment_and_residence``, ``demographics``
  (model inputs), ``protected_attributes`` (fairness monitoring only) and ``credit_label``
  (``creditability``, bad = 1; ``online=False``: labels never reach the online store). Each has a
  push source ``<view>_push`` for fresh values.
* On-demand feature view ``loan_affordability`` with ``monthly_installment`` = credit_amount /
  duration_in_month, in python mode (a pandas-mode view costs several times more per online call:
  docs/design.md, "Measured facts"), the same function offline and online. Its request source
  ``loan_request_overrides`` carries optional caller-supplied ``requested_credit_amount`` /
  ``requested_duration_in_month``; a non-null request value overrides the stored one.
  Feast 0.67 raises ``RequestDataNotFoundInEntityRowsException`` online (and
  ``RequestDataNotFoundInEntityDfException`` offline) when a request field is absent, so
  the online and historical reads (:mod:`feature_service.online_read`, :mod:`feature_service.historical_read`)
  always send both fields, null when the caller gave no override.
* Feature services ``credit_risk_v1`` (model inputs + installment), ``credit_risk_fairness_v1``
  (protected attributes) and ``credit_risk_labels_v1`` (ground truth, offline only), each with a
  ``version`` tag (``"1"``).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from feature_service.schema import (
    ALL_VIEWS,
    CREDIT_LABEL,
    ENTITY_KEY,
    ENTITY_NAME,
    FEATURE_SERVICE_FAIRNESS,
    FEATURE_SERVICE_MODEL,
    LOAN_REQUEST,
    MODEL_VIEWS,
    MONTHLY_INSTALLMENT,
    ODFV_NAME,
    PROTECTED_ATTRIBUTES,
    REQUEST_FIELDS,
    REQUEST_SOURCE_NAME,
)
from feature_service.settings import FeatureServiceSettings
from feature_service.sources import SourceFactory, source_factory

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource, RequestSource

FEATURE_SERVICE_LABELS = "credit_risk_labels_v1"
#: Tag holding a feature service's version (checked against ``feature_service_version`` requests and
#: recorded in a model's lineage); bump it whenever the service's feature list changes.
VERSION_TAG = "version"


def monthly_installment_udf(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Monthly installment in DM per month = credit_amount / duration_in_month (python mode, batched).

    A non-null ``requested_credit_amount`` / ``requested_duration_in_month`` (request data) replaces
    the stored value. Null (or NaN, as an offline null may arrive) in the amount, or a null or zero
    duration, gives null. Self-contained: Feast serializes it into the registry.

    Args:
        inputs: columns ``credit_amount``, ``duration_in_month``, ``requested_credit_amount``,
            ``requested_duration_in_month``, each a list with one value per entity row.

    Returns:
        ``{"monthly_installment": [...]}``, floats or None.
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


@dataclass
class FeastRepo:
    """The Feast objects of one project, ready for ``FeatureStore.apply``."""

    entity: Entity
    feature_views: dict[str, FeatureView]
    push_sources: dict[str, PushSource]
    request_source: RequestSource
    on_demand_feature_views: dict[str, OnDemandFeatureView]
    feature_services: dict[str, FeatureService]
    ttl: timedelta = field(default=timedelta(0))

    def objects(self) -> list[Any]:
        """Every object, in an order ``FeatureStore.apply`` accepts."""
        return [
            self.entity,
            *self.push_sources.values(),
            self.request_source,
            *self.feature_views.values(),
            *self.on_demand_feature_views.values(),
            *self.feature_services.values(),
        ]


def build_repo(settings: FeatureServiceSettings, factory: SourceFactory | None = None) -> FeastRepo:
    """Build the Feast objects for the configured profile.

    Args:
        settings: the service settings (profile, TTL).
        factory: batch source factory; default the one of ``settings.profile``.

    Returns:
        The repository's objects.
    """
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        Field,
        OnDemandFeatureView,
        PushSource,
        RequestSource,
        ValueType,
    )
    from feast.types import Float64, Int64, String

    factory = factory or source_factory(settings)
    kinds = {"int": Int64, "string": String}
    applicant = Entity(
        name=ENTITY_NAME,
        join_keys=[ENTITY_KEY],
        value_type=ValueType.INT64,
        description="A credit applicant; applicant_id is the row number in the ingested file (from 1).",
    )
    views: dict[str, FeatureView] = {}
    pushes: dict[str, PushSource] = {}
    for spec in ALL_VIEWS:
        batch = factory.batch_source(spec)
        source: Any = batch
        if spec.push:
            source = PushSource(name=spec.push_source_name, batch_source=batch)
            pushes[spec.name] = source
        views[spec.name] = FeatureView(
            name=spec.name,
            entities=[applicant],
            # Labels have no TTL: a label, once known, stays the ground truth.
            ttl=timedelta(0) if spec is CREDIT_LABEL else settings.feature_ttl,
            schema=[Field(name=ENTITY_KEY, dtype=Int64)]
            + [Field(name=name, dtype=kinds[kind]) for name, kind in spec.features],
            source=source,
            online=spec.online,
            description=spec.description,
            tags={
                "group": "label"
                if spec is CREDIT_LABEL
                else "protected"
                if spec is PROTECTED_ATTRIBUTES
                else "model_input"
            },
        )

    overrides = RequestSource(
        name=REQUEST_SOURCE_NAME,
        schema=[Field(name=f, dtype=Int64) for f in REQUEST_FIELDS.values()],
        description="Optional request-time values of the loan request; null means 'use the stored value'.",
    )
    loan = views[LOAN_REQUEST.name]
    # Feast's @on_demand_feature_view decorator rewrites the function's __module__ to "__main__" (so
    # dill stores it by value and readers need not import this package), which breaks a second
    # build in the same process; build the view from a fresh copy of the function instead.
    udf = types.FunctionType(
        monthly_installment_udf.__code__,
        monthly_installment_udf.__globals__,
        monthly_installment_udf.__name__,
    )
    udf.__module__ = "__main__"
    affordability = OnDemandFeatureView(
        name=ODFV_NAME,
        sources=[loan[["credit_amount", "duration_in_month"]], overrides],
        schema=[Field(name=MONTHLY_INSTALLMENT, dtype=Float64)],
        mode="python",
        udf=udf,
        udf_string=inspect.getsource(monthly_installment_udf),
        description="monthly_installment = credit_amount / duration_in_month (DM per month).",
    )

    services = {
        FEATURE_SERVICE_MODEL: FeatureService(
            name=FEATURE_SERVICE_MODEL,
            features=[views[v.name] for v in MODEL_VIEWS] + [affordability],
            description="Model inputs of the credit-risk model under the default feature policy.",
            tags={VERSION_TAG: "1"},
        ),
        FEATURE_SERVICE_FAIRNESS: FeatureService(
            name=FEATURE_SERVICE_FAIRNESS,
            features=[views[PROTECTED_ATTRIBUTES.name]],
            description="Protected attributes for fairness monitoring; never model inputs.",
            tags={VERSION_TAG: "1"},
        ),
        FEATURE_SERVICE_LABELS: FeatureService(
            name=FEATURE_SERVICE_LABELS,
            features=[views[CREDIT_LABEL.name]],
            description="Ground truth (offline only): creditability, bad = 1.",
            tags={VERSION_TAG: "1"},
        ),
    }
    return FeastRepo(
        entity=applicant,
        feature_views=views,
        push_sources=pushes,
        request_source=overrides,
        on_demand_feature_views={ODFV_NAME: affordability},
        feature_services=services,
        ttl=settings.feature_ttl,
    )

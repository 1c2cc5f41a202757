"""The inference-gateway's domain core: validation, enrichment, routing, scoring, logging.

REST (:mod:`inference_gateway.app`) and gRPC (:mod:`inference_gateway.servicer`) both call
:class:`GatewayCore`; they only convert shapes.

Enrichment precedence (per feature the model takes):

1. a request value for the feature, when not null, wins;
2. otherwise the feature store's value, when its status is PRESENT;
3. otherwise the feature is **missing** (status NULL_VALUE, MISSING or OUTSIDE_TTL, or not served):
   a required input then fails the request (INVALID_ARGUMENT / 422 listing every missing required
   input); an optional one is sent as null to the model's imputer and listed in
   ``missing_features``. The gateway never fills a default itself.

Request values the feature service declares (``GetFeatureService``'s ``request_values``: the
caller-facing names of the product's ``[serving].request_fields``, inputs of its on-demand features)
are passed to the feature-service with the entity row; values named like a stored feature override
it. A name that is neither (the request source's own field name included: one name per value) is
INVALID_ARGUMENT, as is a value whose type differs from the feature service's schema (an integer
for a DOUBLE feature is widened exactly; an explicit null means "not given").

An applicant the feature store does not know (no stored row in any feature view) with no request
value is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from creditrisk.common.v1 import serving_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk_kit import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from creditrisk_telemetry import current_trace_id
from google.protobuf import timestamp_pb2
from opentelemetry import trace

from inference_gateway import metrics
from inference_gateway.features import FeatureClient, FeatureSchema
from inference_gateway.logbuffer import PredictionLogger
from inference_gateway.model_client import BadGateway, Score
from inference_gateway.registry import ModelVersionInfo, RegistryClient
from inference_gateway.routing import Router, Slot
from inference_gateway.values import Value, check_plain, to_proto

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer("inference_gateway")

APPROVE, DECLINE = serving_pb2.DECISION_APPROVE, serving_pb2.DECISION_DECLINE


class PayloadTooLarge(ResourceExhausted):
    """Over a configured limit (batch size, message size): RESOURCE_EXHAUSTED / HTTP 413."""

    http_status = 413


@dataclass(frozen=True)
class BadValue:
    """A request value that could not even be read (wrong JSON shape, no oneof branch)."""

    reason: str


RawValue = Value | BadValue


@dataclass
class PredictInput:
    """One credit application as the transports hand it over.

    Attributes:
        applicant_id: the entity key; None when the request did not set it.
        request_values: feature name -> plain value (None = explicit null) or :class:`BadValue`.
        client_request_id: the caller's id, echoed.
        event_time: the application's time; None = the gateway's clock.
    """

    applicant_id: int | None
    request_values: dict[str, RawValue] = field(default_factory=dict)
    client_request_id: str = ""
    event_time: dt.datetime | None = None


@dataclass
class Prediction:
    """The decision on one application (PredictResponse in domain form)."""

    event_id: str
    probability_of_default: float
    decision: int
    decision_threshold: float
    model_name: str
    model_version: int
    serving_slot: int
    features: dict[str, Value]
    missing_features: list[str]
    trace_id: str
    client_request_id: str
    event_time: dt.datetime


@dataclass
class ItemError:
    """The error of one batch item."""

    error: ServiceError


@dataclass
class ServingModel:
    """A slot as ListServingModels reports it."""

    slot: int
    alias: str
    model_name: str
    model_version: int | None
    mode: int
    canary_share: float
    ready: bool
    since: dt.datetime | None


class GatewayCore:
    """Scores applications (see the module docstring).

    Args:
        features: the feature-service client.
        registry: the registry-gateway client.
        router: the routing table.
        logger: the prediction logger.
        feature_service_version: expected feature service version ("" = the model's lineage).
        max_batch_size: most items of one batch.
        shadow_concurrency: most shadow scorings in flight; beyond it a shadow is skipped (counted).
    """

    def __init__(
        self,
        *,
        features: FeatureClient,
        registry: RegistryClient,
        router: Router,
        logger: PredictionLogger,
        feature_service_version: str = "",
        max_batch_size: int = 256,
        shadow_concurrency: int = 64,
    ) -> None:
        self.features = features
        self.registry = registry
        self.router = router
        self.logger = logger
        self.feature_service_version = feature_service_version
        self.max_batch_size = max_batch_size
        self.shadow_concurrency = shadow_concurrency
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.shadow_skipped = 0

    # ----------------------------------------------------------------- readiness

    async def feature_service_ready(self) -> bool:
        return await self.features.serving()

    def champion_ready(self) -> bool:
        return self.router.champion.ready

    def buffer_below_cap(self) -> bool:
        return not self.logger.full

    async def readiness(self) -> dict[str, bool]:
        """Every readiness condition by name (REST readiness answers this)."""
        try:
            fs = await asyncio.wait_for(self.feature_service_ready(), timeout=self.features.deadline_s)
        except Exception:
            fs = False
        return {
            "feature_service": fs,
            "champion_slot": self.champion_ready(),
            "prediction_log_buffer_below_cap": self.buffer_below_cap(),
        }

    # ----------------------------------------------------------------- predict

    async def predict(self, request: PredictInput, *, field_prefix: str = "") -> Prediction:
        """Score one application.

        Raises:
            InvalidArgument: missing applicant id; unknown or wrongly typed request values; missing
                required inputs (every one listed).
            NotFound: unknown applicant and no request values.
            Unavailable: feature-service or model server down or too slow, champion slot not ready,
                or the prediction log buffer at its cap.
        """
        with _TRACER.start_as_current_span("inference.predict") as span:
            try:
                prediction = await self._predict(request, field_prefix, span)
            except ServiceError as exc:
                metrics.PREDICTIONS.labels(outcome=exc.grpc_status_code().name.lower(), slot="").inc()
                raise
            metrics.PREDICTIONS.labels(
                outcome="ok", slot=serving_pb2.ServingSlot.Name(prediction.serving_slot).lower()
            ).inc()
            return prediction

    async def _predict(self, request: PredictInput, prefix: str, span: Any) -> Prediction:
        if request.applicant_id is None:
            raise InvalidArgument(f"{prefix}applicant_id", "required")
        applicant_id = request.applicant_id
        if self.logger.full:
            raise Unavailable("the prediction log buffer is at its cap; retry later", retry_after_s=1.0)
        route = self.router.route(applicant_id)
        answer = route.answer
        assert answer.info is not None
        info = answer.info
        span.set_attribute("inference.slot", answer.alias)
        span.set_attribute("inference.routed_version", info.version)

        # One budget for the whole enrichment step (schema read, when not cached, + online read).
        try:
            async with asyncio.timeout(self.features.deadline_s):
                schema = await self.features.schema()
                overrides, request_inputs = self._check_request_values(
                    request.request_values, schema, info, prefix
                )
                version = self.feature_service_version or info.feature_service_version
                online = await self.features.online(
                    applicant_id, request_inputs, version=version, types=schema.request_values
                )
        except TimeoutError as exc:
            raise Unavailable("feature-service did not answer within the deadline") from exc
        given = {k: v for k, v in request.request_values.items() if v is not None}
        if not online.known and not given:
            raise NotFound("applicant", str(applicant_id), description="unknown to the feature store")
        merged: dict[str, Value] = dict(online.values)
        merged.update(overrides)

        record, missing = self._model_input(info, merged, prefix)
        score = await answer.client.score(record, info.inputs)
        scored_info = await self._scored_info(info, score)
        if scored_info is not info:
            record, missing = self._model_input(scored_info, merged, prefix)
        threshold = score.threshold if score.threshold is not None else scored_info.threshold
        if threshold is None:
            raise BadGateway("no decision threshold for the scoring model version")

        event_time = request.event_time or dt.datetime.now(dt.UTC)
        prediction = Prediction(
            event_id=str(uuid.uuid4()),
            probability_of_default=score.probability,
            decision=DECLINE if score.probability >= threshold else APPROVE,
            decision_threshold=threshold,
            model_name=score.model_name,
            model_version=score.version,
            serving_slot=answer.slot,
            features=record,
            missing_features=missing,
            trace_id=current_trace_id(),
            client_request_id=request.client_request_id,
            event_time=event_time,
        )
        span.set_attribute("inference.model_version", score.version)
        span.set_attribute("inference.event_id", prediction.event_id)
        self.logger.submit(_event(prediction, applicant_id, answer.mode))
        if route.shadow is not None:
            self._start_shadow(route.shadow, merged, prediction, applicant_id)
        return prediction

    def _check_request_values(
        self,
        values: Mapping[str, RawValue],
        schema: FeatureSchema,
        info: ModelVersionInfo,
        prefix: str,
    ) -> tuple[dict[str, Value], dict[str, Value]]:
        """Type-check request values; split them into feature overrides and request-source inputs."""
        violations: list[FieldViolation] = []
        overrides: dict[str, Value] = {}
        inputs: dict[str, Value] = {}
        for name in sorted(values):
            raw = values[name]
            path = f"{prefix}request_values.{name}"
            if isinstance(raw, BadValue):
                violations.append(FieldViolation(path, raw.reason))
                continue
            value_type = schema.features.get(name) or schema.request_values.get(name) or info.inputs.get(name)
            if value_type is None:
                violations.append(
                    FieldViolation(path, "unknown feature or request value (not in the feature service)")
                )
                continue
            value, reason = check_plain(raw, value_type)
            if reason is not None:
                violations.append(FieldViolation(path, reason))
                continue
            if value is None:
                continue  # explicit null: not given
            if name in schema.request_values:
                inputs[name] = value
            if name in schema.features or name in info.inputs:
                overrides[name] = value
        if violations:
            raise InvalidArgument.from_violations(violations)
        return overrides, inputs

    @staticmethod
    def _model_input(
        info: ModelVersionInfo, merged: Mapping[str, Value], prefix: str
    ) -> tuple[dict[str, Value], list[str]]:
        record = {name: merged.get(name) for name in info.inputs}
        missing = sorted(name for name, value in record.items() if value is None)
        missing_required = [name for name in missing if name in info.required]
        if missing_required:
            raise InvalidArgument.from_violations(
                [
                    FieldViolation(
                        f"{prefix}request_values.{name}",
                        f"required by {info.name} version {info.version}: no value in the feature store "
                        "or the request",
                    )
                    for name in missing_required
                ]
            )
        return record, missing

    async def _scored_info(self, routed: ModelVersionInfo, score: Score) -> ModelVersionInfo:
        """The version that actually scored (routing can lag a swap)."""
        if score.version == routed.version and score.model_name == routed.name:
            return routed
        try:
            return await self.registry.version(score.model_name, score.version)
        except Unavailable:
            _LOGGER.warning(
                "version %s of %s scored but the registry cannot describe it; using the routed signature",
                score.version,
                score.model_name,
            )
            return routed

    # ----------------------------------------------------------------- shadow

    def _start_shadow(
        self, slot: Slot, merged: Mapping[str, Value], primary: Prediction, applicant_id: int
    ) -> None:
        if len(self._shadow_tasks) >= self.shadow_concurrency:
            self.shadow_skipped += 1
            metrics.SHADOW.labels(outcome="skipped").inc()
            return
        task = asyncio.create_task(self._shadow(slot, dict(merged), primary, applicant_id), name="shadow")
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self, slot: Slot, merged: dict[str, Value], primary: Prediction, applicant_id: int
    ) -> None:
        info = slot.info
        if info is None:
            return
        try:
            record, missing = self._model_input(info, merged, "")
            score = await slot.client.score(record, info.inputs)
            scored = await self._scored_info(info, score)
            threshold = score.threshold if score.threshold is not None else scored.threshold
            if threshold is None:
                raise BadGateway("no decision threshold for the shadow version")
        except ServiceError as exc:
            metrics.SHADOW.labels(outcome="failed").inc()
            _LOGGER.info("shadow scoring on %s failed: %s", slot.alias, exc)
            return
        shadow = Prediction(
            event_id=str(uuid.uuid4()),
            probability_of_default=score.probability,
            decision=DECLINE if score.probability >= threshold else APPROVE,
            decision_threshold=threshold,
            model_name=score.model_name,
            model_version=score.version,
            serving_slot=slot.slot,
            features=record,
            missing_features=missing,
            trace_id=primary.trace_id,
            client_request_id=primary.client_request_id,
            event_time=primary.event_time,
        )
        self.logger.submit(_event(shadow, applicant_id, slot.mode, primary_event_id=primary.event_id))
        metrics.SHADOW.labels(outcome="ok").inc()

    async def wait_shadows(self) -> None:
        """Wait for the shadow scorings in flight (drain, tests)."""
        while self._shadow_tasks:
            await asyncio.gather(*list(self._shadow_tasks), return_exceptions=True)

    # ----------------------------------------------------------------- batch, list

    async def predict_batch(self, requests: Sequence[PredictInput]) -> list[Prediction | ItemError]:
        """Score several applications; each item succeeds or fails on its own.

        Raises:
            PayloadTooLarge: more items than ``max_batch_size``.
            InvalidArgument: no item.
            Unavailable: a backend down for every item.
        """
        self.check_batch_size(len(requests))
        semaphore = asyncio.Semaphore(16)

        async def one(index: int, item: PredictInput) -> Prediction | ItemError:
            async with semaphore:
                try:
                    return await self.predict(item, field_prefix=f"requests[{index}].")
                except ServiceError as exc:
                    return ItemError(exc)

        results = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        errors = [r.error for r in results if isinstance(r, ItemError)]
        if errors and len(errors) == len(results) and all(isinstance(e, Unavailable) for e in errors):
            raise errors[0]
        return list(results)

    def check_batch_size(self, count: int) -> None:
        """Refuse a batch of ``count`` items before any work.

        Raises:
            PayloadTooLarge: more items than ``max_batch_size``.
            InvalidArgument: no item.
        """
        if count > self.max_batch_size:
            _LOGGER.warning("batch of %d items refused (limit %d)", count, self.max_batch_size)
            raise PayloadTooLarge(f"batch of {count} items exceeds the limit of {self.max_batch_size}")
        if not count:
            raise InvalidArgument("requests", "at least one request is required")

    def serving_models(self) -> list[ServingModel]:
        """The slots and their state."""
        out = []
        for slot in self.router.slots:
            out.append(
                ServingModel(
                    slot=slot.slot,
                    alias=slot.alias,
                    model_name=self.router.model_name,
                    model_version=slot.version,
                    mode=slot.mode,
                    canary_share=self.router.canary_share
                    if slot.mode == serving_pb2.SERVING_MODE_CANARY
                    else 0.0,
                    ready=slot.ready,
                    since=slot.since,
                )
            )
        return out


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def _event(p: Prediction, applicant_id: int, mode: int, *, primary_event_id: str = "") -> dpb.PredictionEvent:
    event = dpb.PredictionEvent(
        event_id=p.event_id,
        applicant_id=applicant_id,
        probability_of_default=p.probability_of_default,
        decision=p.decision,
        decision_threshold=p.decision_threshold,
        model_name=p.model_name,
        model_version=p.model_version,
        serving_slot=p.serving_slot,
        mode=mode,
        event_time=timestamp(p.event_time),
        trace_id=p.trace_id,
        primary_event_id=primary_event_id,
        missing_features=p.missing_features,
    )
    for name, value in p.features.items():
        event.features[name].CopyFrom(to_proto(value))
    return event

"""REST transport (FastAPI): the same API as gRPC, over :class:`GatewayCore`.

Routes: ``POST /v1/predict``, ``POST /v1/predict:batch``, ``GET /v1/models``, ``GET /livez``
(liveness), ``GET /readyz`` (readiness: feature-service SERVING, champion slot ready, prediction
log buffer below its cap, not draining), ``GET /metrics`` (Prometheus), ``GET /openapi.json``,
``GET /docs``.

Shapes: the proto field names (``applicant_id``, the entity key whatever the product's join key is
named; the proto3 JSON lowerCamelCase names are accepted too); the OpenAPI schema lists the
product's request fields (:func:`predict_schema`). A request value is a plain JSON scalar typed by
the feature service's schema, or its proto3 JSON form (``{"int64Value": "5000"}``). A response
renders feature values as plain JSON values and enums by name. Strict JSON both ways (orjson):
``NaN`` / ``Infinity`` are refused in requests and never written (a missing value is ``null``).

Errors: ``{"error": {"code": <gRPC code number>, "status": "INVALID_ARGUMENT", "message": ...,
"field_violations": [{"field", "description"}], "trace_id": ...}}`` with the HTTP status of the
kit's exception (422 naming fields, 404, 413, 503 ...). A body over ``max_request_bytes`` is 413
before it is parsed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import orjson
from creditrisk.common.v1 import serving_pb2
from creditrisk_kit import (
    FieldViolation,
    HttpMetricsMiddleware,
    InvalidArgument,
    NaiveTimestamps,
    ServiceError,
    parse_timestamp,
)
from creditrisk_kit.auth import Authenticator
from creditrisk_kit.auth.http import AuthMiddleware, check_routes
from creditrisk_products import Product
from creditrisk_telemetry import current_trace_id
from fastapi import FastAPI, Request
from fastapi.responses import Response
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from inference_gateway import metrics
from inference_gateway.access import HTTP_POLICY, Access, Rate, RateLimiter, batch_outcome, record
from inference_gateway.core import (
    BadValue,
    GatewayCore,
    ItemError,
    PayloadTooLarge,
    PredictInput,
    Prediction,
    RawValue,
)
from inference_gateway.values import parse_rest_value

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer("inference_gateway.rest")
_UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

_FIELDS = {
    "applicant_id": "applicant_id",
    "applicantId": "applicant_id",
    "request_values": "request_values",
    "requestValues": "request_values",
    "client_request_id": "client_request_id",
    "clientRequestId": "client_request_id",
    "event_time": "event_time",
    "eventTime": "event_time",
}


# ---------------------------------------------------------------- OpenAPI documentation models


class PredictResponseBody(BaseModel):
    """PredictResponse (REST shape)."""

    event_id: str
    probability_of_default: float
    decision: str
    decision_threshold: float
    model_name: str
    model_version: int
    serving_slot: str
    features: dict[str, int | float | str | bool | None]
    missing_features: list[str]
    trace_id: str
    client_request_id: str
    event_time: str


class ErrorBody(BaseModel):
    code: int
    status: str
    message: str
    field_violations: list[dict[str, str]] = []
    trace_id: str = ""


class BatchItemBody(BaseModel):
    prediction: PredictResponseBody | None = None
    error: ErrorBody | None = None


class BatchResponseBody(BaseModel):
    results: list[BatchItemBody]


class ServingModelBody(BaseModel):
    slot: str
    alias: str
    model_name: str
    model_version: int | None
    mode: str
    canary_share: float
    ready: bool
    since: str | None


class ServingModelsBody(BaseModel):
    models: list[ServingModelBody]


def predict_schema(product: Product | None = None) -> dict[str, Any]:
    """The OpenAPI schema of a predict request; with ``product``, its join key named and its
    request fields (``[serving].request_fields``, caller-facing names) listed under
    ``request_values``. Other names are the feature service's stored features (overrides); all
    are typed by the feature service's schema at request time."""
    scalar = {"type": ["integer", "number", "string", "boolean", "null"]}
    key = "The feature store's entity key"
    values: dict[str, Any] = {
        "type": "object",
        "additionalProperties": scalar,
        "description": "Request-time values by feature name (typed by the feature service's schema).",
    }
    if product is not None:
        key += f" (the product's join key `{product.entity.join_key}`)"
        service = product.features.model_service
        values["description"] = (
            f"Request-time values by name, typed by the feature service `{service}`'s schema: its "
            "request fields (listed) and its stored features (overrides)."
        )
        values["properties"] = {
            name: {**scalar, "description": f"request field (the request source's `{source}`)"}
            for name, source in product.serving.request_fields.items()
        }
    return {
        "type": "object",
        "required": ["applicant_id"],
        "properties": {
            "applicant_id": {"type": "integer", "format": "int64", "description": key + "."},
            "request_values": values,
            "client_request_id": {"type": "string"},
            "event_time": {"type": "string", "format": "date-time"},
        },
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": dict[str, ErrorBody], "description": text}
    for code, text in {
        404: "unknown applicant and no request values",
        413: "body or batch over the configured limits",
        422: "invalid request (fields named)",
        503: "a backend is down, the champion slot is not ready, or the log buffer is at its cap",
    }.items()
}


# ---------------------------------------------------------------- conversion


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def _retry_after(exc: ServiceError) -> dict[str, str] | None:
    """``Retry-After`` (whole seconds, rounded up: RFC 9110 section 10.2.3) of an error that
    carries a retry hint (rate limited, buffer full)."""
    delay = getattr(exc, "retry_after_s", None)
    return None if delay is None else {"Retry-After": str(max(1, math.ceil(delay)))}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def prediction_body(p: Prediction, echo: bool = True) -> dict[str, Any]:
    """The REST shape of ``p``; ``features`` only when ``echo`` (the caller's role allows)."""
    body = {
        "event_id": p.event_id,
        "probability_of_default": p.probability_of_default,
        "decision": serving_pb2.Decision.Name(p.decision),
        "decision_threshold": p.decision_threshold,
        "model_name": p.model_name,
        "model_version": p.model_version,
        "serving_slot": serving_pb2.ServingSlot.Name(p.serving_slot),
        "features": p.features,
        "missing_features": p.missing_features,
        "trace_id": p.trace_id,
        "client_request_id": p.client_request_id,
        "event_time": _iso(p.event_time),
    }
    if not echo:
        del body["features"]
    return body


def error_body(error: ServiceError) -> dict[str, Any]:
    code = error.grpc_status_code()
    body: dict[str, Any] = {"code": code.value[0], "status": code.name, "message": error.message}
    if isinstance(error, InvalidArgument):
        body["field_violations"] = [{"field": v.field, "description": v.reason} for v in error.violations]
    body["trace_id"] = current_trace_id()
    return body


def parse_predict(raw: Any, prefix: str = "", naive: NaiveTimestamps = "refuse") -> PredictInput:
    """A PredictInput from a decoded JSON object.

    ``event_time`` is an RFC 3339 date-time; one without an offset is refused, or read as UTC
    when ``naive`` is ``"utc"`` (``INFERENCE_GATEWAY_NAIVE_TIMESTAMPS``).

    Raises:
        InvalidArgument: naming every malformed field.
    """
    if not isinstance(raw, dict):
        raise InvalidArgument(prefix.rstrip(".") or "body", "expected a JSON object")
    violations: list[FieldViolation] = []
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        name = _FIELDS.get(key)
        if name is None:
            violations.append(FieldViolation(f"{prefix}{key}", "unknown field"))
        else:
            fields[name] = value
    applicant_id = None
    raw_id = fields.get("applicant_id")
    if isinstance(raw_id, str) and raw_id.lstrip("-").isdigit():
        raw_id = int(raw_id)
    if raw_id is None:
        pass
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool) and -(2**63) <= raw_id < 2**63:
        applicant_id = raw_id
    else:
        violations.append(FieldViolation(f"{prefix}applicant_id", "expected an int64"))
    values: dict[str, RawValue] = {}
    raw_values = fields.get("request_values") or {}
    if not isinstance(raw_values, dict):
        violations.append(FieldViolation(f"{prefix}request_values", "expected an object of values by name"))
        raw_values = {}
    for name, value in raw_values.items():
        parsed, reason = parse_rest_value(value)
        values[name] = BadValue(reason) if reason is not None else parsed
    client_request_id = fields.get("client_request_id") or ""
    if not isinstance(client_request_id, str):
        violations.append(FieldViolation(f"{prefix}client_request_id", "expected a string"))
        client_request_id = ""
    event_time = None
    raw_time = fields.get("event_time")
    if raw_time is not None:
        try:  # each item's time on its own (creditrisk_kit.timestamps)
            event_time = parse_timestamp(raw_time, field=f"{prefix}event_time", naive=naive)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if violations:
        raise InvalidArgument.from_violations(violations)
    if applicant_id is None:
        raise InvalidArgument(f"{prefix}applicant_id", "required")
    return PredictInput(applicant_id, values, client_request_id, event_time)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over ``limit`` bytes (413) before parsing."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("body", "not valid JSON (NaN and Infinity are not JSON)") from exc


# ---------------------------------------------------------------- the app


def create_app(
    core: GatewayCore,
    *,
    body_limit: int,
    draining: Any = None,
    naive_timestamps: NaiveTimestamps = "refuse",
    authenticator: Authenticator | None = None,
    access: Access | None = None,
    product: Product | None = None,
) -> FastAPI:
    """The FastAPI app over ``core``.

    Args:
        core: the gateway core.
        body_limit: largest request body, in bytes.
        draining: callable returning True once the process drains (readiness then fails).
        naive_timestamps: an ``event_time`` without an offset is ``"refuse"``d (422) or ``"utc"``.
        authenticator: when given, every route needs the role of
            :data:`~inference_gateway.access.HTTP_POLICY` (the kit's ``AuthMiddleware``; 401 / 403).
        access: rate limits, echo and access log (default: no limit, features echoed).
        product: the product served: its join key and request fields are documented in the
            OpenAPI schema (:func:`predict_schema`).

    Raises:
        ValueError: a route without a policy entry (default deny), when ``authenticator`` is given.
    """
    guard = access or Access(RateLimiter(Rate(0)), ())
    predict_body = predict_schema(product)
    batch_body = {
        "type": "object",
        "required": ["requests"],
        "properties": {"requests": {"type": "array", "items": predict_body}},
    }
    app = FastAPI(
        title="inference-gateway",
        version="1.0.0",
        description="Credit-risk scoring: enrichment, champion / challenger routing, prediction logging.",
        # FastAPI's own OpenTelemetry server span (W3C traceparent in, http.route): kept, without
        # its per-operation spans (dependencies, endpoint: two spans more per request) and
        # without the probes and the scrape.
        telemetry={
            "operation_spans": False,
            "exclude": lambda scope: scope.get("path") in _UNTRACED_PATHS,
        },
    )
    if authenticator is not None:  # inside the metrics middleware: refusals are counted
        app.add_middleware(AuthMiddleware, authenticator=authenticator, policy=HTTP_POLICY)
    app.add_middleware(HttpMetricsMiddleware)  # http_server_* per route template (creditrisk_kit.metrics)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        if exc.grpc_status_code().name == "INTERNAL":
            _LOGGER.error("internal error on %s: %s", request.url.path, exc, exc_info=exc)
            body = {
                "code": 13,
                "status": "INTERNAL",
                "message": "internal error; see server log",
                "trace_id": current_trace_id(),
            }
            return _json({"error": body}, exc.http_status_code())
        _LOGGER.info(
            "%s %s -> %s",
            request.method,
            request.url.path,
            exc.grpc_status_code().name,
            extra={"http_status": exc.http_status_code(), "fields": exc.log_fields()},
        )
        return _json({"error": error_body(exc)}, exc.http_status_code(), _retry_after(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        _LOGGER.exception("unexpected error on %s", request.url.path)
        body = {
            "code": 13,
            "status": "INTERNAL",
            "message": "internal error; see server log",
            "trace_id": current_trace_id(),
        }
        return _json({"error": body}, 500)

    def _span(request: Request, name: str) -> Any:
        if trace.get_current_span().get_span_context().is_valid:
            # inside FastAPI's server span, which already continued the caller's trace
            return _TRACER.start_as_current_span(name, kind=trace.SpanKind.INTERNAL)
        context = propagate.extract(dict(request.headers))
        return _TRACER.start_as_current_span(name, context=context, kind=trace.SpanKind.SERVER)

    @app.post(
        "/v1/predict",
        response_model=None,
        responses={200: {"model": PredictResponseBody}, **_ERRORS},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": predict_body}}}
        },
        summary="Score one credit application",
    )
    async def predict(request: Request) -> Response:
        with _span(request, "POST /v1/predict"):
            principal = None
            applicant: int | None = None
            given: list[PredictInput] = []
            try:
                principal = guard.admit()  # a rate-limited call is recorded too
                body = await read_json(request, body_limit)
                parsed = parse_predict(body, naive=naive_timestamps)
                applicant, given = parsed.applicant_id, [parsed]
                prediction = await core.predict(parsed)
            except ServiceError as exc:  # answered inside the span: the error carries the trace id
                record("POST /v1/predict", principal, [applicant], exc.grpc_status_code().name, given)
                return await _service_error(request, exc)
            record("POST /v1/predict", principal, [applicant], "OK", given)
            return _json(prediction_body(prediction, guard.echo(principal)))

    @app.post(
        "/v1/predict:batch",
        response_model=None,
        responses={200: {"model": BatchResponseBody}, **_ERRORS},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": batch_body}}}
        },
        summary="Score several applications; each item succeeds or fails on its own",
    )
    async def predict_batch(request: Request) -> Response:
        with _span(request, "POST /v1/predict:batch"):
            principal = None
            try:  # refused before any item is read (body, rate limit, batch size): recorded too
                body = await read_json(request, body_limit)
                if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
                    raise InvalidArgument("requests", "expected an array of predict requests")
                items = body["requests"]
                principal = guard.admit(len(items))
                core.check_batch_size(len(items))
            except ServiceError as exc:
                record("POST /v1/predict:batch", principal, [], exc.grpc_status_code().name)
                raise
            parsed: list[PredictInput | ItemError] = []
            for i, item in enumerate(items):
                try:
                    parsed.append(parse_predict(item, f"requests[{i}].", naive_timestamps))
                except InvalidArgument as exc:
                    parsed.append(ItemError(exc))
            valid = [p for p in parsed if isinstance(p, PredictInput)]
            applicants = [p.applicant_id for p in valid]
            try:
                scored = iter(await core.predict_batch(valid)) if valid else iter(())
            except ServiceError as exc:
                record("POST /v1/predict:batch", principal, applicants, exc.grpc_status_code().name, valid)
                raise
            echo = guard.echo(principal)
            outcomes: list[Prediction | ItemError] = []
            results: list[dict[str, Any]] = []
            for p in parsed:
                outcome = p if isinstance(p, ItemError) else next(scored)
                outcomes.append(outcome)
                if isinstance(outcome, ItemError):
                    results.append({"error": error_body(outcome.error)})
                else:
                    results.append({"prediction": prediction_body(outcome, echo)})
            record("POST /v1/predict:batch", principal, applicants, batch_outcome(outcomes), valid)
            return _json({"results": results})

    @app.get("/v1/models", response_model=ServingModelsBody, summary="The model server slots and their state")
    async def models() -> Response:
        guard.admit()
        out = []
        for m in core.serving_models():
            out.append(
                {
                    "slot": serving_pb2.ServingSlot.Name(m.slot),
                    "alias": m.alias,
                    "model_name": m.model_name,
                    "model_version": m.model_version,
                    "mode": serving_pb2.ServingMode.Name(m.mode),
                    "canary_share": m.canary_share,
                    "ready": m.ready,
                    "since": _iso(m.since) if m.since else None,
                }
            )
        return _json({"models": out})

    @app.get("/livez", summary="Liveness: the process serves")
    async def livez() -> Response:
        return _json({"live": True})

    @app.get("/readyz", summary="Readiness: backends, champion slot, log buffer below its cap")
    async def readyz() -> Response:
        checks = await core.readiness()
        if draining is not None and draining():
            checks["not_draining"] = False
        ready = all(checks.values())
        return _json({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        metrics.LOG_PENDING.labels(where="disk").set(core.logger.buffer.count)
        metrics.LOG_PENDING.labels(where="total").set(core.logger.pending)
        metrics.LOG_BUFFER_BYTES.set(core.logger.buffer.bytes)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if authenticator is not None:
        check_routes(app, HTTP_POLICY)
    return app

"""Runtime 2: an MLServer 1.7 custom runtime for one alias slot (Open Inference Protocol V2).

MLServer (Apache 2.0) serves it over V2 REST (``POST /v2/models/<name>/infer``) and gRPC
(``inference.GRPCInferenceService/ModelInfer``) from one process (``parallel_workers`` 0: the model
lives in the server process, no inference pool round trip). ``python -m model_server mlserver``
writes ``settings.json`` + ``model-settings.json`` and runs ``mlserver start``.

Why not mlserver-mlflow's runtime as is: it loads one fixed ``model_uri`` through pyfunc (the
slow scikit-learn path), cannot follow an alias, and checks no digests. This runtime wraps the
same :class:`~model_server.slot.Slot` as the seldon runtime.

Request: one V2 input per feature, named as in the signature, with the signature's type:
``double`` -> ``FP64`` (``INT64`` / ``INT32`` accepted and converted exactly), ``long`` ->
``INT64``, ``string`` -> ``BYTES`` (UTF-8), shape ``[n]`` or ``[n, 1]``; a feature left out is
missing in every row; on REST ``null`` marks one missing value. Response: outputs
``probability_of_default`` (FP64 ``[n]``) and ``decision`` (BYTES ``[n]``), ``model_version`` = the
registry version that scored the request, ``parameters`` = registered model name, alias,
threshold, scorer. Bad input: HTTP 400 / gRPC INVALID_ARGUMENT naming the field
(``inputs.<feature>``).

Tracing: MLServer's own OpenTelemetry (``tracing_server`` in ``settings.json``, written by
``python -m model_server mlserver`` when the ``OTEL_*`` variables ask for OTLP/gRPC export) makes a
server span of every V2 REST (FastAPI instrumentation) and gRPC (aio interceptor) request that
continues the caller's W3C ``traceparent``. Inside it the runtime's ``model_server.predict`` span
(the process's provider from :func:`creditrisk_telemetry.configure_telemetry`, the same
``OTEL_*`` variables) is its child; without MLServer's span (``tracing_server`` unset) it continues
the ``traceparent`` MLServer copies from the request's headers or metadata into
``parameters.headers``. Attributes: model name and version only, never an input value.

Metrics: ``model_server_serving_version{alias}`` (gauge, the registry version this slot serves, 0
before the first one loads, -1 for a non-numeric version) on MLServer's metrics port
(``/metrics``), read from the slot at each scrape.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from model_server import readiness
from model_server.settings import load_settings
from model_server.signature import MAX_ROWS, Column, InvalidInput, cast_value, to_array
from model_server.slot import NoModel, Slot

LOGGER = logging.getLogger("model_server.mlserver")
_TRACER = trace.get_tracer("model_server")
ACCEPTED_DATATYPES: dict[str, frozenset[str]] = {
    "double": frozenset({"FP64", "INT64", "INT32"}),
    "float": frozenset({"FP32", "FP64", "INT32"}),
    "long": frozenset({"INT64", "INT32"}),
    "integer": frozenset({"INT32"}),
    "boolean": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, (list, tuple)):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
        return out
    return [data]


def _value(column: Column, datatype: str, value: Any, field: str) -> Any:
    if column.kind == "string":
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(field, "not UTF-8") from exc
        return cast_value(column, value, field)
    if isinstance(value, float) and math.isnan(value) and column.kind in ("double", "float"):
        return None
    if datatype.startswith("INT") and isinstance(value, float):
        raise InvalidInput(field, f"{datatype} data holds a non-integer {value!r}")
    return cast_value(column, value, field)


def columns_from_v2(payload: InferenceRequest, columns: list[Column]) -> tuple[dict[str, np.ndarray], int]:
    """Typed columns from V2 inputs, one input per feature (see the module docstring).

    Raises:
        InvalidInput: unknown or duplicate input, wrong datatype, shapes that disagree, bad values.
    """
    by_name = {c.name: c for c in columns}
    seen: dict[str, list[Any]] = {}
    n: int | None = None
    if not payload.inputs:
        raise InvalidInput("inputs", "no inputs")
    for inp in payload.inputs:
        field = f"inputs.{inp.name}"
        column = by_name.get(inp.name)
        if column is None:
            raise InvalidInput(field, "unknown feature (not in the model signature)")
        if inp.name in seen:
            raise InvalidInput(field, "given twice")
        datatype = str(getattr(inp.datatype, "value", inp.datatype))
        if datatype not in ACCEPTED_DATATYPES[column.kind]:
            raise InvalidInput(
                field,
                f"datatype {datatype} does not fit {column.kind} "
                f"(expected {' / '.join(sorted(ACCEPTED_DATATYPES[column.kind]))})",
            )
        values = _flatten(inp.data.root if hasattr(inp.data, "root") else inp.data)
        shape = list(inp.shape)
        if not shape or math.prod(shape) != len(values) or any(d != 1 for d in shape[1:]):
            raise InvalidInput(
                field, f"shape {shape} does not fit {len(values)} value(s) (use [n] or [n, 1])"
            )
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise InvalidInput(field, f"{len(values)} rows where other inputs have {n}")
        seen[inp.name] = [
            _value(column, datatype, v, field if n == 1 else f"{field}[{i}]") for i, v in enumerate(values)
        ]
    assert n is not None
    if n == 0:
        raise InvalidInput("inputs", "no rows")
    if n > MAX_ROWS:
        raise InvalidInput("inputs", f"at most {MAX_ROWS} rows per request")
    typed: dict[str, np.ndarray] = {}
    for column in columns:
        values = seen.get(column.name)
        if values is None:
            values = [cast_value(column, None, f"inputs.{column.name}")] * n
        typed[column.name] = to_array(column, values)
    return typed, n


def caller_context(payload: InferenceRequest) -> otel_context.Context | None:
    """The parent of the request's ``model_server.predict`` span.

    Returns:
        None (the current context) inside MLServer's own server span, which already continued the
        caller's trace; else the W3C context extracted from the request headers (REST) or metadata
        (gRPC) that MLServer puts into ``payload.parameters.headers`` (an empty context when there
        is no ``traceparent``: the span starts a trace).
    """
    if trace.get_current_span().get_span_context().is_valid:
        return None
    headers = getattr(payload.parameters, "headers", None) if payload.parameters is not None else None
    carrier = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


_SERVING_VERSION: Any = None


def _serving_version_gauge() -> Any:
    """``model_server_serving_version`` in prometheus-client's default registry (the one MLServer's
    metrics endpoint serves with ``parallel_workers`` 0); made once per process, on first load, not
    at import (MLServer asks for metrics made lazily: with parallel workers it first swaps in
    prometheus-client's multiprocess value class)."""
    global _SERVING_VERSION
    if _SERVING_VERSION is None:
        from prometheus_client import Gauge

        _SERVING_VERSION = Gauge(
            "model_server_serving_version",
            "Registry version this slot serves (0: none loaded yet; -1: a non-numeric version).",
            ["alias"],
        )
    return _SERVING_VERSION


_REFUSED: Any = None


def _refused_counter() -> Any:
    """``model_server_refused_versions_total{alias,reason}``: versions the slot refused (approval,
    digests, content) or stopped serving (revoked); made lazily as the gauge above."""
    global _REFUSED
    if _REFUSED is None:
        from prometheus_client import Counter

        _REFUSED = Counter(
            "model_server_refused_versions",
            "Versions refused by this slot, by reason (unsigned, bad_signature, downgrade, revoked ...).",
            ["alias", "reason"],
        )
    return _REFUSED


def _version_number(slot: Slot) -> float:
    current = slot.current
    if current is None:
        return 0.0
    return float(current.version) if str(current.version).isdigit() else -1.0


def _telemetry(log_level: str) -> None:
    """OpenTelemetry and JSON logs (trace ids) of this process, from the ``OTEL_*`` variables."""
    try:
        from creditrisk_telemetry import configure_telemetry
        from creditrisk_telemetry.logs import configure_logging

        configure_telemetry("model-server")
        configure_logging(log_level, service="model-server")
        # MLServer's logger prints on its own stdout handler; hand its records to the JSON root
        mlserver_logger = logging.getLogger("mlserver")
        for handler in list(mlserver_logger.handlers):
            mlserver_logger.removeHandler(handler)
        mlserver_logger.propagate = True
    except Exception:
        LOGGER.exception("telemetry set-up failed")


class CreditRiskRuntime(MLModel):
    """MLServer runtime of one alias slot (settings from ``MODEL_SERVER_*``)."""

    slot: Slot | None = None

    @property  # type: ignore[override]
    def ready(self) -> bool:
        """Ready once a version is loaded, and not while the slot drains (``/v2/health/ready``)."""
        slot = self.slot
        return bool(
            getattr(self, "_loaded", False)
            and slot is not None
            and slot.current is not None
            and not readiness.draining(slot.settings.state_dir)
        )

    @ready.setter
    def ready(self, value: bool) -> None:
        self._loaded = value

    async def load(self) -> bool:
        """Start following the alias; waits (up to 120 s) for the first version so MLServer
        reports the model ready when it can score."""
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        settings = load_settings()
        _telemetry(settings.log_level)
        self.slot = Slot(settings, role="mlserver")
        slot = self.slot
        _serving_version_gauge().labels(alias=settings.alias).set_function(lambda: _version_number(slot))
        refused = _refused_counter().labels
        slot.refusal_counts.on_refusal = lambda reason: refused(alias=settings.alias, reason=reason).inc()
        self.slot.start()
        await asyncio.to_thread(self.slot.wait_loaded, 120.0)
        return True

    async def unload(self) -> bool:
        if self.slot is not None:
            self.slot.stop()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Score the V2 request (see the module docstring), traced as ``model_server.predict``.

        Raises:
            MLServerError: 400 on invalid input (naming ``inputs.<feature>``), 503 with no version.
        """
        parent = caller_context(payload)
        # under MLServer's server span an internal step; continuing the headers, the server side
        kind = trace.SpanKind.INTERNAL if parent is None else trace.SpanKind.SERVER
        with _TRACER.start_as_current_span("model_server.predict", context=parent, kind=kind) as span:
            return self._predict(payload, span)

    def _predict(self, payload: InferenceRequest, span: Any) -> InferenceResponse:
        slot = self.slot
        if slot is None:
            raise MLServerError("the model server is not loaded", 503)
        try:
            model = slot.model()
            columns, n = columns_from_v2(payload, model.columns)
            scored = slot.score(model, columns, n)
        except InvalidInput as exc:
            raise MLServerError(str(exc), 400) from exc
        except NoModel as exc:
            raise MLServerError(str(exc), 503) from exc
        span.set_attribute("model.name", scored.name)
        span.set_attribute("model.version", str(scored.version))
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=scored.version,
            parameters=Parameters(
                registered_model=scored.name,
                alias=scored.alias,
                decision_threshold=repr(scored.threshold),  # a string: V2 gRPC parameters carry no double
                scorer=scored.scorer,
            ),
            outputs=[
                ResponseOutput(
                    name="probability_of_default",
                    shape=[n],
                    datatype="FP64",
                    data=scored.probabilities.tolist(),
                ),
                ResponseOutput(
                    name="decision", shape=[n], datatype="BYTES", data=[d.encode() for d in scored.decisions]
                ),
            ],
        )

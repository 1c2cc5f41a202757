"""Runtime 1: the seldon-core 1.19 Python microservice for one alias slot (Seldon protocol).

Run::

    MODEL_SERVER_MODEL_NAME=credit-risk MODEL_SERVER_ALIAS=champion \
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \
    seldon-core-microservice model_server.seldon_model.CreditRiskModel --service-type MODEL \
        --http-port 9000 --grpc-port 5001 --metrics-port 6000

(``python -m model_server seldon`` builds this command with the slot's state folder and
``OMP_NUM_THREADS=1``.)

Request (REST ``POST /api/v1.0/predictions`` or gRPC ``seldon.protos.Model/Predict``): ``jsonData``
as one record ``{feature: value}`` or a list of records. Records by name keep JSON types on REST;
values are cast back by the model signature (:mod:`model_server.signature`) - on gRPC
``jsonData`` is a ``google.protobuf.Value`` that carries every number as a double, which the cast
turns back into the declared type. ``data.ndarray`` / ``tensor`` are refused: one string in an
ndarray turns every column into text.

Response: ``jsonData = {probability_of_default: [..], decision: [..], model_name, model_version,
alias, decision_threshold}``; ``meta.tags`` carries the model name, version, alias, threshold and
decision(s) of the version that scored THIS request; ``meta.metrics`` feed Seldon's Prometheus
endpoint (``:<metrics-port>/metrics``), coalesced per process and handed to seldon-core's metrics
store once per ``MODEL_SERVER_SELDON_METRICS_FLUSH_S`` (default 1 s; :mod:`model_server.seldon_metrics`),
and are left out of the answer (``INCLUDE_METRICS_IN_CLIENT_RESPONSE=false`` by default of
``python -m model_server seldon``).

Errors: bad input -> HTTP 400 ``{"status": {"info": "invalid input: field '<field>': ...",
"reason": "MICROSERVICE_BAD_DATA"}}``; no version loaded yet -> 503; unknown route -> 404 (stock
seldon-core turns every Flask error, 404 included, into a 500: :data:`model_error_handler` fixes
that). On gRPC seldon-core cannot carry a status: every exception becomes UNKNOWN with the message
as details - callers that need status codes (the inference-gateway) use Seldon over REST.

Processes: seldon-core forks REST (gunicorn, ``GUNICORN_WORKERS``) and gRPC (``GRPC_WORKERS``)
workers, each calling :meth:`CreditRiskModel.load` and so each holding its own :class:`Slot`.
``GET /health/ready`` answers 200 only when every serving process serves the same version
(:mod:`model_server.readiness`) and the slot is not draining; ``/health/status`` is this process.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Blueprint, has_request_context, jsonify
from flask import request as flask_request
from google.protobuf import json_format
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.proto import prediction_pb2
from werkzeug.exceptions import HTTPException

from model_server import access, readiness, seldon_metrics
from model_server.settings import Settings, load_settings
from model_server.signature import InvalidInput, columns_from_records
from model_server.slot import NoModel, Scored, Slot, preload_modules

LOGGER = logging.getLogger("model_server.seldon")
_TRACER = trace.get_tracer("model_server")


def _caller_context() -> otel_context.Context | None:
    """The W3C context of the REST request being served (None outside a Flask request)."""
    if not has_request_context():
        return None
    # Werkzeug's headers are title-cased ("Traceparent"); the W3C propagator looks up lower case.
    return propagate.extract({k.lower(): v for k, v in flask_request.headers.items()})


# Import the heavy modules here, in seldon-core's parent process, before it forks its REST and gRPC
# workers: each worker then loads a version in ~1 s instead of re-importing (``import skops.io``
# alone scans sys.modules once per trusted type: ~20 s in a worker with 2 cores shared).
preload_modules()
# seldon-core's per-request custom-metrics step costs a round trip to its metrics manager process
# per request: the metrics are coalesced per process and handed over once per interval instead.
seldon_metrics.install(
    float(os.environ.get("MODEL_SERVER_SELDON_METRICS_FLUSH_S", seldon_metrics.DEFAULT_FLUSH_INTERVAL_S))
)
_PROCESS_SLOT: Slot | None = None

model_error_handler = Blueprint("model_server", __name__)
"""Registered by seldon-core on its Flask app (``user_model.model_error_handler``): the slot's
readiness route, real 404 / 405 answers, and the credential check before every request
(:func:`model_server.access.check_seldon_request`: role ``predict`` to score, probes public)."""
model_error_handler.before_app_request(access.check_seldon_request)


@model_error_handler.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    response = jsonify({"status": {"status": 1, "info": exc.description, "code": -1, "reason": exc.name}})
    response.status_code = exc.code or 500
    return response


@model_error_handler.route("/health/ready", methods=["GET"])
def _ready() -> Any:
    settings = _PROCESS_SLOT.settings if _PROCESS_SLOT is not None else load_settings()
    state = readiness.slot_readiness(settings.state_dir, settings.serving_processes)
    response = jsonify({**state.as_dict(), "model": settings.model_name, "alias": settings.alias})
    response.status_code = 200 if state.ready else 503
    return response


class SlotError(SeldonMicroserviceException):
    """A Seldon error whose ``str()`` is its message (gRPC puts ``str(exc)`` in the details of the
    UNKNOWN status; seldon-core's own exception would show an empty string)."""

    def __str__(self) -> str:
        return str(self.message)


def response_body(scored: Scored, elapsed_ms: float) -> dict[str, Any]:
    """The Seldon response of a scored request (JSON form)."""
    single = len(scored.decisions) == 1
    tags = {
        "model_name": scored.name,
        "model_version": scored.version,
        "alias": scored.alias,
        "decision_threshold": scored.threshold,
        "scorer": scored.scorer,
        "decision": scored.decisions[0] if single else list(scored.decisions),
    }
    return {
        "jsonData": {
            "probability_of_default": scored.probabilities.tolist(),
            "decision": list(scored.decisions),
            "model_name": scored.name,
            "model_version": scored.version,
            "alias": scored.alias,
            "decision_threshold": scored.threshold,
        },
        "meta": {
            "tags": tags,
            "metrics": [
                {
                    "type": "COUNTER",
                    "key": "model_server_rows_scored_total",
                    "value": len(scored.decisions),
                    "tags": {"model_version": scored.version},
                },
                {"type": "TIMER", "key": "model_server_score_ms", "value": elapsed_ms},
                # the version this slot serves (Prometheus: model_server_serving_version{alias})
                {
                    "type": "GAUGE",
                    "key": "model_server_serving_version",
                    "value": float(scored.version) if str(scored.version).isdigit() else -1.0,
                    "tags": {"alias": scored.alias},
                },
            ],
        },
    }


def records_of(json_data: Any) -> list[Any]:
    """``jsonData`` as a list of records (one object = one row)."""
    if isinstance(json_data, dict):
        return [json_data]
    if isinstance(json_data, list):
        return json_data
    raise InvalidInput("jsonData", "expected an object of features by name, or a list of them")


class CreditRiskModel:
    """The seldon-core user model of one alias slot (settings from ``MODEL_SERVER_*``).

    The constructor runs once in the parent before seldon-core forks its workers, so it holds
    nothing; :meth:`load` (once per serving process) builds the process's :class:`Slot`.
    """

    model_error_handler = model_error_handler

    def __init__(self, **parameters: Any) -> None:
        self.parameters = parameters
        self.slot: Slot | None = None

    def load(self, settings: Settings | None = None, client: Any = None) -> None:
        """Start following the alias in this process (the first version loads in the background)."""
        global _PROCESS_SLOT
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if self.slot is not None:
            return
        settings = settings or load_settings()
        try:
            # Here, in the serving process after seldon-core's fork: the batch span processor's
            # thread and the exporter's channel must belong to the process that serves.
            from creditrisk_telemetry import configure_telemetry
            from creditrisk_telemetry.logs import configure_logging

            configure_telemetry("model-server")
            configure_logging(settings.log_level, service="model-server")
        except Exception:
            LOGGER.exception("telemetry set-up failed")
        access.authenticator(settings)  # this process's credential check, from the slot's settings
        self.slot = Slot(settings, client=client, role="seldon")
        _PROCESS_SLOT = self.slot
        self.slot.start()

    def _slot(self) -> Slot:
        if self.slot is None:
            raise SlotError("the model server is not loaded", status_code=503, reason="NOT_LOADED")
        return self.slot

    def predict_raw(self, request: Any) -> Any:
        """Score ``jsonData`` records; REST gets a dict back, gRPC a ``SeldonMessage``.

        Traced as ``model_server.predict``, continuing the W3C ``traceparent`` of the REST request
        (seldon-core's own tracing is opentracing / jaeger, off; on gRPC the metadata does not
        reach the user model, so the span starts a trace there). Attributes: counts and versions.
        """
        with _TRACER.start_as_current_span(
            "model_server.predict", context=_caller_context(), kind=trace.SpanKind.SERVER
        ) as span:
            body = self._predict_raw(request)
            slot = self.slot
            current = slot.current if slot is not None else None
            if current is not None:
                span.set_attribute("model.name", current.name)
                span.set_attribute("model.version", str(current.version))
            return body

    def _predict_raw(self, request: Any) -> Any:
        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        started = time.perf_counter()
        slot = self._slot()
        try:
            if is_proto:
                if request.WhichOneof("data_oneof") != "jsonData":
                    raise InvalidInput(
                        "jsonData", "required: records by feature name (ndarray / tensor are not accepted)"
                    )
                json_data = json_format.MessageToDict(request.jsonData)
            else:
                if not isinstance(request, dict) or "jsonData" not in request:
                    raise InvalidInput(
                        "jsonData", "required: records by feature name (ndarray / tensor are not accepted)"
                    )
                json_data = request["jsonData"]
            model = slot.model()
            records = records_of(json_data)
            columns = columns_from_records(records, model.columns, "jsonData")
            scored = slot.score(model, columns, len(records))
        except InvalidInput as exc:
            raise SlotError(str(exc), status_code=400, reason="MICROSERVICE_BAD_DATA") from exc
        except NoModel as exc:
            raise SlotError(str(exc), status_code=503, reason="MODEL_NOT_LOADED") from exc
        body = response_body(scored, (time.perf_counter() - started) * 1000.0)
        body["meta"]["metrics"].extend(slot.refusal_counts.take())
        if is_proto:
            return json_format.ParseDict(body, prediction_pb2.SeldonMessage())
        return body

    def health_status_raw(self) -> dict[str, Any]:
        """This process: 200 with its state once it serves a version, else 503."""
        slot = self._slot()
        state = slot.state()
        if state["version"] is None or readiness.draining(slot.settings.state_dir):
            raise SlotError(
                f"not serving: version {state['version']}, "
                f"draining {readiness.draining(slot.settings.state_dir)}",
                status_code=503,
                reason="NOT_READY",
            )
        return state

    def tags(self) -> dict[str, Any]:
        """Tags of the version serving now (the per-request ones are set in :meth:`predict_raw`)."""
        current = self.slot.current if self.slot else None
        return {} if current is None else {"model_name": current.name, "model_version": current.version}

    def metrics(self) -> list[dict[str, Any]]:
        """Custom metrics of the non-raw path (unused: :meth:`predict_raw` returns them in ``meta``)."""
        return []

    def init_metadata(self) -> dict[str, Any]:
        """Static metadata (called before the workers load a version)."""
        return {
            "name": os.environ.get("MODEL_SERVER_MODEL_NAME", "credit-risk"),
            "versions": [os.environ.get("MODEL_SERVER_ALIAS", "champion")],
            "platform": "seldon-core-microservice + onnxruntime",
            "inputs": [{"messagetype": "jsonData", "schema": {"names": []}}],
            "outputs": [{"messagetype": "jsonData"}],
        }

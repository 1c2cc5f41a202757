"""Named Prometheus instruments of the inference-gateway, served at REST ``GET /metrics`` and, when
``INFERENCE_GATEWAY_METRICS_PORT`` is set, on the kit's metrics port (with ``grpc_server_*`` per RPC
and ``http_server_*`` per REST route from ``creditrisk_kit.metrics``).

Shadow and canary counts: ``inference_gateway_shadow_predictions{outcome}`` counts shadow scorings;
``inference_gateway_predictions{slot="serving_slot_challenger"}`` counts the canary's answers (the
challenger answers a caller only in canary mode). Labels are outcomes, slots, aliases, modes and
stages: never a request's content.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

PREDICTIONS = Counter(
    "inference_gateway_predictions",
    "Predict outcomes by status (ok or the error's gRPC code) and answering slot.",
    ["outcome", "slot"],
)
SHADOW = Counter(
    "inference_gateway_shadow_predictions",
    "Shadow scorings by outcome (ok, failed, skipped over the concurrency bound).",
    ["outcome"],
)
LOG_PENDING = Gauge(
    "inference_gateway_prediction_log_pending_events",
    "Prediction events not yet acknowledged by the drift-service, by where they wait.",
    ["where"],
)
LOG_BUFFER_BYTES = Gauge(
    "inference_gateway_prediction_log_buffer_bytes",
    "Payload bytes in the durable prediction log buffer (the cap applies to this).",
)
LOG_EVENTS = Counter(
    "inference_gateway_prediction_log_events",
    "Prediction events of the log, by stage: submitted (buffered), delivered (acknowledged by the "
    "drift-service), spilled (written to the disk buffer).",
    ["stage"],
)
REQUESTED_FEATURES = Counter(
    "inference_gateway_features_requested",
    "Features of the champion's / answering slot's input, counted per prediction (the denominator "
    "of the missing-feature rate).",
)
CREDENTIAL_REFUSALS = Counter(
    "inference_gateway_credential_refusals",
    "Times a dependency started refusing the gateway's own credential, by dependency and code "
    "(UNAUTHENTICATED, PERMISSION_DENIED): once per change of state, not per call or event.",
    ["dependency", "code"],
)
CREDENTIAL_REFUSED = Gauge(
    "inference_gateway_credential_refused",
    "1 while the dependency's last answer to a background call (prediction log, alias stream) "
    "refused the gateway's own credential.",
    ["dependency"],
)
MISSING_FEATURES = Counter(
    "inference_gateway_features_missing",
    "Features that were missing (no online value, no request value) per prediction; "
    "rate(missing) / rate(requested) is the missing-feature rate.",
)


class GatewayStateCollector:
    """Gauges read from the gateway at scrape time (no work on the prediction path).

    * ``inference_gateway_serving_model_version{slot, alias, mode}``: the version each slot serves
      (NaN while a slot has none);
    * ``inference_gateway_serving_slot_ready{slot, alias, mode}``: 1 when the slot is ready.
    """

    def __init__(self, core: Any) -> None:
        self._core = core

    def describe(self) -> list[Any]:
        return []  # dynamic: no duplicate check against the static instruments

    def collect(self) -> Iterator[Any]:
        from creditrisk.common.v1 import serving_pb2

        version = GaugeMetricFamily(
            "inference_gateway_serving_model_version",
            "Model version served by each slot (NaN when the slot has none yet).",
            labels=["slot", "alias", "mode"],
        )
        ready = GaugeMetricFamily(
            "inference_gateway_serving_slot_ready",
            "1 when the slot is ready to score.",
            labels=["slot", "alias", "mode"],
        )
        for model in self._core.serving_models():
            labels = [
                serving_pb2.ServingSlot.Name(model.slot),
                model.alias,
                serving_pb2.ServingMode.Name(model.mode),
            ]
            version.add_metric(labels, float("nan") if model.model_version is None else model.model_version)
            ready.add_metric(labels, 1.0 if model.ready else 0.0)
        yield version
        yield ready


_COLLECTOR: GatewayStateCollector | None = None


def register_state_collector(core: Any) -> None:
    """Expose ``core``'s state through the default registry (the last gateway built wins): the
    slots' versions, and the log's pending events and buffer bytes, all read at scrape time."""
    global _COLLECTOR
    logger = core.logger
    LOG_PENDING.labels(where="disk").set_function(lambda: logger.buffer.count)
    LOG_PENDING.labels(where="total").set_function(lambda: logger.pending)
    LOG_BUFFER_BYTES.set_function(lambda: logger.buffer.bytes)
    if _COLLECTOR is not None:
        REGISTRY.unregister(_COLLECTOR)
    _COLLECTOR = GatewayStateCollector(core)
    REGISTRY.register(_COLLECTOR)

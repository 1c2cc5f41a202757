"""Named Prometheus instruments of the inference-gateway (served at REST ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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

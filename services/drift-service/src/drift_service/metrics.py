"""Prometheus instruments of the drift-service (prometheus-client; the kit's ``ServiceRunner`` serves
them on ``metrics_port`` with the per-RPC ``grpc_server_*`` metrics).

Gauges for the latest figures of a window (drift share, dataset verdict, PSI per feature) and
counters for the monotonically growing totals (events received, labels joined): Prometheus' own
types for each (a counter is what ``rate()`` needs).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DRIFT_SHARE = Gauge(
    "drift_service_drift_share",
    "Share of monitored columns drifted (after the multiple-testing adjustment) in the latest window, 0-1.",
    ["model_name", "model_version"],
)
DATASET_DRIFT = Gauge(
    "drift_service_dataset_drift",
    "Dataset drift verdict of the latest window (1 = drift).",
    ["model_name", "model_version"],
)
FEATURE_PSI = Gauge(
    "drift_service_feature_psi",
    "Population stability index per characteristic in the latest window (dimensionless).",
    ["model_name", "model_version", "feature"],
)
EVENTS_RECEIVED = Counter(
    "drift_service_prediction_events",
    "Prediction events received, by outcome (accepted, duplicate, rejected).",
    ["outcome"],
)
LABELS_RECEIVED = Counter(
    "drift_service_labels",
    "Ground-truth labels received, by outcome (joined, unmatched, rejected).",
    ["outcome"],
)

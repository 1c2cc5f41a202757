"""Prometheus instruments of the feature-service (served by the kit's ``ServiceRunner`` on
``metrics_port``, beside the per-RPC ``grpc_server_*`` metrics).

* ``feature_service_online_values_total{feature_view, status}``: online values served, by status
  (``PRESENT``, ``NULL_VALUE``, ``MISSING``, ``OUTSIDE_TTL``); the missing-feature rate is
  ``rate(...{status="MISSING"}[5m]) / ignoring(status) sum without(status) (rate(...[5m]))``.
* ``feature_service_online_feature_age_seconds{feature_view}``: freshness, the age of each served
  row (now minus its event time), once per entity and feature view.

Labels are feature-view names and statuses only; values and entity keys never become labels.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import Counter, Histogram, values

ONLINE_VALUES = Counter(
    "feature_service_online_values",
    "Online feature values served, by feature view and status (PRESENT, NULL_VALUE, MISSING, OUTSIDE_TTL).",
    ["feature_view", "status"],
)
FEATURE_AGE_SECONDS = Histogram(
    "feature_service_online_feature_age_seconds",
    "Age of the online rows served (now - event time), per entity and feature view, in seconds.",
    ["feature_view"],
    # a minute .. ten years: batch features are hours to days old, the reference data years
    buckets=(60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400, 3650 * 86400),
)


def observe_online(result: Any) -> None:
    """Count the statuses and observe the row ages of one online response (``OnlineFeatures``)."""
    now = time.time()
    aged: set[str] = set()
    for spec, column in zip(result.features, result.columns, strict=True):
        counts: dict[str, int] = {}
        for status in column.statuses:
            counts[status.value] = counts.get(status.value, 0) + 1
        for status, count in counts.items():
            ONLINE_VALUES.labels(spec.view, status).inc(count)
        if spec.view in aged:
            continue  # one age per view and entity: its features share the row
        aged.add(spec.view)
        histogram = FEATURE_AGE_SECONDS.labels(spec.view)
        for stamp in column.timestamps:
            if stamp is not None:
                histogram.observe(max(now - stamp.timestamp(), 0.0))


def keep_values_in_process() -> bool:
    """Undo ``import feast``'s switch of prometheus-client to its multiprocess mode.

    ``feast.metrics`` (imported by ``import feast``, feast 0.67) sets ``PROMETHEUS_MULTIPROC_DIR``
    to a temporary folder of its own when it is not set, for the pre-fork workers of ``feast
    serve``. prometheus-client then backs every metric made afterwards in this process with an
    mmapped file, checked for a pid change on every increment (py-spy of an online read in process:
    ~5 % of its samples), and hands the variable to every child process. The feature-service is one
    process: when the folder is Feast's own (not set by the deployment), the variables are removed
    and new metrics keep their values in memory again. Feast's own metrics, made at its import, keep
    their files.

    Returns:
        whether the multiprocess mode was undone.
    """
    from feast import metrics as feast_metrics

    folder = getattr(feast_metrics, "_prometheus_mp_dir", None)
    if not getattr(feast_metrics, "_owns_mp_dir", False) or not folder:
        return False
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        if os.environ.get(name) == folder:
            del os.environ[name]
    values.ValueClass = values.get_value_class()
    return True

"""Seldon custom metrics without a cross-process round trip per request.

seldon-core 1.19 aggregates the custom metrics of its workers (``meta.metrics`` of each answer) in a
``multiprocessing.Manager`` dict (:class:`seldon_core.metrics.SeldonMetrics`): every request, even
one with no metrics, costs ``update()`` two lock acquisitions, a read and a write of this worker's
entry, each a round trip over a pipe to the manager process (``seldon_core.seldon_methods.
handle_raw_custom_metrics``). Profiled (py-spy of a REST worker under a steady load of
single-record predictions), that step cost more CPU than parsing and scoring together (figures in
docs/benchmarks.md, model-server).

:func:`install` replaces that per-request step with :class:`CoalescingMetrics`: the answer's
metrics are removed from it exactly as seldon-core does (unless ``INCLUDE_METRICS_IN_CLIENT_RESPONSE``
keeps them), kept in this process, and handed to the same ``SeldonMetrics.update`` once per
``flush_interval_s`` by a daemon thread — the same metric keys, tags and values on seldon-core's
``/metrics`` endpoint, at most one interval later:

* ``COUNTER``: the values of one key and tags are summed (``update`` adds them to its total);
* ``GAUGE``: the last value of a key and tags is kept (``update`` keeps the last);
* ``TIMER``: every observation is kept (``update`` adds each to the histogram).

What a worker holds when it dies (at most one interval) is lost, as a Prometheus scrape between two
flushes would miss it; the histograms and counters stay monotonic.

Shutdown order: :func:`install` also makes seldon-core's metrics manager process outlive the
processes that use it. The slot is stopped by SIGTERM to its whole process group; the manager
(``multiprocessing``'s server process, default SIGTERM action) died at once, while each gunicorn
worker was still finishing, and seldon-core's ``worker_exit`` hook then called
``SeldonMetrics.clear()`` against the dead manager: the ``Exception during worker exit`` traceback
(``'ForkAwareLocal' object has no attribute 'connection'``: the worker's main thread had no
connection yet and could not open one). The manager now takes SIGTERM as "stop when the process
that started it (seldon-core's main process, the gunicorn master) is gone"; that process shuts it
down itself at its exit (``multiprocessing``'s finalizer), after gunicorn has waited for its
workers. A manager that really died still makes ``clear()`` fail loudly.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.managers import SyncManager
from typing import Any

from seldon_core import metrics as seldon_core_metrics
from seldon_core import seldon_methods

LOGGER = logging.getLogger("model_server.seldon")

#: Seconds between two hand-overs to seldon-core's metrics store (Prometheus scrapes every 15-30 s).
DEFAULT_FLUSH_INTERVAL_S = 1.0

_Metric = dict[str, Any]


class _Batch:
    """What one store will receive for one method: coalesced counters and gauges, timer observations."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.coalesced: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Metric] = {}
        self.timers: list[_Metric] = []

    def metrics(self) -> list[_Metric]:
        return [*self.coalesced.values(), *self.timers]


class CoalescingMetrics:
    """Custom metrics of one serving process, handed to ``SeldonMetrics.update`` in batches.

    Args:
        flush_interval_s: seconds between two flushes of the background thread (> 0).

    Raises:
        ValueError: a non-positive ``flush_interval_s``.
    """

    def __init__(self, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], _Batch] = {}  # (id of the store, method) -> batch
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, metrics: list[dict[str, Any]], seldon_metrics: Any, method: str) -> None:
        """Keep one answer's custom metrics for the next flush (no inter-process call here)."""
        if not metrics:
            return
        with self._lock:
            batch = self._pending.get((id(seldon_metrics), method))
            if batch is None:
                batch = self._pending[(id(seldon_metrics), method)] = _Batch(seldon_metrics)
            for metric in metrics:
                kind = str(metric.get("type", "COUNTER"))
                tags = dict(metric.get("tags") or {})
                copy = {"type": kind, "key": metric["key"], "value": metric["value"], "tags": tags}
                if kind == "TIMER":
                    batch.timers.append(copy)
                    continue
                key = (kind, str(metric["key"]), tuple(sorted((str(k), str(v)) for k, v in tags.items())))
                held = batch.coalesced.get(key)
                if kind == "COUNTER" and held is not None:
                    held["value"] += metric["value"]
                else:  # a GAUGE keeps its last value; unknown types pass through for update() to log
                    batch.coalesced[key] = copy
            if not self._flushing_here():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="seldon-metrics-flush", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Hand everything held to ``SeldonMetrics.update`` (one call per store and method).

        Returns:
            how many metric entries were handed over.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        handed = 0
        for (_, method), batch in pending.items():
            metrics = batch.metrics()
            try:
                batch.store.update(metrics, method)
                handed += len(metrics)
            except Exception:  # the manager process gone (shutdown): nothing to recover
                LOGGER.warning("custom metrics could not be handed to seldon-core", exc_info=True)
        return handed

    def _flushing_here(self) -> bool:
        # The thread is started lazily, in the serving process: one started before seldon-core
        # forks its workers would not exist in them.
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_interval_s)
            self.flush()


def handler(buffer: CoalescingMetrics) -> Callable[[Any, Any, bool, str], None]:
    """A drop-in ``handle_raw_custom_metrics`` that keeps the metrics in ``buffer``."""

    def handle_raw_custom_metrics(msg: Any, seldon_metrics: Any, is_proto: bool, method: str) -> None:
        metrics: list[dict[str, Any]] = []
        keep = seldon_methods.INCLUDE_METRICS_IN_CLIENT_RESPONSE
        if is_proto:
            if msg.meta.metrics:
                metrics = seldon_methods.seldon_message_to_json(msg.meta).get("metrics", [])
            if metrics and not keep:
                del msg.meta.metrics[:]
        elif isinstance(msg, dict):
            metrics = msg.get("meta", {}).get("metrics", [])
            if metrics and not keep:
                del msg["meta"]["metrics"]
        buffer.add(metrics, seldon_metrics, method)

    return handle_raw_custom_metrics


def _outlive_owner_on_sigterm(owner_pid: int) -> None:
    """In the manager process: SIGTERM no longer ends it at once, but once ``owner_pid`` (the
    process that started it, which shuts it down at its own exit) is gone."""

    def wait_for_owner() -> None:
        while os.getppid() == owner_pid:
            time.sleep(0.1)
        os._exit(0)

    def on_sigterm(signum: int, frame: Any) -> None:
        threading.Thread(target=wait_for_owner, name="wait-for-owner", daemon=True).start()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    signal.signal(signal.SIGTERM, on_sigterm)


def ordered_manager() -> SyncManager:
    """``multiprocessing.Manager()`` whose process stays up until its owner is gone (see the
    module docstring, "Shutdown order"); what seldon-core's ``SeldonMetrics`` starts once
    :func:`install` ran."""
    manager = SyncManager(ctx=multiprocessing.get_context())
    manager.start(_outlive_owner_on_sigterm, (os.getpid(),))
    return manager


_INSTALLED: CoalescingMetrics | None = None


def install(flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> CoalescingMetrics:
    """Replace seldon-core's per-request metrics step in this process, and make the metrics
    manager that seldon-core starts next outlive its users (idempotent; before ``SeldonMetrics``
    is made: seldon-core imports the user model first).

    Returns:
        the process's buffer (``flush()`` hands its content over at once, e.g. in tests).
    """
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = CoalescingMetrics(flush_interval_s)
        seldon_methods.handle_raw_custom_metrics = handler(_INSTALLED)
        seldon_core_metrics.Manager = ordered_manager  # SeldonMetrics.__init__ calls Manager()
    return _INSTALLED

"""The coalescing adapter of seldon-core's custom metrics (:mod:`model_server.seldon_metrics`), in
process against seldon-core's real ``SeldonMetrics`` store and its real Flask app."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import pytest
from model_server import seldon_metrics
from model_server.seldon_metrics import CoalescingMetrics, handler
from seldon_core import metrics as seldon_core_metrics
from seldon_core import seldon_methods
from seldon_core.metrics import SeldonMetrics
from seldon_core.wrapper import get_rest_microservice


class CountingStore(SeldonMetrics):
    """seldon-core's store, counting the ``update`` calls (each is a manager round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    def update(self, custom_metrics: list[dict[str, Any]], method: str) -> None:
        super().update(custom_metrics, method)
        self.updates += 1


def _answer(rows: int, ms: float, version: float) -> dict[str, Any]:
    return {
        "jsonData": {"probability_of_default": [0.5] * rows},
        "meta": {
            "tags": {"model_version": "3"},
            "metrics": [
                {"type": "COUNTER", "key": "rows_total", "value": rows, "tags": {"scored_version": "3"}},
                {"type": "TIMER", "key": "score_ms", "value": ms},
                {"type": "GAUGE", "key": "serving_version", "value": version, "tags": {"alias": "champion"}},
            ],
        },
    }


def _sample(text: str, pattern: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, text[-2000:]
    return float(found.group(1))


@pytest.fixture
def store() -> Any:
    s = CountingStore()
    yield s
    s._manager.shutdown()


def test_requests_make_no_store_call_and_a_flush_hands_over_the_same_totals(store: Any) -> None:
    buffer = CoalescingMetrics(flush_interval_s=60.0)  # the thread will not flush during the test
    handle = handler(buffer)
    answers = [_answer(1, 2.0, 3.0), _answer(2, 4.0, 3.0), _answer(3, 8.0, 4.0)]
    for body in answers:
        handle(body, store, False, "predict")
    assert store.updates == 0  # nothing crossed to the manager process per request
    assert store.generate_metrics()[0].count("rows_total") == 0
    assert buffer.flush() == 5  # 1 summed counter + 1 last gauge + 3 timer observations
    assert store.updates == 1
    text = store.generate_metrics()[0]
    assert _sample(text, r'rows_total\{[^}]*scored_version="3"[^}]*\} (\S+)') == 6.0
    assert _sample(text, r'serving_version\{[^}]*alias="champion"[^}]*\} (\S+)') == 4.0  # the last value
    assert _sample(text, r"score_ms_count\{[^}]*\} (\S+)") == 3.0
    assert _sample(text, r"score_ms_sum\{[^}]*\} (\S+)") == pytest.approx(0.014)  # ms -> s, as seldon
    # a second round adds to seldon-core's totals (counters stay monotonic)
    handle(_answer(4, 1.0, 4.0), store, False, "predict")
    buffer.flush()
    assert _sample(store.generate_metrics()[0], r'rows_total\{[^}]*scored_version="3"[^}]*\} (\S+)') == 10.0
    assert buffer.flush() == 0  # nothing held: no call
    assert store.updates == 2


def test_metrics_leave_the_answer_unless_seldon_is_told_to_keep_them(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = CoalescingMetrics(flush_interval_s=60.0)
    body = _answer(1, 1.0, 3.0)
    monkeypatch.setattr(seldon_methods, "INCLUDE_METRICS_IN_CLIENT_RESPONSE", False)
    handler(buffer)(body, store, False, "predict")
    assert "metrics" not in body["meta"]
    assert body["meta"]["tags"] == {"model_version": "3"}
    kept = _answer(1, 1.0, 3.0)
    monkeypatch.setattr(seldon_methods, "INCLUDE_METRICS_IN_CLIENT_RESPONSE", True)
    handler(buffer)(kept, store, False, "predict")
    assert len(kept["meta"]["metrics"]) == 3
    assert buffer.flush() == 4  # both answers kept for the store: 1 counter, 1 gauge, 2 timer observations


def test_the_background_thread_flushes_within_the_interval(store: Any) -> None:
    buffer = CoalescingMetrics(flush_interval_s=0.05)
    handler(buffer)(_answer(2, 1.0, 3.0), store, False, "predict")
    deadline = time.monotonic() + 5
    while store.updates == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.updates == 1
    assert "rows_total" in store.generate_metrics()[0]


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="flush_interval_s"):
        CoalescingMetrics(0)


def test_installed_in_seldon_cores_rest_path(store: Any) -> None:
    """Importing the user model installs the adapter: seldon-core's own Flask app calls it."""
    import model_server.seldon_model  # noqa: F401  (installs at import, before seldon forks)

    assert seldon_methods.handle_raw_custom_metrics.__name__ == "handle_raw_custom_metrics"
    assert seldon_methods.handle_raw_custom_metrics.__module__ == seldon_metrics.__name__
    assert seldon_core_metrics.Manager is seldon_metrics.ordered_manager  # what SeldonMetrics starts

    class Model:
        def predict_raw(self, request: Any) -> Any:
            return _answer(1, 1.0, 7.0)

    app = get_rest_microservice(Model(), store)
    for _ in range(3):
        assert app.test_client().post("/api/v1.0/predictions", json={"jsonData": {}}).status_code == 200
    assert store.updates == 0
    assert seldon_metrics.install().flush() >= 3
    assert _sample(store.generate_metrics()[0], r'serving_version\{[^}]*alias="champion"[^}]*\} (\S+)') == 7.0


def test_the_metrics_manager_outlives_a_sigterm_while_its_owner_lives() -> None:
    """The group's SIGTERM reaches the manager together with the workers: it keeps answering them
    (seldon-core's worker_exit hook) until its owner shuts it down."""
    manager = seldon_metrics.ordered_manager()
    process = manager._process  # type: ignore[attr-defined]
    try:
        shared = manager.dict()  # type: ignore[attr-defined]
        os.kill(process.pid, signal.SIGTERM)
        time.sleep(0.5)
        shared["worker"] = 1
        assert shared["worker"] == 1
        assert process.is_alive()
    finally:
        manager.shutdown()
    assert not process.is_alive()

"""The alias stream's failures are logged once per state (issue 16: 26 WARNING lines "alias stream
failed (NOT_FOUND); reconnecting" before the first model was registered, one per reconnect)."""

from __future__ import annotations

import logging

import grpc
import pytest
from inference_gateway.registry import _StreamProblem


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "inference_gateway.registry"]


def test_waiting_for_a_model_is_one_info_line_and_failures_one_warning_each(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="inference_gateway.registry")
    clock = [1000.0]
    monkeypatch.setattr("inference_gateway.registry.time.monotonic", lambda: clock[0])
    problem = _StreamProblem("credit-risk")
    for _ in range(20):
        problem.report(grpc.StatusCode.NOT_FOUND)
        clock[0] += 5
    assert _lines(caplog) == [
        ("INFO", "waiting for model credit-risk to be registered (alias stream: NOT_FOUND)")
    ]
    caplog.clear()
    for _ in range(10):
        problem.report(grpc.StatusCode.UNAVAILABLE)
        clock[0] += 5
    assert [level for level, _ in _lines(caplog)] == ["WARNING"]
    clock[0] += _StreamProblem.REMIND_S
    problem.report(grpc.StatusCode.UNAVAILABLE)
    assert "(UNAVAILABLE, 11 time(s) in a row)" in _lines(caplog)[-1][1]
    problem.clear()
    problem.clear()
    assert _lines(caplog)[-1] == ("INFO", "alias stream of model credit-risk connected")
    assert len(_lines(caplog)) == 3

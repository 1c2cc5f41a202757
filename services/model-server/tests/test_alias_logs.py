"""What the alias follower logs (:class:`model_server.slot.Slot`), in process over a stand-in
registry: the waiting state before the first promotion once, every change of state once, a failing
registry rate-limited - never a line per poll. No server, no shared state: runs in any order."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException, RestException
from model_server import slot as slot_module
from model_server.settings import Settings
from model_server.slot import Slot

MODEL = "credit-risk"
WAITING = "waiting for alias champion of model credit-risk to exist"
NO_MODEL = RestException(
    {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Registered Model with name={MODEL} not found"}
)
NO_ALIAS = RestException(
    {"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias champion not found."}
)
UNREACHABLE = MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/... failed: refused")


class Registry:
    """``get_model_version_by_alias`` answering what the test sets (an exception or a version)."""

    def __init__(self) -> None:
        self.answer: Any = NO_MODEL
        self.reads = 0

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        self.reads += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return SimpleNamespace(name=name, version=self.answer)


@pytest.fixture
def follower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Slot, Registry]:
    def loaded(
        settings: Settings, client: Any, mv: Any, approval: Any = None
    ) -> Any:  # no download: a stand-in version
        return SimpleNamespace(
            version=str(mv.version),
            fidelity=0.0,
            approval=approval,
            artifacts=SimpleNamespace(remove=lambda: None),
        )

    monkeypatch.setattr(slot_module, "load_version", loaded)
    registry = Registry()
    settings = Settings(
        model_name=MODEL,
        alias="champion",
        mlflow_tracking_uri="http://127.0.0.1:1",
        state_dir=tmp_path / "state",
        serving_processes=1,
        cache_dir=tmp_path / "cache",
        require_approval=False,  # the alias reads' logs only (approvals: test_approvals.py)
    )
    return Slot(settings, client=registry), registry


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    out = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "model_server.slot"]
    caplog.clear()
    return out


def test_waiting_for_the_first_promotion_is_one_info_line(
    follower: tuple[Slot, Registry], caplog: pytest.LogCaptureFixture
) -> None:
    slot, registry = follower
    caplog.set_level(logging.INFO, logger="model_server.slot")
    # no registered model yet, then the model without its alias: one waiting state
    assert [slot.poll_once() for _ in range(5)] == ["no-alias"] * 5
    registry.answer = NO_ALIAS
    assert [slot.poll_once() for _ in range(5)] == ["no-alias"] * 5
    assert registry.reads == 10
    assert _lines(caplog) == [("INFO", WAITING)]
    # the first promotion: the transition, then the load
    registry.answer = "1"
    assert slot.poll_once() == "swapped"
    assert [slot.poll_once() for _ in range(3)] == ["same"] * 3
    lines = _lines(caplog)
    assert lines[0] == ("INFO", "alias champion of model credit-risk exists: version 1")
    assert len(lines) == 2
    assert lines[1][0] == "INFO"
    assert lines[1][1].startswith("serving credit-risk version 1")


def test_a_failing_registry_warns_once_then_rate_limited_and_recovers_at_info(
    follower: tuple[Slot, Registry], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot, registry = follower
    registry.answer = "1"
    assert slot.poll_once() == "swapped"
    caplog.set_level(logging.INFO, logger="model_server.slot")
    caplog.clear()
    registry.answer = UNREACHABLE
    assert [slot.poll_once() for _ in range(20)] == ["error"] * 20
    lines = _lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0][0] == "WARNING"
    assert lines[0][1].startswith("cannot read alias champion of model credit-risk; keeping version 1: ")
    assert slot.state()["version"] == "1"  # still serving
    # still failing after the interval: one reminder with the count
    monkeypatch.setattr(slot_module, "READ_ERROR_LOG_INTERVAL_S", 0.0)
    assert slot.poll_once() == "error"
    monkeypatch.setattr(slot_module, "READ_ERROR_LOG_INTERVAL_S", 3600.0)
    assert [slot.poll_once() for _ in range(5)] == ["error"] * 5
    lines = _lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0][0] == "WARNING"
    assert lines[0][1].startswith("still cannot read alias champion of model credit-risk (21 failed reads")
    registry.answer = "1"
    assert [slot.poll_once() for _ in range(3)] == ["same"] * 3
    lines = _lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0][0] == "INFO"
    assert lines[0][1].startswith("alias champion of model credit-risk readable again (version 1) after 26 ")


def test_an_alias_removed_while_serving_is_one_warning(
    follower: tuple[Slot, Registry], caplog: pytest.LogCaptureFixture
) -> None:
    slot, registry = follower
    registry.answer = "1"
    assert slot.poll_once() == "swapped"
    caplog.set_level(logging.INFO, logger="model_server.slot")
    caplog.clear()
    registry.answer = NO_ALIAS
    assert [slot.poll_once() for _ in range(5)] == ["no-alias"] * 5
    assert _lines(caplog) == [
        ("WARNING", "alias champion of model credit-risk no longer exists; keeping version 1")
    ]
    assert slot.state()["version"] == "1"


@pytest.mark.parametrize(
    ("exc", "missing"),
    [
        (NO_MODEL, True),
        (NO_ALIAS, True),
        (UNREACHABLE, False),
        (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid alias name"}), False),
        (RestException({"error_code": "PERMISSION_DENIED", "message": "no"}), False),
        (ConnectionError("refused"), False),
    ],
)
def test_what_counts_as_waiting(exc: BaseException, missing: bool) -> None:
    assert slot_module.alias_missing(exc) is missing

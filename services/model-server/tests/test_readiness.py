"""Slot readiness from the serving processes' state files: ready vs serving (mid-swap)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from model_server.readiness import request_drain, slot_readiness


def _state(state_dir: Path, pid: int, version: str | None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    body = {"pid": pid, "version": version, "updated": time.time()}
    (state_dir / f"proc-{pid}.json").write_text(json.dumps(body))


def test_a_swap_is_serving_but_not_ready_and_a_drain_is_neither(tmp_path: Path) -> None:
    rest, grpc_worker = os.getpid(), os.getppid()  # two live processes
    _state(tmp_path, rest, "1")
    _state(tmp_path, grpc_worker, "1")
    same = slot_readiness(tmp_path, 2)
    assert (same.ready, same.serving, same.version) == (True, True, "1")
    _state(tmp_path, rest, "2")  # the REST process swapped first
    swapping = slot_readiness(tmp_path, 2)
    assert swapping.ready is False
    assert swapping.version is None
    assert swapping.serving is True
    assert swapping.as_dict()["serving"] is True
    assert swapping.reason.startswith("swapping")
    _state(tmp_path, grpc_worker, None)  # a process that holds no model cannot serve
    assert slot_readiness(tmp_path, 2).as_dict()["serving"] is False
    _state(tmp_path, grpc_worker, "2")
    request_drain(tmp_path)
    drained = slot_readiness(tmp_path, 2)
    assert (drained.ready, drained.serving) == (False, False)
    (tmp_path / "draining").unlink()
    assert slot_readiness(tmp_path, 2).ready is True
    assert slot_readiness(tmp_path, 3).as_dict()["serving"] is False  # a process missing

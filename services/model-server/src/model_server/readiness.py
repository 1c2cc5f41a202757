"""Readiness of a slot served by several processes, through a small shared state folder.

seldon-core runs REST (gunicorn workers) and gRPC (its own worker processes) as separate processes,
each holding its own model. Each serving process writes ``proc-<pid>.json`` (the version it
serves, the alias target it last read, refusals) into the slot's ``state_dir`` on every change;
the readiness check reads them all: the slot is **ready for version V only when every expected
serving process is alive and serves V**, and nobody asked it to drain.

Draining: the file ``<state_dir>/draining`` (``python -m model_server drain``) flips readiness off
in every process at once, so a supervisor's ``before_stop`` hook can take the slot out of traffic
and then stop the whole process group (seldon-core's process tree does not drain on SIGTERM).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DRAIN_FILE = "draining"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Atomically write this process's state file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    tmp = state_dir / f".proc-{pid}.json.tmp"
    tmp.write_text(json.dumps({**state, "pid": pid, "updated": time.time()}))
    os.replace(tmp, state_dir / f"proc-{pid}.json")


def remove_state(state_dir: Path) -> None:
    """Remove this process's state file (at exit)."""
    (state_dir / f"proc-{os.getpid()}.json").unlink(missing_ok=True)


def read_states(state_dir: Path) -> list[dict[str, Any]]:
    """The state files of live processes (files of dead ones are removed)."""
    out: list[dict[str, Any]] = []
    for path in sorted(state_dir.glob("proc-*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(state.get("pid", -1))):
            path.unlink(missing_ok=True)
            continue
        out.append(state)
    return out


def draining(state_dir: Path) -> bool:
    """Whether the slot was asked to drain."""
    return (state_dir / DRAIN_FILE).exists()


def request_drain(state_dir: Path) -> None:
    """Ask every serving process of the slot to report not-ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DRAIN_FILE).write_text(str(time.time()))


@dataclass(frozen=True)
class SlotReadiness:
    """The readiness of a slot.

    Attributes:
        ready: every expected process serves the same version and the slot is not draining.
        version: that version (None unless ready).
        reason: why not ready ("" when ready).
        processes: ``{pid: version or None}`` of the live serving processes.
        serving: every expected process can score a verified version now and the slot is not
            draining: true when ready, and also in the middle of a swap (processes on two versions,
            each answer naming the version that scored it). A router keeps sending traffic to a
            slot that is serving; a rollout waits for ready.
    """

    ready: bool
    version: str | None
    reason: str
    processes: dict[str, str | None] = field(default_factory=dict)
    serving: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "serving": self.serving,
            "version": self.version,
            "reason": self.reason,
            "processes": self.processes,
        }


def slot_readiness(state_dir: Path, expected: int) -> SlotReadiness:
    """Aggregate readiness of the slot's serving processes (see the module docstring)."""
    states = read_states(state_dir)
    procs = {str(s["pid"]): s.get("version") for s in states}
    if draining(state_dir):
        return SlotReadiness(False, None, "draining", procs)
    if len(states) < expected:
        return SlotReadiness(False, None, f"{len(states)} of {expected} serving processes up", procs)
    versions = {s.get("version") for s in states}
    if None in versions:
        return SlotReadiness(False, None, "a serving process holds no model", procs)
    if len(versions) > 1:
        return SlotReadiness(
            False,
            None,
            f"swapping: processes serve versions {sorted(map(str, versions))}",
            procs,
            serving=True,
        )
    version = str(versions.pop())
    return SlotReadiness(True, version, "", procs, serving=True)

"""Process-group helpers (POSIX). Only ever used with PGIDs the supervisor created itself.

Zombies are not counted as alive: in a container whose PID 1 does not reap orphans, a finished
grandchild stays a zombie forever, still in its process group, still answering ``kill(pid, 0)``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, pgrp) of a live pid from /proc, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[2])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if _PROC.is_dir():
        fields = _stat_fields(pid)
        return fields is not None and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    if not _PROC.is_dir():  # pragma: no cover - non-Linux fallback: whole group, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds spent so far by the live members of process group ``pgid``.

    Read from ``/proc/<pid>/stat`` (utime and stime, in clock ticks); 0.0 where there is no
    ``/proc``. Benchmarks take the difference over a measured loop (the work a process did,
    which moves far less with the machine's load than latency does).
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_members(pgid) if _PROC.is_dir() else []:
        try:
            raw = (_PROC / str(pid) / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited meanwhile
        fields = raw[raw.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of the line
    return total / tick


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def signal_from_name(value: str | int | signal.Signals) -> signal.Signals:
    """``"SIGTERM"``, ``"TERM"``, ``15`` or ``signal.SIGTERM`` -> ``signal.SIGTERM``."""
    if isinstance(value, signal.Signals):
        return value
    if isinstance(value, int):
        return signal.Signals(value)
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None

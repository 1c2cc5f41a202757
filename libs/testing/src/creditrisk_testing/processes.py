"""Child processes of a test or benchmark, each in its own process group, stopped by its PID.

A server started for a test (``mlflow server`` and its uvicorn workers, a service under
benchmark) forks children of its own: it is started in a new session so that :func:`stop_group`
can signal the whole group by the leader's PID, never by a name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def start_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (stop it with :func:`stop_group`).

    Args:
        argv: The command line.
        env: The child's whole environment (default: this process's).
        log: A file the child's stdout and stderr are appended to (default: discarded).
        cwd: The child's working directory (default: this process's).

    Raises:
        OSError: the command could not be started.
    """
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]  # the child keeps its own copy of the descriptor


def stop_group(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL it after ``timeout_s`` seconds.

    Does nothing when ``proc`` is None or has already exited (its group id may have been reused).
    """
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


def log_tail(log: Path | None, chars: int = 3000) -> str:
    """The last ``chars`` characters of ``log`` (empty when there is none)."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


def wait_http(
    url: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    status: int = 200,
    log: Path | None = None,
) -> float:
    """Poll ``url`` every 0.2 s until it answers ``status``.

    Returns:
        The seconds waited.

    Raises:
        RuntimeError: ``proc`` exited first (the message carries the end of ``log``).
        TimeoutError: no such answer within ``timeout_s`` seconds.
    """
    began = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (a test's own http URL)
                if response.status == status:
                    return time.monotonic() - began
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r} exited with {proc.returncode} before {url} answered\n{log_tail(log)}"
            )
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"{url} did not answer {status} within {timeout_s} s\n{log_tail(log)}")
        time.sleep(0.2)

"""creditrisk_testing.processes: a started group is stopped whole; waits fail with the reason."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from creditrisk_testing.entrypoints import free_port
from creditrisk_testing.processes import start_group, stop_group, wait_http

# A leader that forks a grandchild and prints its pid, then both sleep.
FORKING = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by init still answers kill 0: read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stop_group_stops_the_leader_and_its_children(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = start_group([sys.executable, "-c", FORKING], log=log)
    deadline = time.monotonic() + 30
    while not log.read_text().strip():
        assert time.monotonic() < deadline, "the leader did not print its child's pid"
        time.sleep(0.05)
    child = int(log.read_text().split()[0])
    assert _alive(child)
    stop_group(proc, timeout_s=10)
    assert proc.returncode is not None
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the grandchild outlived its group"
        time.sleep(0.05)
    stop_group(proc)  # a second stop of an exited process is a no-op (its pgid may be reused)


def test_wait_http_answers_the_seconds_waited(tmp_path: Path) -> None:
    port = free_port()
    proc = start_group(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)]
    )
    try:
        waited = wait_http(f"http://127.0.0.1:{port}/", 30, proc)
        assert 0 <= waited < 30
    finally:
        stop_group(proc)


def test_wait_http_reports_an_exited_process_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = start_group([sys.executable, "-c", "print('bad config: port'); raise SystemExit(3)"], log=log)
    with pytest.raises(RuntimeError, match=r"exited with 3[\s\S]*bad config: port"):
        wait_http(f"http://127.0.0.1:{free_port()}/", 30, proc, log=log)


def test_wait_http_times_out_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(TimeoutError, match=r"health did not answer 200 within 0\.5 s"):
        wait_http(url, 0.5)

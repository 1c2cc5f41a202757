"""The supervisor itself gets SIGINT / SIGTERM (or simply exits): no child may survive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from creditrisk_devstack.procgroup import pid_alive
from devstack_testutil import HELPERS, PY, wait_for_file, wait_gone

pytestmark = pytest.mark.timeout(60)


def run_driver(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    pids_file = tmp_path / "pids.json"
    driver = subprocess.Popen(
        [PY, str(HELPERS / "driver.py"), str(tmp_path / "logs"), str(pids_file), mode],
        start_new_session=True,  # signal the driver alone, as a terminal would not
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return driver, pids_file


def read_pids(driver: subprocess.Popen[bytes], pids_file: Path) -> list[int]:
    try:
        return list(json.loads(wait_for_file(pids_file, timeout=30)))
    except AssertionError:
        driver.kill()
        out = driver.communicate()[0].decode()
        raise AssertionError(f"driver did not start its stack:\n{out}") from None


@pytest.mark.parametrize(
    ("mode", "sig", "count"),
    [
        ("with", signal.SIGINT, 4),
        ("with", signal.SIGTERM, 4),
        ("with", signal.SIGHUP, 4),
        ("waiting", signal.SIGINT, 3),  # Ctrl-C while waiting for readiness
        ("waiting", signal.SIGTERM, 3),
    ],
)
def test_signal_to_supervisor_stops_every_child(
    tmp_path: Path, mode: str, sig: signal.Signals, count: int
) -> None:
    driver, pids_file = run_driver(tmp_path, mode)
    try:
        pids = read_pids(driver, pids_file)
        assert len(pids) == count
        assert all(pid_alive(p) for p in pids)
        os.kill(driver.pid, sig)
        code = driver.wait(timeout=20)
        # every signal becomes Interrupted (a KeyboardInterrupt subclass), uncaught in the driver
        assert code == 1
        assert f"Interrupted: {sig.name}" in driver.communicate()[0].decode()
        assert [p for p in pids if not wait_gone(p)] == []
        assert "stopped" in (tmp_path / "logs" / "tree.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()


def test_atexit_stops_children_without_context_manager(tmp_path: Path) -> None:
    driver, pids_file = run_driver(tmp_path, "atexit")
    try:
        pids = read_pids(driver, pids_file)
        assert driver.wait(timeout=20) == 0
        assert [p for p in pids if not wait_gone(p)] == []
    finally:
        if driver.poll() is None:
            driver.kill()

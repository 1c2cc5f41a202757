"""Helpers of the devstack tests (a uniquely named module: other test folders have conftest.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from creditrisk_devstack.procgroup import pid_alive

HELPERS = Path(__file__).parent / "helpers"
PY = sys.executable


def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text().strip()):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} not written within {timeout}s")


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from creditrisk_devstack import Supervisor
from creditrisk_devstack.procgroup import pid_alive


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def sup(log_dir: Path) -> Iterator[Supervisor]:
    with Supervisor(log_dir, poll_interval_s=0.05) as supervisor:
        yield supervisor
    # every test leaves nothing behind
    for proc in supervisor.processes:
        assert not pid_alive(proc.pid), proc.name

"""What a stack writes is its own (issue 18, M1): every child runs with umask 0077 (its files 0600,
its folders 0700), the supervisor makes ``dirs`` and the log folder 0700 and each log 0600; the
pre-stop hook runs with the same umask."""

from __future__ import annotations

from pathlib import Path

import pytest
from creditrisk_devstack import CHILD_UMASK, ProcessSpec, Supervisor, command_hook, private_dir
from devstack_testutil import PY, wait_for_file

pytestmark = pytest.mark.timeout(60)

WRITE = """
import os, sys, time
folder = sys.argv[1]
with open(os.path.join(folder, "applicants.db"), "w") as out:   # default mode 0666 & ~umask
    out.write("row")
os.mkdir(os.path.join(folder, "reports"))                        # default mode 0777 & ~umask
with open(os.path.join(folder, "done"), "w") as out:
    out.write("yes")
time.sleep(300)
"""


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_childs_files_are_0600_and_its_folders_0700(sup: Supervisor, log_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "stack" / "data" / "mlflow"
    sup.start(ProcessSpec("writer", [PY, "-c", WRITE, str(data)], dirs=(data,)))
    wait_for_file(data / "done")
    assert _mode(data / "applicants.db") == 0o600
    assert _mode(data / "reports") == 0o700
    # the folders the supervisor made, missing parents included, and the log folder and log
    assert _mode(data) == _mode(data.parent) == _mode(tmp_path / "stack") == 0o700
    assert _mode(log_dir) == 0o700
    assert _mode(log_dir / "writer.log") == 0o600


def test_an_existing_dir_is_made_private_and_the_pre_stop_hook_has_the_umask(tmp_path: Path) -> None:
    shared = tmp_path / "from-an-older-run"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert private_dir(shared) == shared
    assert _mode(shared) == 0o700
    marker = tmp_path / "hook-wrote"
    spec = ProcessSpec("sleeper", [PY, "-c", "import time; time.sleep(300)"])
    hook = command_hook([PY, "-c", f"open({str(marker)!r}, 'w').write('drained')"])
    with Supervisor(tmp_path / "logs", poll_interval_s=0.05) as sup:
        proc = sup.start(spec)
        hook(proc)
    assert marker.read_text() == "drained"
    assert _mode(marker) == 0o666 & ~CHILD_UMASK == 0o600

"""group_cpu_seconds: the CPU a process group spent, growing with the work its members do."""

from __future__ import annotations

import subprocess
import sys

from creditrisk_devstack.procgroup import group_cpu_seconds

_BURN = """
import time
end = time.process_time() + 0.5
while time.process_time() < end:
    pass
print("done", flush=True)
input()
"""


def test_a_groups_cpu_grows_with_its_members_work() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"done"  # burnt 0.5 s of CPU, still alive
        spent = group_cpu_seconds(child.pid)  # its own group (start_new_session)
        assert 0.4 <= spent < 5.0
    finally:
        child.kill()
        child.wait()
    assert group_cpu_seconds(child.pid) == 0.0  # no live member left

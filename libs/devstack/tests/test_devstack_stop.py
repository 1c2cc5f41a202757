from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from creditrisk_devstack import ManagedProcess, ProcessSpec, Supervisor, TcpReadiness, free_port
from creditrisk_devstack.procgroup import group_members, pid_alive
from devstack_testutil import HELPERS, PY, wait_for_file

pytestmark = pytest.mark.timeout(60)

SPAWN_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(300)
"""


def test_stop_all_kills_whole_groups(sup: Supervisor, tmp_path: Path) -> None:
    sh_child, py_child = tmp_path / "sh.pid", tmp_path / "py.pid"
    shell = sup.start(ProcessSpec("shell", ["sh", "-c", f"sleep 300 & echo $! > {sh_child}; sleep 300"]))
    python = sup.start(ProcessSpec("python", [PY, "-c", SPAWN_GRANDCHILD, str(py_child)]))
    pids = [shell.pid, python.pid, int(wait_for_file(sh_child)), int(wait_for_file(py_child))]
    assert all(pid_alive(p) for p in pids)
    assert len(group_members(shell.pgid)) >= 2
    sup.stop_all()
    assert [p for p in pids if pid_alive(p)] == []
    assert group_members(shell.pgid) == []
    assert group_members(python.pgid) == []
    assert all(not row.alive for row in sup.status())


def test_sigterm_ignored_is_sigkilled_after_grace(sup: Supervisor) -> None:
    port = free_port()
    proc = sup.start(
        ProcessSpec(
            "stubborn", [PY, str(HELPERS / "stubborn.py"), str(port)], ready=TcpReadiness(port), grace_s=0.7
        )
    )
    t0 = time.monotonic()
    sup.stop("stubborn")
    elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed < 4
    assert proc.returncode == -signal.SIGKILL
    assert not pid_alive(proc.pid)


def test_stop_order_stop_signal_and_before_stop_hook(sup: Supervisor) -> None:
    events: list[str] = []

    def hook(proc: ManagedProcess) -> None:
        events.append(f"before_stop {proc.name} alive={proc.alive}")

    sleeper = [PY, "-c", "import time; time.sleep(300)"]
    sup.start(ProcessSpec("a", sleeper, before_stop=hook))
    sup.start(ProcessSpec("b", sleeper, before_stop=hook, stop_signal=signal.SIGINT))
    sup.start(ProcessSpec("c", sleeper, before_stop=hook))
    time.sleep(0.3)  # let python install its SIGINT handler
    sup.stop_all()
    assert events == [f"before_stop {n} alive=True" for n in ("c", "b", "a")]
    assert sup["b"].returncode == -signal.SIGINT  # got SIGINT (KeyboardInterrupt), not SIGTERM
    assert "KeyboardInterrupt" in sup["b"].log_path.read_text()
    assert sup["a"].returncode == -signal.SIGTERM
    sup.stop_all()  # idempotent


def test_start_all_with_depends_on_starts_independent_processes_together(sup: Supervisor) -> None:
    p1, p2 = free_port(), free_port()
    delayed = (
        "import socket, sys, time; time.sleep(0.8); s = socket.socket(); "
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(300)"
    )
    sup.start_all(
        [
            ProcessSpec("x", [PY, "-c", delayed, str(p1)], ready=TcpReadiness(p1), depends_on=()),
            ProcessSpec("y", [PY, "-c", delayed, str(p2)], ready=TcpReadiness(p2), depends_on=()),
            ProcessSpec("z", [PY, "-c", "import time; time.sleep(300)"]),  # after x and y
        ]
    )
    x, y, z = sup["x"], sup["y"], sup["z"]
    assert x.ready_at is not None
    assert y.ready_at is not None
    assert y.started_at < x.ready_at  # x and y were started together and waited for in parallel
    assert x.started_at < y.ready_at
    assert z.started_at >= max(x.ready_at, y.ready_at)
    assert [r.name for r in sup.status()] == ["x", "y", "z"]
    assert all(r.ready for r in sup.status())


def test_start_all_rejects_unknown_dependency(sup: Supervisor) -> None:
    with pytest.raises(ValueError, match="unknown"):
        sup.start_all([ProcessSpec("a", ["true"], depends_on=("nope",))])


def test_logs_append_across_runs_and_exited(sup: Supervisor) -> None:
    spec = ProcessSpec("echo", [PY, "-c", "print('hello from echo')"])
    sup.start(spec)
    sup["echo"].popen.wait(5)
    assert [p.name for p in sup.exited()] == ["echo"]
    sup.stop("echo")
    sup.start(spec)
    sup["echo"].popen.wait(5)
    sup.stop_all()
    text = (sup.log_dir / "echo.log").read_text()
    assert text.count("==== devstack: echo started") == 2
    assert text.splitlines().count("hello from echo") == 2
    assert sup["echo"].log_tail() == "hello from echo"  # only this run's output, no supervisor lines

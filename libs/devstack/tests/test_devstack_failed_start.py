"""A start that fails leaves nothing behind: no process runs unready under its name, the name can be
started again, and a failed group (``start_all``) stops every process it started.

The first test replays issue 16 in a pytest session of its own: a test's timeout (pytest-timeout's
SIGALRM) fired while the supervisor waited for a process's readiness; the process stayed registered
and running, and every later test that started it failed with "<name>: already started".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from creditrisk_devstack import (
    HttpReadiness,
    ProcessSpec,
    ReadinessTimeoutError,
    Supervisor,
    SupervisorError,
    TcpReadiness,
    free_port,
)
from creditrisk_devstack.procgroup import group_members, pid_alive
from devstack_testutil import PY, wait_for_file

pytestmark = pytest.mark.timeout(60)

SLEEPER = [PY, "-c", "import time; time.sleep(300)"]


def http_server(name: str, port: int, **kw: object) -> ProcessSpec:
    return ProcessSpec(
        name,
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ready=HttpReadiness(f"http://127.0.0.1:{port}/"),
        timeout_s=20,
        grace_s=2,
        **kw,  # type: ignore[arg-type]
    )


INNER_SESSION = """
from collections.abc import Iterator

import pytest
from creditrisk_devstack import ProcessSpec, Supervisor, TcpReadiness
from creditrisk_devstack.procgroup import pid_alive

PY, PORT, LOG_DIR = {py!r}, {port!r}, {log_dir!r}
SERVER = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); time.sleep(300)"
)


@pytest.fixture(scope="session")
def sup() -> Iterator[Supervisor]:  # as tests/e2e/conftest.py: one supervisor for the session
    with Supervisor(LOG_DIR, poll_interval_s=0.05) as supervisor:
        yield supervisor


@pytest.mark.timeout(1.5, method="signal")
def test_1_times_out_while_waiting_for_readiness(sup: Supervisor) -> None:
    # never listens: the test's own timeout fires long before the readiness timeout
    sup.start(ProcessSpec("svc", [PY, "-c", "import time; time.sleep(300)"], ready=TcpReadiness(PORT),
                          timeout_s=60, grace_s=1))


def test_2_starts_it_clean(sup: Supervisor) -> None:
    first = sup["svc"]
    assert first.stopped and not pid_alive(first.pid), "the timed-out process was left running"
    proc = sup.start(ProcessSpec("svc", [PY, "-c", SERVER, str(PORT)], ready=TcpReadiness(PORT),
                                 timeout_s=20, grace_s=1))
    assert proc.ready and proc.pid != first.pid
"""


@pytest.mark.slow  # an inner pytest session that waits for its timeout
def test_a_tests_timeout_while_waiting_leaves_the_name_startable(tmp_path: Path) -> None:
    """pytest-timeout ends test 1 inside ``wait_ready``; test 2 of the same session starts the
    same name and passes (before the fix: "svc: already started", and svc kept running)."""
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(
        INNER_SESSION.format(py=PY, port=free_port(), log_dir=str(tmp_path / "logs")), encoding="utf-8"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not the repository's settings
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Timeout" in output, output  # test 1 really ended by pytest-timeout's signal
    assert "PASSED test_inner.py::test_2_starts_it_clean" in output, output
    assert "1 failed, 1 passed" in output, output


class _EndedFromOutside(BaseException):
    """Like pytest's ``Failed`` raised by pytest-timeout: not an ``Exception``."""


class _RaisingProbe:
    def check(self, timeout: float) -> str | None:
        raise _EndedFromOutside("the test's timeout")

    def close(self) -> None:
        return None


class _RaisingReadiness:
    def open_probe(self) -> _RaisingProbe:
        return _RaisingProbe()

    def describe(self) -> str:
        return "raises"

    def address(self) -> tuple[str, int] | None:
        return None


def test_a_wait_ended_from_outside_stops_every_process_it_waited_for(sup: Supervisor) -> None:
    base = sup.start(ProcessSpec("base", SLEEPER))  # ready before: not part of the wait
    sup.start(ProcessSpec("slow", SLEEPER, ready=TcpReadiness(free_port()), timeout_s=60), wait=False)
    sup.start(ProcessSpec("raising", SLEEPER, ready=_RaisingReadiness(), timeout_s=60), wait=False)
    with pytest.raises(_EndedFromOutside):
        sup.wait_ready("slow", "raising")
    for name in ("slow", "raising"):
        assert sup[name].stopped, name
        assert group_members(sup[name].pgid) == [], name
    assert base.alive
    assert not base.stopped
    assert "not ready when the wait ended (_EndedFromOutside)" in sup["raising"].log_path.read_text()
    again = sup.start(ProcessSpec("raising", SLEEPER))  # no "already started"
    assert again.alive


def test_a_failed_start_all_stops_every_process_it_started(sup: Supervisor) -> None:
    base = sup.start(ProcessSpec("base", SLEEPER))
    web_port = free_port()
    bogus = ProcessSpec("app", SLEEPER, ready=TcpReadiness(free_port()), timeout_s=0.8, grace_s=1)
    with pytest.raises(ReadinessTimeoutError, match=r"app: not ready after 0\.8s") as info:
        sup.start_all([http_server("web", web_port), bogus])  # app after web (depends_on=None)
    assert "--- last lines of" in str(info.value)
    web = sup["web"]
    assert web.stopped, "web, ready and started by the failed start_all, kept running"
    assert group_members(web.pgid) == []
    assert group_members(sup["app"].pgid) == []
    assert base.alive
    assert not base.stopped
    assert "web stopped: its group failed to start (ReadinessTimeoutError)" in web.log_path.read_text()
    started = sup.start_all([http_server("web", web_port), ProcessSpec("app", SLEEPER)])  # starts clean
    assert [p.name for p in started] == ["web", "app"]
    assert all(p.alive for p in started)


def test_a_process_that_exited_on_its_own_can_be_started_again(sup: Supervisor, tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    first = sup.start(
        ProcessSpec("crash", ["sh", "-c", f"sleep 300 & echo $! > {child}; exit 1"]), wait=False
    )
    orphan = int(wait_for_file(child))
    first.popen.wait(10)
    assert [p.name for p in sup.exited()] == ["crash"]
    assert pid_alive(orphan)
    again = sup.start(ProcessSpec("crash", SLEEPER))
    assert again.alive
    assert again.pid != first.pid
    assert not pid_alive(orphan)  # what was left of the old group is stopped before the restart
    with pytest.raises(SupervisorError, match="crash: already started"):  # a live one still refuses
        sup.start(ProcessSpec("crash", SLEEPER))


def test_a_reused_group_number_is_never_signalled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Once the leader is reaped and its group is empty, the kernel may give the number to another
    # process, leader of its own group: stopping (or restarting) the name must not signal it.
    import signal as signals

    from creditrisk_devstack import supervisor as module

    with Supervisor(tmp_path / "logs") as sup:
        proc = sup.start(ProcessSpec("short", [PY, "-c", "pass"], timeout_s=10, grace_s=1))
        proc.popen.wait(timeout=10)
        other = subprocess.Popen(SLEEPER, start_new_session=True)
        try:
            # the stranger as if it had been given our number: pid == our pgid, its own group
            monkeypatch.setattr(module, "group_members", lambda pgid: [pgid, other.pid])
            sent: list[tuple[int, int]] = []
            monkeypatch.setattr(module, "signal_group", lambda pgid, sig: sent.append((pgid, sig)) or True)
            assert not Supervisor._group_alive(proc)
            sup.stop("short")
            sup.start(ProcessSpec("short", [PY, "-c", "pass"], timeout_s=10, grace_s=1))
            assert sent == []
            assert other.poll() is None
        finally:
            other.send_signal(signals.SIGKILL)
            other.wait(timeout=10)

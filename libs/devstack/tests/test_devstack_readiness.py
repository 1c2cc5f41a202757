from __future__ import annotations

import dataclasses
import logging
import socket
import time
from pathlib import Path

import pytest
from creditrisk_devstack import (
    DEFAULT_GRACE_S,
    GrpcReadiness,
    HttpReadiness,
    PortInUseError,
    ProcessExitedError,
    ProcessSpec,
    ReadinessTimeoutError,
    Supervisor,
    TcpReadiness,
    free_port,
)
from creditrisk_devstack.procgroup import pid_alive
from devstack_testutil import HELPERS, PY

pytestmark = pytest.mark.timeout(60)


def http_server(name: str, port: int, **kw: object) -> ProcessSpec:
    return ProcessSpec(
        name,
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ready=HttpReadiness(f"http://127.0.0.1:{port}/"),
        timeout_s=20,
        grace_s=2,
        **kw,  # type: ignore[arg-type]
    )


def test_tcp_readiness_waits_for_listener(sup: Supervisor, tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import socket, time; time.sleep(0.5); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(300)"
    )
    t0 = time.monotonic()
    proc = sup.start(ProcessSpec("tcp", [PY, "-c", script], ready=TcpReadiness(port), timeout_s=20))
    assert time.monotonic() - t0 >= 0.5
    assert proc.ready
    assert proc.alive
    [row] = sup.status()
    assert (row.name, row.pid, row.alive, row.ready) == ("tcp", proc.pid, True, True)
    assert row.log_path == sup.log_dir / "tcp.log"


def test_http_readiness_and_log_capture(sup: Supervisor) -> None:
    port = free_port()
    proc = sup.start(http_server("web", port, env={"DEVSTACK_TEST": "x"}))
    assert proc.ready
    sup.stop_all()
    log = (sup.log_dir / "web.log").read_text()
    assert log.startswith("==== devstack: web started ")
    assert "http.server" in log.splitlines()[0]
    assert '"GET / HTTP/1.1" 200' in log  # the readiness probe, logged by http.server on stderr
    assert "==== devstack: web stopped" in log.splitlines()[-1]


def test_grpc_health_readiness(sup: Supervisor) -> None:
    port = free_port()
    t0 = time.monotonic()
    proc = sup.start(
        ProcessSpec(
            "grpc",
            [PY, str(HELPERS / "grpc_health_server.py"), str(port), "1.0", "creditrisk.Test"],
            ready=GrpcReadiness(f"127.0.0.1:{port}", service="creditrisk.Test"),
            timeout_s=30,
        )
    )
    assert proc.ready
    assert time.monotonic() - t0 >= 1.0  # NOT_SERVING for the first second
    assert "SERVING" in proc.log_tail()


def test_exit_during_readiness_reports_code_and_log_and_stops_the_rest(log_dir: Path) -> None:
    port = free_port()
    script = "import sys; print('loading config'); print('boom: bad setting', file=sys.stderr); sys.exit(3)"
    try:  # the error propagates out of the `with`, which stops "web"
        with Supervisor(log_dir, poll_interval_s=0.05) as sup:
            web = sup.start(http_server("web", port))
            sup.start(ProcessSpec("bad", [PY, "-c", script], ready=TcpReadiness(free_port()), timeout_s=20))
    except ProcessExitedError as exc:
        error = exc
    else:
        pytest.fail("no ProcessExitedError")
    assert error.name == "bad"
    assert error.returncode == 3
    assert "exited with code 3" in str(error)
    assert "boom: bad setting" in str(error)
    assert "loading config" in error.log_tail
    assert not pid_alive(web.pid)


def test_readiness_timeout_kills_the_group(sup: Supervisor, tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    spec = ProcessSpec(
        "slow",
        ["sh", "-c", f"sleep 300 & echo $! > {child}; echo started; exec sleep 300"],
        ready=TcpReadiness(free_port()),
        timeout_s=0.8,
        grace_s=5,
    )
    t0 = time.monotonic()
    with pytest.raises(ReadinessTimeoutError) as info:
        sup.start(spec)
    assert time.monotonic() - t0 < 5  # failed processes get at most a short grace
    assert "not ready after 0.8s" in str(info.value)
    assert "started" in info.value.log_tail
    proc = sup["slow"]
    assert not pid_alive(proc.pid)
    assert not pid_alive(int(child.read_text()))


def test_a_wait_begun_after_the_deadline_checks_once_before_failing(sup: Supervisor) -> None:
    """A process that got ready while nobody waited (the caller busy past its timeout) is ready."""
    port = free_port()
    sup.start(dataclasses.replace(http_server("late", port), timeout_s=1.0), wait=False)
    time.sleep(1.5)  # the deadline has passed; then wait (unwatched) until the server listens
    for _ in range(300):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    sup.wait_ready("late")
    assert sup["late"].ready


def test_port_already_in_use_fails_fast(sup: Supervisor) -> None:
    port = free_port()
    sup.start(http_server("first", port))
    with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}"):
        sup.start(http_server("second", port))
    assert "second" not in sup


def test_missing_executable(sup: Supervisor) -> None:
    from creditrisk_devstack import ProcessFailedError

    with pytest.raises(ProcessFailedError, match="could not start"):
        sup.start(ProcessSpec("nope", ["/nonexistent/binary"]))


def test_http_probe_does_not_log_a_request_line_per_poll(caplog: pytest.LogCaptureFixture) -> None:
    import http.server
    import threading

    import httpx

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    caplog.set_level(logging.INFO, logger="httpx")
    try:
        probe = HttpReadiness(url).open_probe()
        try:
            assert [probe.check(2.0) for _ in range(3)] == [None, None, None]
        finally:
            probe.close()
        assert not [r for r in caplog.records if r.name == "httpx"]
        # httpx logging outside the probe is untouched.
        with httpx.Client(trust_env=False) as client:
            client.get(url)
        assert [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]
    finally:
        server.shutdown()
        server.server_close()


def test_default_grace_exceeds_the_kit_services_drain() -> None:
    spec = ProcessSpec("svc", ["true"])
    assert spec.grace_s == DEFAULT_GRACE_S == 15.0
    assert spec.grace_s > 10.0  # creditrisk_kit's default grace_period_s, plus shutdown hooks


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS may offer a just-released port again (it did: a service's gRPC and report ports came
    out equal); free_port skips ports it handed out before."""
    import socket

    import creditrisk_devstack.readiness as readiness

    offered = iter([47001, 47001, 47001, 47002, 47001, 47003])

    class FakeSocket:
        def __init__(self, *args: object) -> None:
            self.port = 0

        def __enter__(self) -> FakeSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(readiness, "_HANDED_OUT", set())
    monkeypatch.setattr(socket, "socket", FakeSocket)
    assert [free_port(), free_port(), free_port()] == [47001, 47002, 47003]


def test_free_ports_are_distinct_and_bindable() -> None:
    import socket

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))

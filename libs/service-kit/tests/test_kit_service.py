"""The one service entry: ``run_service(ServiceSpec)`` in a subprocess (settings, readiness,
SIGTERM drain, extra HTTP server, hooks, exit status) and ``Service`` / the runner in process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from creditrisk_kit import (
    EXIT_BAD_CONFIGURATION,
    Service,
    ServiceSettings,
    ServiceSpec,
    aio_channel,
    wait_until_serving,
)
from creditrisk_kit.http import UvicornServer
from creditrisk_kit.service import build_service
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kit_support import SERVICE, handlers, method, settings, unary_unary

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ECHO_SERVICE = Path(__file__).with_name("echo_service.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def echo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ECHO_", "OTEL_"))}
    env.update(
        ECHO_HOST="127.0.0.1",
        ECHO_PORT=str(free_port()),
        ECHO_HTTP_PORT=str(free_port()),
        ECHO_GRACE_PERIOD_S="3",
        ECHO_HEALTH_CHECK_INTERVAL_S="0.05",
        ECHO_EVENTS_FILE=str(tmp_path / "events"),
        ECHO_READY_FILE=str(tmp_path / "ready"),
        OTEL_SDK_DISABLED="true",
    )
    env.update(extra)
    return env


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def health_status(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return int(response.status)


async def wait_status(channel: grpc.aio.Channel, wanted: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: int | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            last = await health_status(channel)
            if last == wanted:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health stayed {last}, wanted {wanted}")


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
async def test_sigterm_in_a_subprocess_drains_stops_http_then_runs_hooks_once_in_order(
    tmp_path: Path,
) -> None:
    env = echo_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ECHO_SERVICE), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    channel = aio_channel(f"127.0.0.1:{env['ECHO_PORT']}", retry=None)
    try:
        # Not ready (no ready file): the process serves, health says NOT_SERVING; then it flips.
        await wait_status(channel, NOT_SERVING)
        (tmp_path / "ready").touch()
        await wait_status(channel, SERVING)
        (tmp_path / "ready").unlink()
        await wait_status(channel, NOT_SERVING)
        (tmp_path / "ready").touch()
        await wait_until_serving(channel, timeout_s=10)
        assert await asyncio.to_thread(http_get, f"http://127.0.0.1:{env['ECHO_HTTP_PORT']}/") == "ok"

        in_flight = asyncio.ensure_future(method(channel, "unary_unary", "slow")(StringValue(value="a")))
        await asyncio.sleep(0.2)  # the call is in the handler
        proc.send_signal(signal.SIGTERM)
        assert (await in_flight).value == "done a"
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        await channel.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    events = (tmp_path / "events").read_text().splitlines()
    assert events == [
        "http started",
        "stop requested",
        "slow a done",
        "http stopped",
        "hook 1",
        "hook 2",
        "hook 3",
    ]
    assert "hook 2 failed" in stderr  # logged, and hook 3 still ran
    assert "Traceback" in stderr
    assert "RuntimeError" in stderr


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_settings_exit_2_naming_the_variable_not_the_value(tmp_path: Path) -> None:
    env = echo_env(tmp_path, ECHO_PORT="secret-port-value", ECHO_GRACE_PERIOD_S="-1")
    done = subprocess.run(
        [sys.executable, str(ECHO_SERVICE)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_BAD_CONFIGURATION == 2
    assert "invalid configuration of EchoSettings" in done.stderr
    assert "ECHO_PORT:" in done.stderr
    assert "ECHO_GRACE_PERIOD_S:" in done.stderr
    assert "secret-port-value" not in done.stderr
    assert not (tmp_path / "events").exists()  # nothing was built


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_port_taken_exits_non_zero_after_running_the_hooks(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = echo_env(tmp_path, ECHO_HTTP_PORT=str(taken.getsockname()[1]))
        done = subprocess.run(
            [sys.executable, str(ECHO_SERVICE)], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert "cannot start the extra server" in done.stderr
    assert (tmp_path / "events").read_text().splitlines() == ["stop requested", "hook 1", "hook 2", "hook 3"]


class Recorder:
    """An extra server that records when it is entered and exited."""

    def __init__(self, events: list[str], fail: bool = False) -> None:
        self.events = events
        self.fail = fail

    async def __aenter__(self) -> Recorder:
        if self.fail:
            raise OSError("address already in use")
        self.events.append("http start")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.events.append("http stop")


def echo_register(events: list[str]) -> Any:
    async def slow(request: StringValue, context: Any) -> StringValue:
        await asyncio.sleep(0.3)
        events.append("slow done")
        return request

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handlers(slow=unary_unary(slow)),))

    return register


async def test_hooks_run_once_in_order_after_the_drain_and_the_extra_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    def hook(name: str, fail: bool = False) -> Any:
        async def run() -> None:
            events.append(name)
            if fail:
                raise RuntimeError(f"{name} broke")

        return run

    service = Service(
        service_names=[SERVICE],
        register=echo_register(events),
        shutdown_hooks=[hook("hook 1"), hook("hook 2", fail=True), hook("hook 3")],
        http_server=Recorder(events),
        on_stop=lambda: events.append("on_stop"),
    )
    runner = service.runner(settings(), shutdown_hooks=[hook("flush")])
    port = await runner.start()
    channel = aio_channel(f"127.0.0.1:{port}", retry=None)
    try:
        in_flight = asyncio.ensure_future(method(channel, "unary_unary", "slow")(StringValue(value="x")))
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.ERROR, logger="creditrisk_kit.server"):
            await asyncio.gather(runner.stop(), runner.stop())
            await runner.stop()
        assert (await in_flight).value == "x"
    finally:
        await channel.close()
    assert events == [
        "http start",
        "on_stop",
        "slow done",
        "http stop",
        "hook 1",
        "hook 2",
        "hook 3",
        "flush",
    ]
    failed = [r for r in caplog.records if "shutdown hook" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None
    assert "hook 2 broke" in str(failed[0].exc_info[1])


async def test_a_hung_hook_is_cancelled_after_its_timeout_and_the_stop_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    async def hung() -> None:
        events.append("hung")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("hung cancelled")
            raise

    async def after() -> None:
        events.append("after")

    service = Service(service_names=[SERVICE], register=echo_register(events), shutdown_hooks=[hung, after])
    runner = service.runner(settings().model_copy(update={"shutdown_hook_timeout_s": 0.3}))
    await runner.start()
    began = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="creditrisk_kit.server"):
        await asyncio.wait_for(runner.stop(), 30)
    assert time.monotonic() - began < 10
    assert events == ["hung", "hung cancelled", "after"]
    assert any("still running after 0.3 s: cancelled" in r.getMessage() for r in caplog.records)


async def test_extra_server_that_fails_to_start_stops_grpc_and_still_runs_hooks() -> None:
    events: list[str] = []

    async def hook() -> None:
        events.append("hook")

    port = free_port()
    service = Service(
        service_names=[SERVICE],
        register=echo_register(events),
        shutdown_hooks=[hook],
        http_server=Recorder(events, fail=True),
    )
    runner = service.runner(settings(port=port))
    with pytest.raises(RuntimeError, match=r"cannot start the extra server.*address already in use"):
        await runner.run()
    assert events == ["hook"]
    with socket.socket() as sock:  # the gRPC port was released
        sock.bind(("127.0.0.1", port))


@contextlib.asynccontextmanager
async def serving(service: Service) -> AsyncIterator[int]:
    runner = service.runner(settings())
    port = await runner.start()
    try:
        yield port
    finally:
        await runner.stop()


async def test_uvicorn_server_serves_while_the_runner_runs_and_stops_with_it() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    http = UvicornServer(app, host="127.0.0.1", port=0, grace_period_s=1, name="REST")
    runner = Service(service_names=[SERVICE], register=echo_register([]), http_server=http).runner(settings())
    await runner.start()
    assert http.port is not None
    url = f"http://127.0.0.1:{http.port}/x"
    assert await asyncio.to_thread(http_get, url) == "hello"
    await runner.stop()
    assert seen == ["/x"]
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(http_get, url)


async def test_readiness_checks_of_a_service_flip_health_both_ways() -> None:
    up = True

    async def check() -> bool:
        return up

    service = Service(
        service_names=[SERVICE], register=echo_register([]), readiness_checks={"backend": check}
    )
    async with serving(service) as port:
        channel = aio_channel(f"127.0.0.1:{port}", retry=None)
        try:
            await wait_status(channel, SERVING, 5)
            up = False
            await wait_status(channel, NOT_SERVING, 5)
            up = True
            await wait_status(channel, SERVING, 5)
        finally:
            await channel.close()


async def test_build_may_be_sync_or_async_and_must_return_a_service() -> None:
    service = Service(service_names=[SERVICE], register=echo_register([]))

    async def build_async(_: ServiceSettings) -> Service:
        return service

    assert await build_service(ServiceSpec("a", ServiceSettings, lambda _: service), settings()) is service
    assert await build_service(ServiceSpec("b", ServiceSettings, build_async), settings()) is service
    with pytest.raises(TypeError, match="c: the build returned tuple, not a Service"):
        await build_service(ServiceSpec("c", ServiceSettings, lambda _: (service,)), settings())  # type: ignore[arg-type, return-value]

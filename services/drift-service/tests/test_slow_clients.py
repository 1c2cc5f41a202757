"""The drift-service as ``python -m drift_service`` builds it, against slow clients and probes:
the report server and ``/metrics`` close a connection that sends nothing or half a request head
after ``DRIFT_SERVICE_HTTP_IDLE_TIMEOUT_S`` while a normal read is answered, and close at once the
connections beyond ``DRIFT_SERVICE_HTTP_MAX_CONNECTIONS``; ``Health/List`` answers every status
(the generated stub of the installed grpcio-health-checking); a refused report read is counted and
in the refusal log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from creditrisk_kit import ServiceRunner, aio_channel, wait_until_serving
from creditrisk_testing.slow_clients import PARTIAL_HEAD, seconds_until_closed
from drift_service.__main__ import build
from drift_service.reports_http import ROUTE
from drift_service.servicer import SERVICE_NAME
from drift_service.settings import DriftServiceSettings
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from pydantic import SecretStr

TIMEOUT_S = 0.5
MAX_CONNECTIONS = 3
READER = "reader-key"
KEYS = {READER: {"subject": "monitoring-reader", "roles": ["read_monitoring"]}}


def status_of(url: str, key: str | None = READER) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
async def served(settings: DriftServiceSettings) -> AsyncIterator[tuple[ServiceRunner, Any]]:
    """The built service, started: (runner, its report server)."""
    settings = settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "grace_period_s": 1.0,
            "auth_api_keys": SecretStr(json.dumps(KEYS)),
            "http_idle_timeout_s": TIMEOUT_S,
            "http_max_connections": MAX_CONNECTIONS,
        }
    )
    service = await build(settings)
    runner = service.runner(settings)
    await runner.start()
    try:
        yield runner, service.http_server
    finally:
        await runner.stop()


@pytest.mark.parametrize(("prefix", "trickle"), [(b"", None), (PARTIAL_HEAD, None), (PARTIAL_HEAD, 0.1)])
async def test_slow_connections_are_cut_while_reports_and_metrics_are_served(
    served: tuple[ServiceRunner, Any], prefix: bytes, trickle: float | None
) -> None:
    runner, reports = served
    assert runner.metrics is not None
    (reports.directory / "r1.html").write_text("<!DOCTYPE html><p>report</p>")
    ports = {"reports": reports.port, "metrics": runner.metrics.port}
    slow = {
        name: asyncio.create_task(
            asyncio.to_thread(seconds_until_closed, "127.0.0.1", port, prefix, trickle_every_s=trickle)
        )
        for name, port in ports.items()
    }
    await asyncio.sleep(0.05)  # the slow connections are open
    assert await asyncio.to_thread(status_of, f"{reports.base_url}/reports/r1.html") == 200
    assert await asyncio.to_thread(status_of, f"http://127.0.0.1:{runner.metrics.port}/metrics") == 200
    for name, task in slow.items():
        cut = await task
        assert TIMEOUT_S * 0.9 <= cut.after_s <= TIMEOUT_S + 1.5, (name, cut)
        assert cut.answer == b"", name


async def test_report_connections_beyond_the_limit_are_closed_at_once(
    served: tuple[ServiceRunner, Any],
) -> None:
    _, reports = served
    held = [socket.create_connection(("127.0.0.1", reports.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        deadline = time.monotonic() + 3
        while reports._server.open_connections < MAX_CONNECTIONS:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        extra = await asyncio.to_thread(seconds_until_closed, "127.0.0.1", reports.port)
        assert extra.after_s < TIMEOUT_S / 2  # closed at once, not at the timeout
    finally:
        for connection in held:
            connection.close()


async def test_health_list_answers_every_status(served: tuple[ServiceRunner, Any]) -> None:
    runner, _ = served
    async with aio_channel(f"127.0.0.1:{runner.port}", retry=None) as channel:
        await wait_until_serving(channel, timeout_s=30)
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert {name: value.status for name, value in listed.statuses.items()} == {
        "": serving,
        SERVICE_NAME: serving,
        "liveness": serving,
    }


async def test_a_refused_report_read_is_counted_and_logged(
    served: tuple[ServiceRunner, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _, reports = served
    caplog.set_level(logging.WARNING, logger="creditrisk_kit.auth.refusals")
    labels = {"method": ROUTE, "outcome": "UNAUTHENTICATED"}
    before = REGISTRY.get_sample_value("auth_refusals_total", labels) or 0.0
    assert await asyncio.to_thread(status_of, f"{reports.base_url}/reports/r1.html", None) == 401
    assert await asyncio.to_thread(status_of, f"{reports.base_url}/reports/r1.html", "wrong-key") == 401
    assert REGISTRY.get_sample_value("auth_refusals_total", labels) == before + 2
    reasons = [r.reason for r in caplog.records if r.name == "creditrisk_kit.auth.refusals"]  # type: ignore[attr-defined]
    assert reasons[-1] == "unknown API key"
    assert "wrong-key" not in caplog.text


def _read_report(port: int, pause_s: float, stall_after: int = 0) -> tuple[int, int]:
    """GET ``/reports/big.html`` over a raw connection with a 256 KiB receive buffer, pausing
    ``pause_s`` after each read, or (``stall_after`` > 0) once after that many bytes: (the
    Content-Length announced, the body bytes received)."""
    request = f"GET /reports/big.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\n\r\n"
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        connection.sendall(request.encode())
        while chunk := connection.recv(1 << 18):
            stalling = stall_after and len(received) < stall_after <= len(received) + len(chunk)
            received += chunk
            if stalling or not stall_after:
                time.sleep(pause_s)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    lengths = [
        line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    ]
    return int(lengths[0]), len(body)


async def test_a_large_report_reaches_a_steady_reader_and_a_stalled_one_is_cut(
    served: tuple[ServiceRunner, Any],
) -> None:
    _, reports = served
    (reports.directory / "big.html").write_bytes(b"<p>" + b"x" * (24 << 20))  # 24 MiB
    # 256 KiB every 0.02 s: seconds in all (one sendall would be cut at 0.5 s), each piece in time
    started = time.monotonic()
    length, got = await asyncio.to_thread(_read_report, reports.port, 0.02)
    assert got == length
    assert time.monotonic() - started > TIMEOUT_S * 2
    # a reader that stops for three timeouts after the first mebibyte: the rest never comes
    length, got = await asyncio.to_thread(_read_report, reports.port, TIMEOUT_S * 3, 1 << 20)
    assert got < length

"""Slow clients on the kit's HTTP servers: on the threaded stdlib ones (``/metrics``) cut after the
idle timeout and bounded in number, on uvicorn cut at the request-head deadline, while a normal
request on the same server is answered; ``metrics_host`` binds the endpoint apart from gRPC."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from creditrisk_kit import ServiceSettings
from creditrisk_kit.http import UvicornServer
from creditrisk_kit.metrics import MetricsServer, start_metrics_server
from creditrisk_kit.tls import ReloadingSslContext, ServerTls
from creditrisk_testing.slow_clients import PARTIAL_HEAD, seconds_until_closed
from creditrisk_testing.tls import CertificateAuthority, write_tls_files
from kit_support import running

TIMEOUT_S = 0.5


def scrape(port: int, host: str = "127.0.0.1") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def open_connections(server: MetricsServer) -> int:
    return int(server._server.open_connections)  # type: ignore[union-attr]


def wait_for_open(server: MetricsServer, expected: int, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while open_connections(server) != expected:
        assert time.monotonic() < deadline, f"{open_connections(server)} open, expected {expected}"
        time.sleep(0.01)


@pytest.fixture
def metrics() -> MetricsServer:
    server = start_metrics_server(0, "127.0.0.1", idle_timeout_s=TIMEOUT_S, max_connections=4)
    yield server  # type: ignore[misc]
    server.close()


@pytest.mark.parametrize(
    ("prefix", "trickle_every_s"),
    [
        (b"", None),  # connects and sends nothing
        (PARTIAL_HEAD, None),  # a request head that stops half-way
        (PARTIAL_HEAD, 0.1),  # a header byte every 0.1 s: each read is quick, the head never ends
    ],
    ids=["idle", "partial head", "trickle"],
)
async def test_a_slow_connection_is_closed_after_the_timeout_while_a_scrape_works(
    metrics: MetricsServer, prefix: bytes, trickle_every_s: float | None
) -> None:
    port = metrics.port
    slow = asyncio.create_task(
        asyncio.to_thread(seconds_until_closed, "127.0.0.1", port, prefix, trickle_every_s=trickle_every_s)
    )
    await asyncio.to_thread(wait_for_open, metrics, 1)
    assert "# TYPE" in await asyncio.to_thread(scrape, metrics.port)  # served beside the slow one
    cut = await slow
    assert TIMEOUT_S * 0.9 <= cut.after_s <= TIMEOUT_S + 1.5
    assert cut.answer == b""  # closed, never answered: no request was completed
    await asyncio.to_thread(wait_for_open, metrics, 0)  # its thread is gone


async def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    # a long timeout: the four held connections stay open for the whole test
    metrics = start_metrics_server(0, "127.0.0.1", idle_timeout_s=30, max_connections=4)
    held = [socket.create_connection(("127.0.0.1", metrics.port)) for _ in range(4)]
    try:
        await asyncio.to_thread(wait_for_open, metrics, 4)
        extra = await asyncio.to_thread(seconds_until_closed, "127.0.0.1", metrics.port)
        assert extra.after_s < 1
        assert extra.answer == b""
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(scrape, metrics.port)  # a scrape, too, while the slots are taken
        for connection in held:
            connection.close()  # the server reads the end of stream and frees the slot
        await asyncio.to_thread(wait_for_open, metrics, 0)
        assert "# TYPE" in await asyncio.to_thread(scrape, metrics.port)  # the slots are free again
    finally:
        for connection in held:
            connection.close()
        metrics.close()


async def test_the_tls_handshake_counts_in_the_deadline(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path, CertificateAuthority.create("platform CA"))
    tls = ReloadingSslContext(ServerTls(files.server_cert, files.server_key))
    server = start_metrics_server(0, "127.0.0.1", tls=tls, idle_timeout_s=TIMEOUT_S)
    try:  # a client that connects and never starts the handshake
        cut = await asyncio.to_thread(seconds_until_closed, "127.0.0.1", server.port)
        assert TIMEOUT_S * 0.9 <= cut.after_s <= TIMEOUT_S + 1.5
    finally:
        server.close()


def test_bounds_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s"):
        start_metrics_server(0, idle_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        start_metrics_server(0, max_connections=0)


async def test_the_runner_binds_metrics_on_metrics_host_with_the_settings_bounds() -> None:
    overrides = {"metrics_port": 0, "metrics_host": "127.0.0.2", "http_idle_timeout_s": TIMEOUT_S}
    async with running(**overrides) as runner:
        assert runner.metrics is not None
        assert runner.metrics.host == "127.0.0.2"
        port = runner.metrics.port
        assert "# TYPE" in await asyncio.to_thread(scrape, port, "127.0.0.2")
        with pytest.raises(ConnectionRefusedError):  # not on the gRPC port's interface
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        cut = await asyncio.to_thread(seconds_until_closed, "127.0.0.2", port, PARTIAL_HEAD)
        assert cut.after_s <= TIMEOUT_S + 1.5


def test_metrics_host_defaults_to_host_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ServiceSettings(host="0.0.0.0").metrics_bind_host == "0.0.0.0"
    monkeypatch.setenv("SERVICE_METRICS_HOST", "127.0.0.1")
    monkeypatch.setenv("SERVICE_HTTP_IDLE_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SERVICE_HTTP_MAX_CONNECTIONS", "8")
    settings = ServiceSettings(host="0.0.0.0")
    assert (settings.metrics_bind_host, settings.http_idle_timeout_s, settings.http_max_connections) == (
        "127.0.0.1",
        2.5,
        8,
    )


# --- uvicorn (creditrisk_kit.http): the request-head deadline the kit adds ---------------------


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/slow":
        await asyncio.sleep(TIMEOUT_S * 3)  # the app may take longer: the deadline is the head's
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _keep_alive_then_partial(port: int) -> tuple[bytes, float]:
    """One full request on a connection, then a second head that never ends: (answer, seconds
    from the first answer to the close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = connection.recv(4096)
        answered = time.monotonic()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: local")
        while connection.recv(4096):
            pass
        return answer, time.monotonic() - answered


@pytest.mark.parametrize(
    ("prefix", "trickle_every_s"),
    [(b"", None), (PARTIAL_HEAD, None), (PARTIAL_HEAD, 0.1)],
    ids=["idle", "partial head", "trickle"],
)
async def test_uvicorn_closes_a_connection_without_a_request_head_in_time(
    prefix: bytes, trickle_every_s: float | None
) -> None:
    async with UvicornServer(
        _slow_app, host="127.0.0.1", port=0, grace_period_s=1, head_timeout_s=TIMEOUT_S
    ) as server:
        assert server.port is not None
        port = server.port
        trickle = trickle_every_s
        slow = asyncio.create_task(
            asyncio.to_thread(seconds_until_closed, "127.0.0.1", port, prefix, trickle_every_s=trickle)
        )
        async with httpx.AsyncClient() as client:  # answered meanwhile, also when slower than the deadline
            assert (await client.get(f"http://127.0.0.1:{port}/slow")).text == "ok"
        cut = await slow
        assert TIMEOUT_S * 0.9 <= cut.after_s <= TIMEOUT_S + 1.5
        assert cut.answer == b""


async def test_uvicorn_closes_a_kept_alive_connection_whose_next_head_stalls() -> None:
    async with UvicornServer(
        _slow_app, host="127.0.0.1", port=0, grace_period_s=1, head_timeout_s=TIMEOUT_S
    ) as server:
        assert server.port is not None
        answer, after_s = await asyncio.to_thread(_keep_alive_then_partial, server.port)
    assert answer.startswith(b"HTTP/1.1 200")
    assert TIMEOUT_S * 0.9 <= after_s <= TIMEOUT_S + 1.5


def test_uvicorn_head_timeout_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="head_timeout_s"):
        UvicornServer(_slow_app, host="127.0.0.1", port=0, grace_period_s=1, head_timeout_s=0)

"""Prometheus metrics of the kit: per-RPC counts by status and durations on the runner's
``/metrics`` port, per-route HTTP metrics of the ASGI middleware, and no port unless asked for."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from typing import Any

import grpc
import grpc.aio
import pytest
from creditrisk_kit import HttpMetricsMiddleware, InvalidArgument, aio_channel
from google.protobuf.wrappers_pb2 import StringValue
from kit_support import SERVICE, handlers, method, running, unary_stream, unary_unary


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition ``text`` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[line.index("{") : line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_rpc_counts_by_code_and_duration_on_the_metrics_port() -> None:
    async def echo(request: StringValue, context: Any) -> StringValue:
        if request.value == "bad":
            raise InvalidArgument("value", "must not be bad")
        if request.value == "boom":
            raise RuntimeError("unexpected")
        return request

    async def count(request: StringValue, context: Any) -> Any:
        for i in range(3):
            yield StringValue(value=str(i))

    generic = handlers(Echo=unary_unary(echo), Count=unary_stream(count))
    async with running(generic, metrics_port=0) as runner:
        assert runner.metrics is not None
        port = runner.metrics.port
        before = scrape(port)
        labels = {"grpc_service": SERVICE, "grpc_method": "Echo", "grpc_type": "unary"}
        ok0 = sample(before, "grpc_server_handled_total", grpc_code="OK", **labels)
        bad0 = sample(before, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **labels)
        internal0 = sample(before, "grpc_server_handled_total", grpc_code="INTERNAL", **labels)
        hist0 = sample(before, "grpc_server_handling_seconds_count", **labels)
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            echo_call = method(channel, "unary_unary", "Echo")
            for _ in range(3):
                await echo_call(StringValue(value="hi"), timeout=5)
            for value, code in (
                ("bad", grpc.StatusCode.INVALID_ARGUMENT),
                ("boom", grpc.StatusCode.INTERNAL),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await echo_call(StringValue(value=value), timeout=5)
                assert failure.value.code() == code
            streamed = [
                m.value async for m in method(channel, "unary_stream", "Count")(StringValue(), timeout=5)
            ]
            assert streamed == ["0", "1", "2"]
        finally:
            await channel.close()
        after = await asyncio.to_thread(scrape, port)
    assert sample(after, "grpc_server_handled_total", grpc_code="OK", **labels) == ok0 + 3
    assert sample(after, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **labels) == bad0 + 1
    assert sample(after, "grpc_server_handled_total", grpc_code="INTERNAL", **labels) == internal0 + 1
    assert sample(after, "grpc_server_handling_seconds_count", **labels) == hist0 + 5
    stream_labels = {"grpc_service": SERVICE, "grpc_method": "Count", "grpc_type": "server_stream"}
    assert sample(after, "grpc_server_handled_total", grpc_code="OK", **stream_labels) >= 1
    # the health checks of the readiness polling are counted too
    assert "grpc_server_handled_total" in after


async def test_no_metrics_port_unless_set_and_port_freed_at_stop() -> None:
    async with running() as runner:
        assert runner.metrics is None
    async with running(metrics_port=0) as runner:
        assert runner.metrics is not None
        port = runner.metrics.port
        assert "grpc_server_handling_seconds" in scrape(port)
    with pytest.raises(urllib.error.URLError, match="refused"):
        scrape(port)


class _Route:
    def __init__(self, path: str) -> None:
        self.path = path


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI app routing as Starlette does (``scope["route"]`` = the matched route)."""
    path = scope["path"]
    status = 404
    if path.startswith("/v1/items/"):
        scope["route"] = _Route("/v1/items/{item_id}")
        status = 200 if int(path.rsplit("/", 1)[1]) < 100 else 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _get(app: Any, path: str) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return int(sent[0]["status"])


async def test_http_middleware_labels_route_templates_and_status() -> None:
    from prometheus_client import generate_latest

    app = HttpMetricsMiddleware(_app)
    labels = {"method": "GET", "route": "/v1/items/{item_id}"}
    before = generate_latest().decode()
    assert await _get(app, "/v1/items/7") == 200
    assert await _get(app, "/v1/items/987654") == 404
    assert await _get(app, "/nowhere/987654") == 404
    assert await _get(app, "/metrics") == 404  # excluded: not counted
    after = generate_latest().decode()
    for status in ("200", "404"):
        assert sample(after, "http_server_requests_total", status=status, **labels) == (
            sample(before, "http_server_requests_total", status=status, **labels) + 1
        )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert sample(after, "http_server_requests_total", **unmatched) == (
        sample(before, "http_server_requests_total", **unmatched) + 1
    )
    assert sample(after, "http_server_request_duration_seconds_count", **labels) == (
        sample(before, "http_server_request_duration_seconds_count", **labels) + 2
    )
    # a path never becomes a label value (the id only inside a label value: a bare "987654" can
    # occur in a float sample, e.g. a duration sum 0.0215966799987654)
    assert "/987654" not in after
    assert '987654"' not in after
    assert "/metrics" not in after

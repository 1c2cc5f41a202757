"""One trace across an aio hop and a sync hop: client -> aio server -> (thread) sync client -> sync server."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from creditrisk_kit import aio_channel, insecure_channel
from creditrisk_telemetry import configure_logging, current_trace_id
from google.protobuf.wrappers_pb2 import StringValue
from kit_support import handlers, method, running, unary_unary
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", service="kit-tests", stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


@pytest.fixture
def sync_server() -> Iterator[int]:
    log = logging.getLogger("creditrisk.tests.inner")

    def inner(request: StringValue, context: Any) -> StringValue:
        log.info("inner handler", extra={"request_value": request.value})
        return StringValue(value=f"inner({request.value}) trace {current_trace_id()}")

    # grpc.server is wrapped by instrument_grpc() (conftest), as in a service.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handlers(inner=unary_unary(inner)),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None).wait(5)


async def test_one_trace_crosses_aio_and_sync_calls(
    spans: InMemorySpanExporter, sync_server: int, log_stream: io.StringIO
) -> None:
    sync_target = f"127.0.0.1:{sync_server}"

    def call_inner(value: str) -> str:
        with insecure_channel(sync_target) as channel:
            return str(method(channel, "unary_unary", "inner")(StringValue(value=value)).value)

    async def outer(request: StringValue, context: Any) -> StringValue:
        # asyncio.to_thread copies the context, so the sync client sees the server span.
        return StringValue(value=await asyncio.to_thread(call_inner, request.value))

    tracer = trace.get_tracer("tests")
    async with running(handlers(outer=unary_unary(outer))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            with tracer.start_as_current_span("client-root") as root:
                response = await method(channel, "unary_unary", "outer")(StringValue(value="x"))
                trace_id = current_trace_id()
        finally:
            await channel.close()

    assert trace_id == format(root.get_span_context().trace_id, "032x")
    assert response.value == f"inner(x) trace {trace_id}"

    finished = [s for s in spans.get_finished_spans() if "Health" not in s.name]
    by_kind = {(s.name.rsplit("/", 1)[-1], s.kind.name): s for s in finished}
    chain = [
        by_kind[("client-root", "INTERNAL")],
        by_kind[("outer", "CLIENT")],
        by_kind[("outer", "SERVER")],
        by_kind[("inner", "CLIENT")],
        by_kind[("inner", "SERVER")],
    ]
    assert {format(s.context.trace_id, "032x") for s in chain} == {trace_id}
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None, child.name
        assert child.parent.span_id == parent.context.span_id, f"{child.name} is not a child of {parent.name}"

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    inner_lines = [line for line in lines if line["message"] == "inner handler"]
    assert len(inner_lines) == 1
    line = inner_lines[0]
    assert line["trace_id"] == trace_id
    assert line["span_id"] == format(chain[-1].context.span_id, "016x")
    assert line["logger"] == "creditrisk.tests.inner"
    assert line["level"] == "INFO"
    assert line["service"] == "kit-tests"
    assert line["request_value"] == "x"
    assert "time" in line

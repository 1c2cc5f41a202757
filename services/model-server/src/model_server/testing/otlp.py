"""TEST FIXTURES ONLY: an in-process OTLP/gRPC trace receiver (the collector ``TraceService`` of
the ``opentelemetry-proto`` definitions) for the model-server's own tests.

The repository's receiver (``creditrisk_devstack.otlp``) cannot be installed here: its package needs
grpcio-health-checking >= 1.75, which needs protobuf >= 6.31, and this environment is on 5.29.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SERVER, INTERNAL = 2, 1  # OTLP Span.SpanKind values


@dataclass(frozen=True)
class Span:
    """One received span: ids as lowercase hex (``parent_span_id`` "" for a root); attribute values
    as strings."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, str]


def _text(value: Any) -> str:
    field = value.WhichOneof("value")
    return "" if field is None else str(getattr(value, field))


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """OTLP/gRPC receiver on ``127.0.0.1:<port>``; :meth:`env` points a process's ``OTEL_*`` here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.requests: list[bytes] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def env(self) -> dict[str, str]:
        """The standard ``OTEL_*`` variables that export a process's spans here (200 ms batches)."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(None)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (_text(a.value) for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=int(span.kind),
                            attributes={a.key: _text(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.requests.append(request.SerializeToString())
            self._spans.extend(received)

    def spans(self, trace_id: str | None = None) -> list[Span]:
        """Every span received so far, or those of one trace."""
        with self._lock:
            spans = list(self._spans)
        return spans if trace_id is None else [s for s in spans if s.trace_id == trace_id]

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout_s: float = 30.0) -> list[Span]:
        """All spans once ``predicate(all spans)`` holds.

        Raises:
            AssertionError: ``predicate`` still false after ``timeout_s`` seconds (names what arrived).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}:{s.trace_id[:8]}" for s in spans})[:60]
                raise AssertionError(f"spans not received within {timeout_s} s; have {names}")
            time.sleep(0.1)

"""A real OTLP/gRPC trace receiver for the demo and the end-to-end tests: the collector
``TraceService`` of the ``opentelemetry-proto`` definitions, served in-process by a gRPC server.

Every exported span is kept (with its resource's ``service.name``) and, when ``jsonl`` is given,
appended to that file as one JSON object a line (the OTLP/JSON mapping of the span plus
``service_name``): what ``make demo`` points a reader at.

Also a process of its own, ``python -m creditrisk_devstack.otlp [--jsonl FILE]`` (what the tracing
benchmark runs, so that receiving costs the measuring process nothing): it prints its endpoint as
the first line on stdout, serves until SIGTERM / SIGINT, then prints the number of spans received.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def otlp_env(endpoint: str) -> dict[str, str]:
    """The standard ``OTEL_*`` variables that send a service's spans to the OTLP/gRPC ``endpoint``
    (``http://host:port``), in batches every 200 ms (``OTEL_BSP_SCHEDULE_DELAY``; the SDK's
    default is 5000 ms), health checks untraced."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES": "grpc.health.v1.Health",
    }


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span: ids as lowercase hex (``parent_span_id`` "" for a root); ``received_at``
    is when its export request arrived (``time.monotonic()`` seconds)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    links: tuple[tuple[str, str], ...]
    proto: trace_pb2.Span
    received_at: float = 0.0

    def attributes(self) -> dict[str, Any]:
        return {a.key: json_format.MessageToDict(a.value) for a in self.proto.attributes}


def _service_name(resource: Any) -> str:
    for attribute in resource.attributes:
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """In-process OTLP/gRPC receiver on ``127.0.0.1:<port>`` (``endpoint`` for ``OTEL_*``)."""

    def __init__(self, jsonl: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests: list[bytes] = []
        self._jsonl = jsonl
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard ``OTEL_*`` variables that send a service's spans here, quickly."""
        return otlp_env(self.endpoint)

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(None)  # no grace: no thread (safe at interpreter exit too)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received: list[ReceivedSpan] = []
        now = time.monotonic()
        for resource_spans in request.resource_spans:
            service = _service_name(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=int(span.kind),
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                            proto=span,
                            received_at=now,
                        )
                    )
        with self._lock:
            self.requests.append(request.SerializeToString())
            self._spans.extend(received)
            if self._jsonl is not None:
                self._jsonl.parent.mkdir(parents=True, exist_ok=True)
                with self._jsonl.open("a") as out:
                    for r in received:
                        row = json_format.MessageToDict(r.proto)
                        row.update(service_name=r.service, trace_id_hex=r.trace_id, span_id_hex=r.span_id)
                        out.write(json.dumps(row) + "\n")

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            spans = list(self._spans)
        return spans if trace_id is None else [s for s in spans if s.trace_id == trace_id]

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30.0
    ) -> list[ReceivedSpan]:
        """All spans once ``predicate(all spans)`` holds; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}" for s in spans})[:80]
                raise AssertionError(f"spans not received within {timeout_s} s; have {names}")
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Serve a receiver until SIGTERM / SIGINT (see the module docstring); exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m creditrisk_devstack.otlp", description=__doc__)
    parser.add_argument("--jsonl", type=Path, default=None, help="append every span to this file")
    args = parser.parse_args(argv)
    receiver = OtlpReceiver(jsonl=args.jsonl).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(receiver.endpoint, flush=True)
    while not stop.wait(0.5):
        pass
    receiver.stop()
    print(len(receiver.spans()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

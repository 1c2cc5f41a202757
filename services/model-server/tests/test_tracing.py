"""MLServer's tracing and metrics as a real process: a V2 request carrying a W3C ``traceparent``
(REST header or gRPC metadata) continues the caller's trace through MLServer's own server span and
the runtime's ``model_server.predict``, exported over OTLP to the session's receiver; the serving
version gauge per alias on MLServer's metrics port."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import grpc
import httpx
import pytest
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.types import InferenceRequest, Parameters
from model_server.__main__ import mlserver_tracing_server
from model_server.mlserver_runtime import caller_context
from model_server.testing import fixtures as fx
from model_server.testing.clients import v2_json, v2_proto
from model_server.testing.otlp import INTERNAL, SERVER, OtlpReceiver, Span
from opentelemetry import trace

MODEL = "credit-risk"


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _trace(receiver: OtlpReceiver, trace_id: str) -> list[Span]:
    """The caller's trace once MLServer's server span and the runtime's span have both arrived."""

    def done(spans: list[Span]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        return any(s.name == "model_server.predict" for s in ours) and any(s.kind == SERVER for s in ours)

    receiver.wait_for(done, timeout_s=30)
    return receiver.spans(trace_id)


def _assert_tree(spans: list[Span], caller_span: str, server_name: str, version: str) -> None:
    """Exactly: MLServer's server span under the caller's span, ``model_server.predict`` under it."""
    servers = [s for s in spans if s.kind == SERVER]
    assert [(s.service, s.name, s.parent_span_id) for s in servers] == [
        ("model-server", server_name, caller_span)
    ], spans
    scored = [s for s in spans if s.name == "model_server.predict"]
    assert len(scored) == 1, spans
    assert (scored[0].service, scored[0].kind) == ("model-server", INTERNAL)
    assert scored[0].parent_span_id == servers[0].span_id
    assert scored[0].attributes["model.name"] == MODEL
    assert scored[0].attributes["model.version"] == version
    # every span of the trace hangs under the caller's span
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids or s.parent_span_id == caller_span for s in spans), spans


def _no_values(spans: list[Span], record: dict[str, Any]) -> None:
    """No input in any attribute: no feature name as a key, no distinctive string value anywhere
    (numbers occur in ids and ports; the end-to-end privacy test scans for numeric markers)."""
    distinctive = [v for v in record.values() if isinstance(v, str) and len(v) >= 5]
    assert distinctive  # the scan can fail
    for span in spans:
        for key, value in span.attributes.items():
            assert key not in record, (span.name, key)
            assert not any(text in value for text in distinctive), (span.name, key, value)


def test_tracing_server_follows_the_otel_variables(stack: Any) -> None:
    assert mlserver_tracing_server({}) is None
    assert mlserver_tracing_server({"OTEL_TRACES_EXPORTER": "none"}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert mlserver_tracing_server(endpoint) == "collector:4317"
    assert mlserver_tracing_server({"OTEL_TRACES_EXPORTER": "otlp"}) == "localhost:4317"
    assert (
        mlserver_tracing_server(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "b:4317"}
        )
        == "b:4317"
    )
    # MLServer exports over OTLP/gRPC only
    http = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert mlserver_tracing_server(http) is None
    assert mlserver_tracing_server({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(ValueError, match="zipkin"):
        mlserver_tracing_server({"OTEL_TRACES_EXPORTER": "zipkin"})
    # the session's MLServer was started with the receiver as its tracing server
    written = json.loads((stack.work / "mlserver" / "settings.json").read_text())
    assert written["tracing_server"] == f"127.0.0.1:{stack.receiver.port}"


def test_v2_rest_request_continues_the_callers_trace(stack: Any, inproc_v1: Any) -> None:
    trace_id, caller_span, traceparent = _traceparent()
    record = stack.records[0]
    answer = httpx.post(
        f"{stack.mlserver_http}/v2/models/{MODEL}/infer",
        json=v2_json([record], inproc_v1.signature),
        headers={**fx.auth_headers(), "traceparent": traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    spans = _trace(stack.receiver, trace_id)
    _assert_tree(spans, caller_span, "POST /v2/models/{model_name}/infer", stack.versions["lr"])
    _no_values(spans, record)


def test_v2_grpc_request_continues_the_callers_trace(stack: Any, inproc_v1: Any) -> None:
    trace_id, caller_span, traceparent = _traceparent()
    record = stack.records[1]
    with grpc.insecure_channel(stack.mlserver_grpc) as channel:
        answer = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            v2_proto(MODEL, [record], inproc_v1.signature),
            metadata=(("traceparent", traceparent), *fx.auth_headers().items()),
            timeout=30,
        )
    assert answer.model_version == stack.versions["lr"]
    spans = _trace(stack.receiver, trace_id)
    _assert_tree(spans, caller_span, "/inference.GRPCInferenceService/ModelInfer", stack.versions["lr"])
    _no_values(spans, record)


def test_a_request_without_traceparent_starts_its_own_trace(stack: Any, inproc_v1: Any) -> None:
    before = {s.trace_id for s in stack.receiver.spans()}
    answer = httpx.post(
        f"{stack.mlserver_http}/v2/models/{MODEL}/infer",
        json=v2_json([stack.records[2]], inproc_v1.signature),
        headers=fx.auth_headers(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    def complete(all_spans: list[Any]) -> bool:
        # MLServer's server span ends after the response: it may arrive in a later export batch
        fresh = {s.trace_id for s in all_spans if s.name == "model_server.predict"} - before
        return any(s.trace_id in fresh and s.kind == SERVER for s in all_spans)

    spans = stack.receiver.wait_for(complete, timeout_s=30)
    new = [s for s in spans if s.name == "model_server.predict" and s.trace_id not in before]
    assert len(new) == 1
    root = [s for s in spans if s.trace_id == new[0].trace_id and s.kind == SERVER]
    assert len(root) == 1
    assert root[0].parent_span_id == ""


def test_headers_give_the_parent_without_mlservers_span() -> None:
    # tracing_server unset: no server span around predict(); the runtime continues the traceparent
    # MLServer copied from the headers / metadata into parameters.headers
    trace_id, caller_span, traceparent = _traceparent()
    payload = InferenceRequest(inputs=[], parameters=Parameters(headers={"Traceparent": traceparent}))
    parent = caller_context(payload)
    assert parent is not None
    context = trace.get_current_span(parent).get_span_context()
    assert (trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)) == (
        trace_id,
        caller_span,
    )
    assert context.is_remote
    bare = caller_context(InferenceRequest(inputs=[]))
    assert bare is not None
    assert not trace.get_current_span(bare).get_span_context().is_valid


def test_serving_version_gauge_per_alias(stack: Any) -> None:
    metrics = httpx.get(f"{stack.mlserver_metrics}/metrics", timeout=10).text
    served = re.search(r'model_server_serving_version\{alias="challenger"\} (\S+)', metrics)
    assert served is not None, metrics[-2000:]
    assert float(served.group(1)) == float(stack.versions["lr"])

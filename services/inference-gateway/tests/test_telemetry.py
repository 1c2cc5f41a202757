"""Telemetry of the gateway in-process (fake backends): the caller's trace continues through REST and
gRPC into the feature read and the model call, the prediction log's delivery span links to each
prediction's span, and the Prometheus endpoints carry the per-route / per-RPC and domain metrics."""

from __future__ import annotations

import re

import pytest
from conftest import wait_for
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from fakes import SIGNATURE
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    return exporter


def _hex(span_id: int) -> str:
    return trace.format_span_id(span_id)


async def test_rest_predict_continues_the_callers_trace_and_the_log_links_back(gw, stack, spans):
    spans.clear()
    response = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 1},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["trace_id"] == CALLER_TRACE
    assert await gw.core.logger.flush()
    await wait_for(lambda: any(s.name == "prediction_log.deliver" for s in spans.get_finished_spans()))

    finished = spans.get_finished_spans()
    ours = [s for s in finished if trace.format_trace_id(s.context.trace_id) == CALLER_TRACE]
    by_id = {s.context.span_id: s for s in ours}
    by_name = {s.name: s for s in ours}
    # FastAPI's server span continues the caller's; the route's span and the prediction under it
    servers = [s for s in ours if s.parent is not None and _hex(s.parent.span_id) == CALLER_SPAN]
    assert len(servers) == 1
    assert servers[0].kind == trace.SpanKind.SERVER
    predict = by_name["inference.predict"]
    route = by_id[predict.parent.span_id]
    assert route.name == "POST /v1/predict"
    assert route.parent.span_id == servers[0].context.span_id
    assert "fastapi.endpoint" not in by_name
    # the feature-service call, a gRPC client span under the prediction
    feature_calls = [s for s in ours if "FeatureStoreService" in s.name]
    assert feature_calls, [s.name for s in ours]
    assert all(
        s.kind == trace.SpanKind.CLIENT for s in feature_calls if s.parent.span_id == predict.context.span_id
    )
    # ... named as the gRPC instrumentation names it, its context sent in the call's traceparent
    online = next(
        s for s in feature_calls if s.kind == trace.SpanKind.CLIENT and s.name.endswith("/GetOnlineFeatures")
    )
    assert online.name == "/creditrisk.feature.v1.FeatureStoreService/GetOnlineFeatures"
    assert online.parent.span_id == predict.context.span_id
    assert online.attributes["rpc.system"] == "grpc"
    assert online.attributes["rpc.grpc.status_code"] == 0
    sent = stack.features.traceparents[-1]
    assert sent is not None
    assert sent.split("-")[1:3] == [CALLER_TRACE, _hex(online.context.span_id)]
    # the model server got the trace in its traceparent header
    assert stack.champion.traceparents[-1].split("-")[1] == CALLER_TRACE
    # the delivery: its own trace, linking to the prediction; LogPredictions under it
    deliveries = [s for s in finished if s.name == "prediction_log.deliver"]
    linked = [
        d for d in deliveries if any(link.context.span_id == predict.context.span_id for link in d.links)
    ]
    assert len(linked) == 1
    delivery = linked[0]
    assert delivery.parent is None
    log_calls = [
        s
        for s in finished
        if "LogPredictions" in s.name and s.parent and s.parent.span_id == delivery.context.span_id
    ]
    assert log_calls, "LogPredictions is not a child of the delivery span"
    # the stored event carries the caller's trace id
    event_id = response.json()["event_id"]
    assert stack.drift.events[event_id].trace_id == CALLER_TRACE


async def test_grpc_predict_continues_the_callers_trace(gw, spans):
    spans.clear()
    # an instrumented grpc.aio client inside the caller's trace: its client span injects traceparent
    caller = propagate.extract({"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    with trace.get_tracer("test").start_as_current_span("caller", context=caller) as span:
        response = await gw.grpc.Predict(ipb.PredictRequest(applicant_id=3), timeout=5)
    assert response.trace_id == CALLER_TRACE
    finished = spans.get_finished_spans()
    predict_spans = [s for s in finished if s.name.endswith("InferenceService/Predict")]
    client = next(s for s in predict_spans if s.kind == trace.SpanKind.CLIENT)
    server = next(s for s in predict_spans if s.kind == trace.SpanKind.SERVER)
    assert client.parent.span_id == span.get_span_context().span_id
    assert server.parent.span_id == client.context.span_id
    assert trace.format_trace_id(server.context.trace_id) == CALLER_TRACE
    inner = next(s for s in finished if s.name == "inference.predict")
    assert inner.parent.span_id == server.context.span_id


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels}")


async def test_metrics_on_rest_and_on_the_metrics_port(start_gateway, stack):
    gw = await start_gateway(metrics_port=0)
    missing0 = REGISTRY.get_sample_value("inference_gateway_features_missing_total") or 0.0
    requested0 = REGISTRY.get_sample_value("inference_gateway_features_requested_total") or 0.0
    for applicant in (1, 2):
        assert (await gw.http.post("/v1/predict", json={"applicant_id": applicant})).status_code == 200
    await gw.grpc.Predict(ipb.PredictRequest(applicant_id=3), timeout=5)
    assert await gw.core.logger.flush()
    port = gw.gateway.runner.metrics.port
    scraped = (await gw.http.get(f"http://127.0.0.1:{port}/metrics")).text
    rest = (await gw.http.get("/metrics")).text
    for text in (scraped, rest):
        assert _sample(text, "inference_gateway_serving_model_version", slot="SERVING_SLOT_CHAMPION") == 1.0
        assert _sample(text, "http_server_requests_total", route="/v1/predict", status="200") >= 2
        assert _sample(text, "http_server_request_duration_seconds_count", route="/v1/predict") >= 2
        assert _sample(text, "grpc_server_handled_total", grpc_method="Predict", grpc_code="OK") >= 1
        assert _sample(text, "inference_gateway_prediction_log_events_total", stage="delivered") >= 3
        assert _sample(text, "inference_gateway_prediction_log_pending_events", where="total") == 0
        # applicant 2 has no age: one missing feature out of 3 x the signature's
        assert _sample(text, "inference_gateway_features_missing_total") == missing0 + 1
        assert _sample(text, "inference_gateway_features_requested_total") == requested0 + 3 * len(SIGNATURE)

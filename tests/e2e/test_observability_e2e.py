"""One trace per decision, across every service as its own process, read from a real OTLP receiver.

The session's services export their spans over OTLP/gRPC (the standard ``OTEL_*`` variables, see
``conftest.otlp_receiver``) to the in-process receiver of ``otlp_receiver.py``. Three callers:

1. REST with a W3C ``traceparent``: the caller's trace id throughout the gateway (FastAPI's server
   span, the route, ``inference.predict``), the feature-service (``GetOnlineFeatures`` and its
   ``feature_store.online_read`` span, reached through ``asyncio.to_thread``) and the model-server
   (``model_server.predict`` continuing the ``traceparent`` seldon-core's Flask worker received);
   the prediction log's batch span (its own trace) links to the prediction's span, and the
   drift-service's ``LogPredictions`` is its child; the stored event carries the caller's trace id.
2. A ``grpc.aio`` client on the gateway's gRPC ``Predict`` with ``traceparent`` metadata.
3. Work handed to a thread pool (``ContextThreadPoolExecutor``): each task's call continues the
   submitter's span.

Then the privacy proof: marker values (``credit_amount=987654``, ``age_in_years=87``) reach the
response and the drift-service's store, and appear nowhere in what was exported (span names,
attributes, events, links, raw OTLP bytes) nor in any log line of any process. Finally every
service's Prometheus endpoint answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import time
from typing import Any

import httpx
import pytest
from creditrisk.common.v1 import values_pb2
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from creditrisk_devstack.otlp import OtlpReceiver, ReceivedSpan
from creditrisk_telemetry import ContextThreadPoolExecutor, build_telemetry
from e2e_stack import (
    GATEWAY_HEADERS,
    VERIFY,
    Stack,
    drift_data_dir,
    gateway_aio_channel,
    inference_gateway_http,
)
from google.protobuf import json_format
from opentelemetry import propagate, trace
from test_gateway_e2e import materialized

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind values

#: Marker values: valid for the model, unusual enough to occur nowhere else.
CREDIT_MARKER = 987654
AGE_MARKER = 87
#: A numeric marker this short occurs everywhere (ports, times): searched next to its name.
AGE_PATTERN = re.compile(rb"age_in_years\W{0,8}87(?!\d)")


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _serving(stack: Stack) -> str:
    base = inference_gateway_http(stack)
    materialized(stack)
    return base


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def _ancestors(span: ReceivedSpan, index: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    out = []
    while span.parent_span_id in index:
        span = index[span.parent_span_id]
        out.append(span)
    return out


def _one(spans: list[ReceivedSpan], service: str, name: str, kind: int | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name and (kind is None or s.kind == kind)]
    assert len(found) == 1, (service, name, [f"{s.service}:{s.name}" for s in spans])
    return found[0]


def _describe(receiver: OtlpReceiver, trace_id: str) -> str:
    """What arrived for ``trace_id`` and the spans that should have joined it (failure messages)."""
    lines = []
    spans = receiver.spans()
    first = min((s.received_at for s in spans), default=0.0)
    for span in spans:
        if span.trace_id == trace_id or span.name in ("model_server.predict", "prediction_log.deliver"):
            lines.append(
                f"{span.service}:{span.name} trace={span.trace_id[:8]} span={span.span_id[:8]} "
                f"parent={span.parent_span_id[:8]} links={[(t[:8], s[:8]) for t, s in span.links]} "
                f"received=+{span.received_at - first:.2f}s"
            )
    return f"trace {trace_id[:8]}:\n" + "\n".join(lines[-40:])


def _wait_tree(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan]:
    try:
        return receiver.wait_for(_tree_complete(trace_id), timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_describe(receiver, trace_id)}") from None


def _tree_complete(trace_id: str) -> Any:
    def done(spans: list[ReceivedSpan]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        names = {(s.service, s.name) for s in ours}
        predict = [s for s in ours if s.name == "inference.predict"]
        linked = bool(predict) and any(
            (trace_id, predict[0].span_id) in s.links for s in spans if s.name == "prediction_log.deliver"
        )
        return (
            ("feature-service", "feature_store.online_read") in names
            and ("model-server", "model_server.predict") in names
            and linked
        )

    return done


def test_rest_prediction_is_one_trace_across_every_service(stack: Stack, otlp_receiver: OtlpReceiver) -> None:
    base = _serving(stack)
    trace_id, caller_span, traceparent = _traceparent()
    response = httpx.post(
        f"{base}/v1/predict",
        json={"applicant_id": 7},
        headers={"traceparent": traceparent, **GATEWAY_HEADERS},
        timeout=30,
        verify=VERIFY,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["trace_id"] == trace_id

    spans = _wait_tree(otlp_receiver, trace_id)
    ours = [s for s in spans if s.trace_id == trace_id]
    index = _by_id(ours)
    assert {s.service for s in ours} >= {"inference-gateway", "feature-service", "model-server"}

    # gateway: FastAPI's server span is the caller's child; the route span, then the prediction
    server = next(s for s in ours if s.parent_span_id == caller_span)
    assert (server.service, server.kind) == ("inference-gateway", SERVER)
    predict = _one(ours, "inference-gateway", "inference.predict")
    assert server in _ancestors(predict, index)

    # feature-service: its server span under the gateway's client span, the store read under it
    fs_server = _one(
        ours, "feature-service", "/creditrisk.feature.v1.FeatureStoreService/GetOnlineFeatures", SERVER
    )
    fs_client = index[fs_server.parent_span_id]
    assert (fs_client.service, fs_client.kind) == ("inference-gateway", CLIENT)
    assert predict in _ancestors(fs_client, index)
    read = _one(ours, "feature-service", "feature_store.online_read")
    assert read.parent_span_id == fs_server.span_id  # across asyncio.to_thread

    # model-server: continues the traceparent of the gateway's REST call
    scored = _one(ours, "model-server", "model_server.predict", SERVER)
    assert predict in [index[scored.parent_span_id], *_ancestors(index[scored.parent_span_id], index)]
    assert scored.attributes()["model.version"]["stringValue"] == str(body["model_version"])

    # every span of the request is connected: one tree rooted at the caller's span
    for span in ours:
        chain = [span, *_ancestors(span, index)]
        assert chain[-1].parent_span_id == caller_span, (span.service, span.name)

    # the prediction log: a batch span linking to the prediction; drift-service's call under it
    delivery = next(
        s for s in spans if s.name == "prediction_log.deliver" and (trace_id, predict.span_id) in s.links
    )
    assert delivery.service == "inference-gateway"
    assert delivery.parent_span_id == ""
    batch = [s for s in spans if s.trace_id == delivery.trace_id]
    otlp_receiver.wait_for(
        lambda all_spans: any(
            s.service == "drift-service" and s.name.endswith("DriftService/LogPredictions")
            for s in all_spans
            if s.trace_id == delivery.trace_id
        ),
        timeout_s=30,
    )
    batch = [s for s in otlp_receiver.spans(delivery.trace_id)]
    drift = _one(batch, "drift-service", "/creditrisk.drift.v1.DriftService/LogPredictions", SERVER)
    assert delivery in _ancestors(drift, _by_id(batch))

    # the stored event carries the caller's trace id: a drift window leads back to the request
    row = _stored_event(stack, body["event_id"])
    assert row["trace_id"] == trace_id


def _stored_event(stack: Stack, event_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    db = drift_data_dir(stack) / "drift.db"
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM prediction_events WHERE event_id = ?", (event_id,)).fetchone()
        if row is not None:
            return dict(row)
        assert time.monotonic() < deadline, f"event {event_id} not stored"
        time.sleep(0.2)


def test_async_grpc_client_trace_reaches_every_service(stack: Stack, otlp_receiver: OtlpReceiver) -> None:
    _serving(stack)
    trace_id, caller_span, traceparent = _traceparent()

    async def call() -> pb.PredictResponse:
        async with gateway_aio_channel(stack.targets["inference-gateway"]) as channel:
            return await pb_grpc.InferenceServiceStub(channel).Predict(
                pb.PredictRequest(applicant_id=8), metadata=(("traceparent", traceparent),), timeout=30
            )

    response = asyncio.run(call())
    assert response.trace_id == trace_id
    spans = _wait_tree(otlp_receiver, trace_id)
    ours = [s for s in spans if s.trace_id == trace_id]
    server = next(s for s in ours if s.parent_span_id == caller_span)
    assert server.service == "inference-gateway"
    assert server.name == "/creditrisk.inference.v1.InferenceService/Predict"
    assert server.kind == SERVER
    index = _by_id(ours)
    for name in ("feature_store.online_read", "model_server.predict"):
        span = next(s for s in ours if s.name == name)
        assert server in _ancestors(span, index), name


def _request_tree(
    spans: list[ReceivedSpan], trace_id: str, caller_span: str, event_id: str
) -> dict[str, ReceivedSpan] | None:
    """One REST prediction's spans in the caller's trace, found from its ``inference.predict``
    (attribute ``inference.event_id``) up to the gateway's server span and down to the
    feature-service and the model-server; None while a part has not arrived."""
    ours = [s for s in spans if s.trace_id == trace_id]
    index = _by_id(ours)
    predicts = [
        s
        for s in ours
        if s.name == "inference.predict"
        and s.attributes().get("inference.event_id", {}).get("stringValue") == event_id
    ]
    if len(predicts) != 1:
        return None
    predict = predicts[0]
    chain = _ancestors(predict, index)
    if not chain or chain[-1].parent_span_id != caller_span:
        return None  # the route span or the server span is not there yet

    def below(service: str, name: str) -> ReceivedSpan | None:
        found = [
            s for s in ours if (s.service, s.name) == (service, name) and predict in _ancestors(s, index)
        ]
        return found[0] if len(found) == 1 else None

    parts = {
        "server": chain[-1],
        "route": chain[0],
        "predict": predict,
        # the gateway's client span has the same name: the service tells them apart
        "features": below("feature-service", "/creditrisk.feature.v1.FeatureStoreService/GetOnlineFeatures"),
        "read": below("feature-service", "feature_store.online_read"),
        "scored": below("model-server", "model_server.predict"),
    }
    return None if any(v is None for v in parts.values()) else parts  # type: ignore[return-value]


def test_work_handed_to_a_thread_pool_keeps_the_callers_trace(
    stack: Stack, otlp_receiver: OtlpReceiver
) -> None:
    """Three requests from three pool threads: each is its own subtree of the submitter's span.

    The receiver is polled until every part of the three requests has arrived: each process
    exports on its own batch schedule (``OTEL_BSP_SCHEDULE_DELAY``), and the gateway's server span
    ends after its response is sent, so the model-server's spans can arrive a round before the
    gateway's server spans (what an earlier count taken at the model-server's spans raced).
    """
    base = _serving(stack)
    tracer = build_telemetry("e2e-caller", environ={}).tracer_provider.get_tracer("e2e")

    def predict(applicant: int) -> dict[str, Any]:
        headers: dict[str, str] = dict(GATEWAY_HEADERS)
        propagate.inject(headers)  # whatever context this worker thread runs in
        answer = httpx.post(
            f"{base}/v1/predict", json={"applicant_id": applicant}, headers=headers, timeout=30, verify=VERIFY
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    with tracer.start_as_current_span("caller batch") as caller:
        trace_id = trace.format_trace_id(caller.get_span_context().trace_id)
        caller_span = trace.format_span_id(caller.get_span_context().span_id)
        with ContextThreadPoolExecutor(max_workers=3) as pool:
            bodies = list(pool.map(predict, [9, 10, 11]))
    assert [b["trace_id"] for b in bodies] == [trace_id] * 3
    event_ids = [str(b["event_id"]) for b in bodies]
    assert len(set(event_ids)) == 3

    def complete(all_spans: list[ReceivedSpan]) -> bool:
        return all(_request_tree(all_spans, trace_id, caller_span, e) is not None for e in event_ids)

    try:
        spans = otlp_receiver.wait_for(complete, timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_describe(otlp_receiver, trace_id)}") from None
    ours = [s for s in spans if s.trace_id == trace_id]
    index = _by_id(ours)
    trees = [_request_tree(spans, trace_id, caller_span, e) for e in event_ids]
    assert all(t is not None for t in trees)

    # exactly three children of the submitter's span: the gateway's server span of each request
    children = [s for s in ours if s.parent_span_id == caller_span]
    assert (
        sorted((s.service, s.name, s.kind) for s in children)
        == [("inference-gateway", "POST /v1/predict", SERVER)] * 3
    ), children
    assert {t["server"].span_id for t in trees if t} == {s.span_id for s in children}
    for tree in trees:
        assert tree is not None
        # server -> route -> inference.predict, nothing between
        assert (tree["route"].name, tree["route"].parent_span_id) == (
            "POST /v1/predict",
            tree["server"].span_id,
        )
        assert tree["predict"].parent_span_id == tree["route"].span_id
        # feature-service: its server span under a gateway client span under this prediction
        features = tree["features"]
        assert (features.service, features.kind) == ("feature-service", SERVER)
        client = index[features.parent_span_id]
        assert (client.service, client.kind) == ("inference-gateway", CLIENT)
        assert tree["predict"] in _ancestors(client, index)
        assert tree["read"].parent_span_id == features.span_id
        # model-server: continues the traceparent of this prediction's call (aiohttp, no client span)
        assert (tree["scored"].service, tree["scored"].kind) == ("model-server", SERVER)
        assert tree["scored"].parent_span_id == tree["predict"].span_id
    # no span of the trace outside the three subtrees (nothing parented elsewhere)
    members = {tree["server"].span_id for tree in trees if tree}
    for span in ours:
        chain = [span, *_ancestors(span, index)]
        assert chain[-1].span_id in members, (span.service, span.name, span.parent_span_id)


# ---------------------------------------------------------------------- privacy


#: Span fields that are ids or clocks, at any depth (links, events): random or time-made digits in
#: which a six-digit marker occurs by chance (one run's start time was 1796357098765471355 ns).
_NOT_CONTENT = ("traceId", "spanId", "parentSpanId")


def _content(node: Any) -> Any:
    """The OTLP/JSON span without its ids and ``*UnixNano`` times: names, attributes, events, status."""
    if isinstance(node, dict):
        return {
            k: _content(v) for k, v in node.items() if k not in _NOT_CONTENT and not k.endswith("UnixNano")
        }
    if isinstance(node, list):
        return [_content(item) for item in node]
    return node


def _values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for item in node.values() for v in _values(item)]
    if isinstance(node, list):
        return [v for item in node for v in _values(item)]
    return [node]


def _leaks(value: Any) -> bool:
    text = str(value)
    if str(CREDIT_MARKER) in text:
        return True
    try:
        return float(value) == CREDIT_MARKER
    except (TypeError, ValueError):
        return False


def test_marker_values_reach_the_store_and_never_the_telemetry(
    stack: Stack, otlp_receiver: OtlpReceiver
) -> None:
    base = _serving(stack)
    request_values = {"credit_amount": CREDIT_MARKER, "age_in_years": AGE_MARKER}
    event_ids, trace_ids = [], []
    for applicant in (12, 13):
        answer = httpx.post(
            f"{base}/v1/predict",
            json={"applicant_id": applicant, "request_values": request_values},
            headers=GATEWAY_HEADERS,
            timeout=30,
            verify=VERIFY,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        # the markers did reach the response and the model (so the scan below can fail)
        assert body["features"]["credit_amount"] == CREDIT_MARKER
        assert body["features"]["age_in_years"] == AGE_MARKER
        event_ids.append(body["event_id"])
        trace_ids.append(body["trace_id"])

    async def grpc_call() -> None:
        async with gateway_aio_channel(stack.targets["inference-gateway"]) as channel:
            response = await pb_grpc.InferenceServiceStub(channel).Predict(
                pb.PredictRequest(
                    applicant_id=14,
                    request_values={
                        "credit_amount": values_pb2.FeatureValue(int64_value=CREDIT_MARKER),
                        "age_in_years": values_pb2.FeatureValue(int64_value=AGE_MARKER),
                    },
                ),
                timeout=30,
            )
            event_ids.append(response.event_id)
            trace_ids.append(response.trace_id)

    asyncio.run(grpc_call())
    # ... and the drift-service's store (the prediction events keep the values: not telemetry)
    for event_id in event_ids:
        row = _stored_event(stack, event_id)
        assert str(CREDIT_MARKER) in json.dumps(row, default=str)
    # every request's spans, the batch spans included, have been exported
    for trace_id in trace_ids:
        _wait_tree(otlp_receiver, trace_id)
    time.sleep(1.0)  # one more export round of every process (OTEL_BSP_SCHEDULE_DELAY=200 ms)

    spans = otlp_receiver.spans()
    assert len(spans) > 20
    hits = []
    for span in spans:
        as_dict = _content(json_format.MessageToDict(span.proto))
        assert ("attributes" in as_dict) == bool(span.proto.attributes), span.name  # scanned, not lost
        for value in _values(as_dict):
            if _leaks(value) or AGE_PATTERN.search(str(value).encode()):
                hits.append((span.service, span.name, value))
        if AGE_PATTERN.search(json.dumps(as_dict).encode()):
            hits.append((span.service, span.name, "age_in_years=87"))
    for raw in otlp_receiver.requests:
        if str(CREDIT_MARKER).encode() in raw or AGE_PATTERN.search(raw):
            hits.append(("raw OTLP request", "", ""))
    assert not hits, hits[:10]

    # every file written during the run: the processes' logs, and anything else under the session
    log_files = [p for p in sorted(stack.workdir.glob("**/*.log")) if p.is_file()]
    assert len(log_files) >= 5, log_files
    log_hits = []
    for path in log_files:
        data = path.read_bytes()
        if str(CREDIT_MARKER).encode() in data or AGE_PATTERN.search(data):
            for line in data.splitlines():
                if str(CREDIT_MARKER).encode() in line or AGE_PATTERN.search(line):
                    log_hits.append((path.name, line[:300]))
    assert not log_hits, log_hits[:10]


# ---------------------------------------------------------------------- metrics


def test_every_services_metrics_endpoint_answers(stack: Stack) -> None:
    _serving(stack)
    stack.target("training-service")
    expected = {
        "feature-service": "feature_service_online_values_total",
        "training-service": "grpc_server_handled_total",
        "registry-gateway": "grpc_server_handled_total",
        "drift-service": "drift_service_prediction_events_total",
        "inference-gateway": "inference_gateway_serving_model_version",
        "model-server-champion": "model_server_serving_version",
    }
    for name, metric in expected.items():
        port = stack.ports[f"{name}-metrics"]
        # the model-server's custom metrics reach seldon-core's store once per second
        deadline = time.monotonic() + 10
        while True:
            answer = httpx.get(f"https://127.0.0.1:{port}/metrics", timeout=10, verify=VERIFY)
            assert answer.status_code == 200, name
            if metric in answer.text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert metric in answer.text, (name, metric)
    gateway = httpx.get(
        f"https://127.0.0.1:{stack.ports['inference-gateway-metrics']}/metrics", timeout=10, verify=VERIFY
    ).text
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Predict"' in gateway or re.search(
        r'grpc_server_handled_total\{[^}]*grpc_method="Predict"', gateway
    )
    assert re.search(r'http_server_requests_total\{[^}]*route="/v1/predict"', gateway)

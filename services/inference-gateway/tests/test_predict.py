"""Predict over REST and gRPC: shapes, enrichment precedence, missing inputs, bad input, limits,
backends down."""

from __future__ import annotations

import json
import re
import time

import grpc
import pytest
from creditrisk.common.v1 import serving_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from fakes import SIGNATURE, probability
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def strict_json(text: str) -> object:
    """Parse refusing NaN / Infinity (what a strict client does)."""

    def refuse(token: str) -> object:
        raise ValueError(f"non-JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def violations(exc: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(exc)
    assert status is not None
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [v.field for v in bad.field_violations]
    return out


async def test_rest_predict_shape_and_decision(gw, stack):
    r = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 1, "client_request_id": "app-1", "event_time": "2026-03-01T10:00:00Z"},
    )
    assert r.status_code == 200, r.text
    body = strict_json(r.text)
    assert re.fullmatch(r"[0-9a-f-]{36}", body["event_id"])
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    expected = probability({"credit_amount": 2000, "duration_in_month": 12}, 1)
    assert body["probability_of_default"] == pytest.approx(expected)
    assert body["model_name"] == "credit-risk"
    assert body["model_version"] == 1
    assert body["decision_threshold"] == 0.5
    assert body["decision"] == ("DECISION_DECLINE" if expected >= 0.5 else "DECISION_APPROVE")
    assert body["serving_slot"] == "SERVING_SLOT_CHAMPION"
    assert body["client_request_id"] == "app-1"
    assert body["event_time"] == "2026-03-01T10:00:00Z"
    assert set(body["features"]) == set(SIGNATURE)
    assert body["features"]["monthly_installment"] == pytest.approx(2000 / 12)
    assert body["missing_features"] == []
    # The model got exactly its signature's inputs.
    assert stack.champion.records[-1]["purpose"] == "car"


async def test_grpc_predict_and_list_models(gw):
    response = await gw.grpc.Predict(
        ipb.PredictRequest(applicant_id=3, request_values={"age": values_pb2.FeatureValue(int64_value=40)})
    )
    assert response.model_version == 1
    assert response.decision_threshold == 0.5
    assert response.serving_slot == serving_pb2.SERVING_SLOT_CHAMPION
    assert response.features["age"].int64_value == 40  # the request value wins
    assert response.features["purpose"].string_value == "radio/tv"
    assert len(response.trace_id) == 32
    assert response.event_time.seconds > 0
    models = await gw.grpc.ListServingModels(ipb.ListServingModelsRequest())
    (champion,) = models.models
    assert champion.alias == "champion"
    assert champion.model_version == 1
    assert champion.ready
    r = await gw.http.get("/v1/models")
    assert r.json()["models"][0]["model_version"] == 1


async def test_request_value_precedence_and_on_demand_input(gw, stack):
    # credit_amount is both a stored feature and a request value of the feature service (as the
    # real feature-service advertises it): the caller's value overrides the stored 2000 in the
    # model's input and reaches the on-demand view, whose monthly_installment uses it.
    r = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 1, "request_values": {"credit_amount": {"int64Value": "3000"}}},
    )
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert features["credit_amount"] == 3000
    assert features["monthly_installment"] == pytest.approx(3000 / 12)
    # Both request values given: the on-demand view uses both.
    r = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 1, "request_values": {"credit_amount": 3000, "duration_in_month": 24}},
    )
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert features["duration_in_month"] == 24
    assert features["monthly_installment"] == pytest.approx(3000 / 24)
    # The request source's own field name is not a name the feature service advertises.
    r = await gw.http.post(
        "/v1/predict", json={"applicant_id": 1, "request_values": {"requested_credit_amount": 6000}}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field_violations"][0]["field"] == "request_values.requested_credit_amount"


async def test_missing_optional_listed_and_null_to_model(gw, stack):
    # applicant 2: age is NULL_VALUE; purpose OUTSIDE_TTL counts as missing too.
    stack.features.statuses[(2, "purpose")] = fpb.FEATURE_STATUS_OUTSIDE_TTL
    r = await gw.http.post("/v1/predict", json={"applicant_id": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_features"] == ["age", "purpose"]
    assert body["features"]["age"] is None
    assert body["features"]["purpose"] is None
    assert stack.champion.records[-1]["age"] is None


async def test_missing_required_lists_every_one(gw, stack):
    # duration is required by the signature flag, credit_amount by the version's tag.
    stack.features.statuses[(3, "duration_in_month")] = fpb.FEATURE_STATUS_OUTSIDE_TTL
    stack.features.statuses[(3, "credit_amount")] = fpb.FEATURE_STATUS_NULL_VALUE
    before = len(stack.champion.records)
    r = await gw.http.post("/v1/predict", json={"applicant_id": 3})
    assert r.status_code == 422
    fields = [v["field"] for v in r.json()["error"]["field_violations"]]
    assert fields == ["request_values.credit_amount", "request_values.duration_in_month"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=3))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == fields
    assert len(stack.champion.records) == before  # never scored on defaulted values
    # A request value supplies them.
    r = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 3, "request_values": {"duration_in_month": 24, "credit_amount": 10}},
    )
    assert r.status_code == 200, r.text


async def test_unknown_applicant(gw):
    r = await gw.http.post("/v1/predict", json={"applicant_id": 999_999})
    assert r.status_code == 404
    assert r.json()["error"]["status"] == "NOT_FOUND"
    assert len(r.json()["error"]["trace_id"]) == 32
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=999_999))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # With request values it is scored on them (the on-demand view computes monthly_installment
    # from the request's values, as the real feature-service does); the rest is listed as missing.
    r = await gw.http.post(
        "/v1/predict",
        json={"applicant_id": 999_999, "request_values": {"duration_in_month": 12, "credit_amount": 1000}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["missing_features"] == ["age", "purpose"]
    assert r.json()["features"]["monthly_installment"] == pytest.approx(1000 / 12)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"age": "forty"}, "request_values.age"),
        ({"age": 40.5}, "request_values.age"),
        ({"purpose": 3}, "request_values.purpose"),
        ({"no_such_feature": 1}, "request_values.no_such_feature"),
        ({"age": [1]}, "request_values.age"),
        ({"age": {"doubleValue": 1.5}}, "request_values.age"),
    ],
)
async def test_rest_wrong_types_name_the_field(gw, values, field):
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1, "request_values": values})
    assert r.status_code == 422, r.text
    assert [v["field"] for v in r.json()["error"]["field_violations"]] == [field]


async def test_rest_malformed_bodies(gw):
    cases = [
        (b'{"applicant_id": 1, "request_values": {"age": NaN}}', "body"),
        (b"not json", "body"),
        (b'{"request_values": {}}', "applicant_id"),
        (b'{"applicant_id": "x1"}', "applicant_id"),
        (b'{"applicant_id": 1, "colour": "red"}', "colour"),
        (b'{"applicant_id": 1, "event_time": "yesterday"}', "event_time"),
    ]
    for content, field in cases:
        r = await gw.http.post("/v1/predict", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, (content, r.text)
        assert field in r.json()["error"]["message"]
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 200


async def test_grpc_wrong_type_and_missing_id(gw):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(
            ipb.PredictRequest(
                applicant_id=1,
                request_values={
                    "age": values_pb2.FeatureValue(string_value="x"),
                    "purpose": values_pb2.FeatureValue(),
                },
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["request_values.age", "request_values.purpose"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["applicant_id"]


async def test_limits_then_next_request_served(gw):
    # REST body over max_request_bytes (= max_message_bytes, 256 KiB here): 413 before parsing.
    big = {"applicant_id": 1, "client_request_id": "x" * 300_000}
    r = await gw.http.post("/v1/predict", json=big)
    assert r.status_code == 413
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
    # Batch over max_batch_size (50): 413 / RESOURCE_EXHAUSTED.
    r = await gw.http.post("/v1/predict:batch", json={"requests": [{"applicant_id": 1}] * 51})
    assert r.status_code == 413
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.PredictBatch(
            ipb.PredictBatchRequest(requests=[ipb.PredictRequest(applicant_id=1)] * 51)
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # gRPC message over the server's max receive size.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1, client_request_id="x" * 300_000))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    response = await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
    assert response.model_version == 1


async def test_batch_items_fail_on_their_own(gw):
    items = [
        {"applicant_id": 1},
        {"applicant_id": 999_999},
        {"applicant_id": 2, "request_values": {"age": "x"}},
        {"applicantId": "3"},
    ]
    r = await gw.http.post("/v1/predict:batch", json={"requests": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["prediction"]["model_version"] == 1
    assert results[1]["error"]["status"] == "NOT_FOUND"
    assert results[2]["error"]["field_violations"][0]["field"] == "requests[2].request_values.age"
    assert results[3]["prediction"]["features"]["purpose"] == "radio/tv"
    response = await gw.grpc.PredictBatch(
        ipb.PredictBatchRequest(
            requests=[ipb.PredictRequest(applicant_id=1), ipb.PredictRequest(applicant_id=5)]
        )
    )
    assert response.results[0].HasField("prediction")
    assert response.results[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_batch_event_times_are_read_each_on_its_own(start_gateway):
    # issue 16: never one format for the batch; an item without an offset is refused (default) or UTC
    items = [
        {"applicant_id": 1, "event_time": "2026-03-01T09:30:00-03:00"},
        {"applicant_id": 2, "event_time": "2026-03-01 11:00:00"},
        {"applicant_id": 3, "event_time": "2026-03-01T11:00:00.5+01:00"},
    ]
    strict = await start_gateway()
    r = await strict.http.post("/v1/predict:batch", json={"requests": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["prediction"]["event_time"] == "2026-03-01T12:30:00Z"
    assert results[1]["error"]["field_violations"][0]["field"] == "requests[1].event_time"
    assert "no UTC offset" in results[1]["error"]["field_violations"][0]["description"]
    assert results[2]["prediction"]["event_time"] == "2026-03-01T10:00:00.500000Z"
    lenient = await start_gateway(naive_timestamps="utc")
    r = await lenient.http.post("/v1/predict:batch", json={"requests": items})
    times = [item["prediction"]["event_time"] for item in r.json()["results"]]
    assert times == ["2026-03-01T12:30:00Z", "2026-03-01T11:00:00Z", "2026-03-01T10:00:00.500000Z"]


async def test_feature_service_down_or_slow_is_503_within_deadline(gw, stack):
    stack.features.down = True
    started = time.monotonic()
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 503
    assert time.monotonic() - started < 1.0  # feature deadline 0.5 s
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    stack.features.down = False
    stack.features.delay_s = 2.0  # far beyond the 0.5 s deadline
    gw.core.features._schema_at = 0.0  # force a schema read too: still one budget
    started = time.monotonic()
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 503
    assert time.monotonic() - started < 1.0
    stack.features.delay_s = 0.0
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200


async def test_feature_service_internal_error_is_503_and_keeps_the_connection(gw, stack):
    """A feature-service INTERNAL is a backend failure (503 / UNAVAILABLE), not an unhandled 500
    (whose REST handler re-raised and closed the client's keep-alive connection)."""
    stack.features.failing = True
    try:
        r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
        assert r.status_code == 503, r.text
        assert "INTERNAL" in r.json()["error"]["message"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stack.features.failing = False
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200


async def test_gateway_credential_refused_by_the_feature_service_is_503_naming_it(gw, stack):
    """A rotated or unknown gateway credential is the gateway's configuration: 503 naming the
    setting, never a 500 "internal error" (as before)."""
    stack.features.refusing = True
    try:
        r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
        assert r.status_code == 503, r.text
        assert "INFERENCE_GATEWAY_CREDENTIAL_FILE" in r.json()["error"]["message"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "refused the gateway's own credential (UNAUTHENTICATED)" in (err.value.details() or "")
    finally:
        stack.features.refusing = False
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200


async def test_model_server_down_is_503_then_recovers(gw, stack):
    stack.champion.delay_s = 2.0  # no answer within the 0.5 s deadline
    started = time.monotonic()
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 503
    assert time.monotonic() - started < 1.5
    stack.champion.delay_s = 0.0
    await stack.champion.stop()  # connection refused
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 503
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_nan_from_the_model_server_never_reaches_the_client(gw, stack):
    stack.champion.nan = True
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 502
    strict_json(r.text)


async def test_v2_protocol(start_gateway, stack):
    gw = await start_gateway(model_protocol="v2")
    r = await gw.http.post("/v1/predict", json={"applicant_id": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == 1
    assert body["decision_threshold"] == 0.5
    assert body["probability_of_default"] == pytest.approx(
        probability({"credit_amount": 15000, "duration_in_month": 48}, 1)
    )


async def test_openapi_and_probes(gw):
    spec = (await gw.http.get("/openapi.json")).json()
    assert {"/v1/predict", "/v1/predict:batch", "/v1/models", "/livez", "/readyz"} <= set(spec["paths"])
    assert (await gw.http.get("/livez")).status_code == 200
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"]
    assert b"inference_gateway_predictions" in (await gw.http.get("/metrics")).content


async def test_grpc_event_time_out_of_range_fails_its_item_only(gw):
    bad = ipb.PredictRequest(applicant_id=2)
    bad.event_time.nanos = -1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["event_time.nanos"]
    far = ipb.PredictRequest(applicant_id=3)
    far.event_time.seconds = 253_402_300_800  # after 9999-12-31
    response = await gw.grpc.PredictBatch(
        ipb.PredictBatchRequest(requests=[ipb.PredictRequest(applicant_id=1), bad, far])
    )
    assert response.results[0].prediction.model_version == 1
    assert response.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "requests[1].event_time.nanos" in response.results[1].error.message
    assert "requests[2].event_time" in response.results[2].error.message
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.PredictBatch(ipb.PredictBatchRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

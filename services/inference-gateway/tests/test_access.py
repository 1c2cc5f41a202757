"""Closed to strangers (issue 18): every gRPC method (from the server's registered descriptors)
and every REST route (from the app's routes and its OpenAPI document) refused without a
credential, with a wrong one and with a lower role; probes public; per-subject rate limits with a
retry hint; the feature echo per role; the access log."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
import pytest
from conftest import KEYS, Running, StartGateway
from creditrisk_kit.auth import PUBLIC, AuthConfigurationError, Role
from creditrisk_testing.refusal import check_grpc_refusals, check_http_refusals
from fastapi.routing import APIRoute
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inference_gateway.access import GRPC_POLICY, HTTP_POLICY, SERVICE_NAME
from inference_gateway.service import Gateway

WRONG_KEY = "not-a-known-key"


def _served_methods() -> list[Any]:
    """Every method of the served service, from the descriptor pool (a method added to the
    contract shows up here, and fails below unless the policy names it)."""
    return list(descriptor_pool.Default().FindServiceByName(SERVICE_NAME).methods)


def _lower_keys(requirement: Role) -> list[str]:
    """Test keys without ``requirement`` (and not admin)."""
    return [
        key
        for key, (_subject, roles) in KEYS.items()
        if requirement.value not in roles and "admin" not in roles
    ]


def _key_with(requirement: Role) -> str:
    return next(
        key for key, (_s, roles) in KEYS.items() if roles == [requirement.value] or requirement.value in roles
    )


async def _call(channel: Any, method: Any) -> grpc.StatusCode:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{SERVICE_NAME}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        await stub(request_class(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_method_and_route_has_a_policy() -> None:
    GRPC_POLICY.check_covers([SERVICE_NAME])
    assert {f"/{SERVICE_NAME}/{m.name}" for m in _served_methods()} == set(GRPC_POLICY)


async def test_grpc_refusals_on_every_method(gw: Running) -> None:
    methods = _served_methods()
    assert methods
    for method in methods:
        requirement = GRPC_POLICY.requirement(f"/{SERVICE_NAME}/{method.name}")
        assert isinstance(requirement, Role), method.name
        lower = _lower_keys(requirement)
        assert lower, f"no test key lacks {requirement}"
        for key, expected in [
            (None, grpc.StatusCode.UNAUTHENTICATED),
            (WRONG_KEY, grpc.StatusCode.UNAUTHENTICATED),
            *[(k, grpc.StatusCode.PERMISSION_DENIED) for k in lower],
        ]:
            channel = gw.grpc_channel(key)
            try:
                assert await _call(channel, method) == expected, (method.name, key)
            finally:
                await channel.close()
        channel = gw.grpc_channel(_key_with(requirement))
        try:  # the right role passes the check (the empty request may still be invalid)
            assert await _call(channel, method) not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )
        finally:
            await channel.close()


async def test_grpc_health_is_public(gw: Running) -> None:
    channel = gw.grpc_channel(None)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status in (  # answered, not refused (readiness may still be pending)
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
    finally:
        await channel.close()


def _routes(gw: Running) -> list[tuple[str, str]]:
    """(method, path template) of every route: the app's routes (a route hidden from the schema
    included) and the OpenAPI document's operations (checked to be among them)."""
    app = gw.gateway.app
    routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    }
    documented = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= routes
    return sorted(routes)


def _requirement(method: str, path: str) -> Any:
    return HTTP_POLICY.get(f"{method} {path}", HTTP_POLICY.get(path))


async def test_rest_refusals_on_every_route(gw: Running) -> None:
    routes = _routes(gw)
    assert ("POST", "/v1/predict") in routes
    assert ("GET", "/metrics") in routes  # hidden from the OpenAPI document, closed all the same
    for method, path in routes:
        requirement = _requirement(method, path)
        assert requirement is not None, f"{method} {path} has no policy"
        if requirement == PUBLIC:
            assert path in ("/livez", "/readyz")
            async with gw.http_client(None) as client:
                assert (await client.request(method, path)).status_code in (200, 503)
            continue
        for key, status in [
            (None, 401),
            (WRONG_KEY, 401),
            *[(k, 403) for k in _lower_keys(requirement)],
        ]:
            async with gw.http_client(key) as client:
                response = await client.request(method, path, json={})
            assert response.status_code == status, (method, path, key, response.text)
            error = response.json()["error"]
            assert error["status"] == ("UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED")
            if key is not None:
                assert key not in response.text  # never the credential
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
        async with gw.http_client(_key_with(requirement)) as client:
            response = await client.request(method, path, json={})
        assert response.status_code not in (401, 403), (method, path)


async def test_openapi_document_is_public(gw: Running) -> None:
    async with gw.http_client(None) as client:
        assert (await client.get("/openapi.json")).status_code == 200


async def test_no_credential_source_refuses_to_build(stack: Any, tmp_path: Any) -> None:
    settings = stack.settings(tmp_path, auth_api_keys=None)
    with pytest.raises(AuthConfigurationError, match="INFERENCE_GATEWAY_AUTH_API_KEYS"):
        Gateway(settings)


# ---------------------------------------------------------------- rate limits


def _retry_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no google.rpc.RetryInfo in the status details")


async def test_rate_limit_429_with_retry_after_and_resource_exhausted_with_retry_info(
    start_gateway: StartGateway,
) -> None:
    from creditrisk.inference.v1 import inference_service_pb2 as ipb

    gw = await start_gateway(
        rate_limit_per_s=1, rate_limit_burst=2, rate_limit_overrides={"ops": {"per_s": 0}}
    )
    async with gw.http_client("predict-key") as client:  # subject "scorer": bursts of 2, 1 per second
        statuses = [
            (await client.post("/v1/predict", json={"applicant_id": 1})).status_code for _ in range(3)
        ]
        assert statuses[:2] == [200, 200]
        assert statuses[2] == 429
        refused = await client.post("/v1/predict", json={"applicant_id": 1})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "scorer" in refused.json()["error"]["message"]

    channel = gw.grpc_channel("predict-key")  # the same subject over gRPC: the same budget
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(
                f"/{SERVICE_NAME}/Predict",
                request_serializer=ipb.PredictRequest.SerializeToString,
                response_deserializer=ipb.PredictResponse.FromString,
            )(ipb.PredictRequest(applicant_id=1), timeout=5)
    finally:
        await channel.close()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = _retry_info(caught.value).retry_delay
    assert 0 < delay.seconds + delay.nanos / 1e9 <= 2

    for _ in range(10):  # "ops" has an override: unlimited
        assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
    # a batch counts one request per item
    async with gw.http_client("reader-key") as client:
        batch = {"requests": [{"applicant_id": 1}] * 2}
        assert (await client.post("/v1/predict:batch", json=batch)).status_code == 200
        assert (await client.post("/v1/predict", json={"applicant_id": 1})).status_code == 429


async def test_calls_refused_before_scoring_are_in_the_access_log(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Second attacker pass (issue 18): a rate-limited call (REST and gRPC) and a batch refused
    before any item was read wrote no access record."""
    from creditrisk.inference.v1 import inference_service_pb2 as ipb

    gw = await start_gateway(rate_limit_per_s=1, rate_limit_burst=1)
    caplog.set_level(logging.INFO, logger="inference_gateway.access")
    async with gw.http_client("predict-key") as client:
        assert (await client.post("/v1/predict:batch", json={"requests": 3})).status_code == 422
        assert (await client.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
        assert (await client.post("/v1/predict", json={"applicant_id": 1})).status_code == 429
    channel = gw.grpc_channel("predict-key")
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary(
                f"/{SERVICE_NAME}/Predict",
                request_serializer=ipb.PredictRequest.SerializeToString,
                response_deserializer=ipb.PredictResponse.FromString,
            )(ipb.PredictRequest(applicant_id=1), timeout=5)
    finally:
        await channel.close()
    records = [r for r in caplog.records if r.name == "inference_gateway.access"]
    seen = [(r.subject, r.method, r.outcome) for r in records]  # type: ignore[attr-defined]
    assert seen == [
        ("scorer", "POST /v1/predict:batch", "INVALID_ARGUMENT"),
        ("scorer", "POST /v1/predict", "OK"),
        ("scorer", "POST /v1/predict", "RESOURCE_EXHAUSTED"),
        ("scorer", "Predict", "RESOURCE_EXHAUSTED"),
    ]


# ---------------------------------------------------------------- echo


async def test_features_echoed_only_to_the_configured_roles(gw: Running) -> None:
    from creditrisk.inference.v1 import inference_service_pb2 as ipb

    async with gw.http_client("predict-key") as scorer, gw.http_client("reader-key") as reader:
        plain = (await scorer.post("/v1/predict", json={"applicant_id": 1})).json()
        full = (await reader.post("/v1/predict", json={"applicant_id": 1})).json()
        batch = (await scorer.post("/v1/predict:batch", json={"requests": [{"applicant_id": 1}]})).json()
    assert "features" not in plain
    assert full["features"]["credit_amount"] == 2000
    assert plain["probability_of_default"] == full["probability_of_default"]
    assert "features" not in batch["results"][0]["prediction"]

    for key, echoed in (("predict-key", False), ("reader-key", True)):
        channel = gw.grpc_channel(key)
        try:
            from creditrisk.inference.v1 import inference_service_pb2_grpc as igrpc

            reply = await igrpc.InferenceServiceStub(channel).Predict(ipb.PredictRequest(applicant_id=1))
            batch_reply = await igrpc.InferenceServiceStub(channel).PredictBatch(
                ipb.PredictBatchRequest(requests=[ipb.PredictRequest(applicant_id=1)])
            )
        finally:
            await channel.close()
        assert bool(reply.features) is echoed
        assert bool(batch_reply.results[0].prediction.features) is echoed


async def test_echo_roles_are_configurable(start_gateway: StartGateway) -> None:
    gw = await start_gateway(echo_features_roles=["predict"])
    async with gw.http_client("predict-key") as scorer:
        body = (await scorer.post("/v1/predict", json={"applicant_id": 1})).json()
    assert body["features"]["credit_amount"] == 2000


# ---------------------------------------------------------------- access log


async def test_access_log_names_who_which_applicants_method_outcome_never_values(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    from creditrisk.inference.v1 import inference_service_pb2 as ipb

    caplog.set_level(logging.INFO, logger="inference_gateway.access")
    async with gw.http_client("reader-key") as reader:
        assert (await reader.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
        assert (await reader.post("/v1/predict", json={"applicant_id": 999_999})).status_code == 404
        batch = {"requests": [{"applicant_id": 2}, {"applicant_id": 3}, {"applicant_id": "x"}]}
        assert (await reader.post("/v1/predict:batch", json=batch)).status_code == 200
    await gw.grpc.Predict(ipb.PredictRequest(applicant_id=3))
    records = [r for r in caplog.records if r.name == "inference_gateway.access"]
    seen = [(r.subject, r.method, r.applicant_ids, r.outcome) for r in records]  # type: ignore[attr-defined]
    assert seen == [
        ("analyst", "POST /v1/predict", [1], "OK"),
        ("analyst", "POST /v1/predict", [999_999], "NOT_FOUND"),
        ("analyst", "POST /v1/predict:batch", [2, 3], "INVALID_ARGUMENT=1,OK=2"),
        ("ops", "Predict", [3], "OK"),
    ]
    text = json.dumps([{**r.__dict__, "args": None, "msg": r.getMessage()} for r in records], default=str)
    for secret_or_value in ("reader-key", "admin-key", "credit_amount", "radio/tv", "features"):
        assert secret_or_value not in text


async def test_access_log_names_back_dated_times_and_overridden_features_never_their_values(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Attacker review (issue 18): a predict key can back-date an application and override stored
    features, which reach drift monitoring; the access record says so (names and times only)."""
    from creditrisk.inference.v1 import inference_service_pb2 as ipb
    from google.protobuf import timestamp_pb2

    caplog.set_level(logging.INFO, logger="inference_gateway.access")
    async with gw.http_client("reader-key") as reader:
        assert (await reader.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
        back_dated = {
            "applicant_id": 1,
            "event_time": "2025-05-01T00:00:00Z",
            "request_values": {"credit_amount": 18999},
        }
        assert (await reader.post("/v1/predict", json=back_dated)).status_code == 200
        batch = {"requests": [{"applicant_id": 2, "event_time": "2025-05-03T00:00:00Z"}, back_dated]}
        assert (await reader.post("/v1/predict:batch", json=batch)).status_code == 200
    when = timestamp_pb2.Timestamp(seconds=1_746_057_600)  # 2025-05-01T00:00:00Z
    await gw.grpc.Predict(ipb.PredictRequest(applicant_id=3, event_time=when))
    records = [r for r in caplog.records if r.name == "inference_gateway.access"]
    given = [
        (
            getattr(r, "caller_event_times", 0),
            getattr(r, "earliest_event_time", ""),
            getattr(r, "request_value_names", []),
        )
        for r in records
    ]
    assert given == [
        (0, "", []),
        (1, "2025-05-01T00:00:00+00:00", ["credit_amount"]),
        (2, "2025-05-01T00:00:00+00:00", ["credit_amount"]),
        (1, "2025-05-01T00:00:00+00:00", []),
    ]
    # caller text, before validation: bounded in the record
    from inference_gateway.access import MAX_LOGGED_NAMES, MAX_NAME_CHARS, caller_set
    from inference_gateway.core import PredictInput

    flood = caller_set([PredictInput(1, {f"{i:04d}" + "x" * 500: 1 for i in range(1000)})])
    assert len(flood["request_value_names"]) == MAX_LOGGED_NAMES  # type: ignore[arg-type]
    assert all(len(n) == MAX_NAME_CHARS for n in flood["request_value_names"])  # type: ignore[attr-defined]
    assert "18999" not in json.dumps(
        [{**r.__dict__, "args": None, "msg": r.getMessage()} for r in records], default=str
    )


# ---------------------------------------------------------------- the shared refusal check


async def test_shared_refusal_check_over_reflection_and_openapi(gw: Running) -> None:
    """creditrisk_testing.refusal: every method the running server registers (through its
    reflection) and every route of its OpenAPI document, three ways each."""
    grpc_report = await asyncio.to_thread(
        check_grpc_refusals, f"127.0.0.1:{gw.gateway.grpc_port}", GRPC_POLICY
    )
    grpc_report.assert_all_refused()
    assert {f"/{SERVICE_NAME}/{m.name}" for m in _served_methods()} <= set(grpc_report.methods)
    http_report = await asyncio.to_thread(
        check_http_refusals, f"http://127.0.0.1:{gw.gateway.http_port}/openapi.json", HTTP_POLICY
    )
    http_report.assert_all_refused()
    assert {"POST /v1/predict", "POST /v1/predict:batch", "GET /v1/models"} <= set(http_report.methods)
    assert grpc_report.counts() == {
        "no credential": (3, 3),
        "wrong credential": (3, 3),
        "lower role": (3, 3),
    }

"""creditrisk_testing.refusal against an in-process kit server: every method found through
reflection, refused three ways; a method without a role is reported; routes of an OpenAPI
document likewise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from creditrisk.feature.v1 import feature_service_pb2_grpc
from creditrisk_kit import ServiceRunner, ServiceSettings
from creditrisk_kit.auth import MethodPolicy, Role, service_methods
from creditrisk_testing.refusal import REFUSAL_API_KEYS, check_grpc_refusals, check_http_refusals

SERVICE = "creditrisk.feature.v1.FeatureStoreService"


def _policy(skip: str = "") -> MethodPolicy:
    roles = [Role.READ_FEATURES, Role.WRITE_FEATURES, Role.ADMIN]
    return MethodPolicy(
        {
            name: roles[i % 3]
            for i, name in enumerate(service_methods(SERVICE))
            if not name.endswith(f"/{skip}")
        }
    )


@pytest.fixture
async def server() -> AsyncIterator[ServiceRunner]:
    settings = ServiceSettings(host="127.0.0.1", port=0, auth_api_keys=json.dumps(REFUSAL_API_KEYS))
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE],
        register=lambda server: feature_service_pb2_grpc.add_FeatureStoreServiceServicer_to_server(
            feature_service_pb2_grpc.FeatureStoreServiceServicer(), server
        ),
        auth=_policy(),
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def test_every_method_refused_three_ways(server: ServiceRunner) -> None:
    report = await asyncio.to_thread(check_grpc_refusals, f"127.0.0.1:{server.port}", _policy())
    report.assert_all_refused()
    feature_methods = [m for m in report.methods if m.startswith(f"/{SERVICE}/")]
    assert len(feature_methods) == len(service_methods(SERVICE))
    assert report.counts() == {attempt: (len(feature_methods),) * 2 for attempt in report.counts()}
    assert {m.split("/")[1] for m in report.public} == {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_a_method_missing_from_the_policy_fails(server: ServiceRunner) -> None:
    report = await asyncio.to_thread(check_grpc_refusals, f"127.0.0.1:{server.port}", _policy(skip="Push"))
    assert report.missing_policy == [f"/{SERVICE}/Push"]
    with pytest.raises(AssertionError, match="Push: no role in the policy"):
        report.assert_all_refused()


async def test_a_method_not_refused_is_reported(server: ServiceRunner) -> None:
    # the checker believes Push needs write_features, the server asks for admin (or the other way)
    wrong = MethodPolicy({**dict(_policy()), f"/{SERVICE}/Push": Role.PREDICT})
    report = await asyncio.to_thread(check_grpc_refusals, f"127.0.0.1:{server.port}", wrong)
    problems = report.failures()
    assert any("Push with lower role: got INTERNAL, wanted PERMISSION_DENIED" in line for line in problems), (
        problems
    )


def test_http_routes_refused_three_ways() -> None:
    import uvicorn
    from creditrisk_kit.auth import ApiKeys, Authenticator, parse_api_keys
    from creditrisk_kit.auth.http import AuthMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({})

    paths = {"/v1/predict": {"post": {}}, "/v1/models/{name}": {"get": {}}, "/healthz": {"get": {}}}

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse({"openapi": "3.1.0", "paths": paths})

    app = Starlette(
        routes=[
            Route("/v1/predict", ok, methods=["POST"]),
            Route("/v1/models/{name}", ok, methods=["GET"]),
            Route("/healthz", ok),
            Route("/openapi.json", openapi),
        ]
    )
    policy = {"POST /v1/predict": Role.PREDICT, "/v1/models/{name}": Role.READ_REGISTRY}
    keys = ApiKeys(parse_api_keys(json.dumps(REFUSAL_API_KEYS), "keys"))
    app.add_middleware(AuthMiddleware, authenticator=Authenticator(keys), policy=policy)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))

    async def run() -> Any:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            return await asyncio.to_thread(
                check_http_refusals, f"http://127.0.0.1:{port}/openapi.json", policy
            )
        finally:
            server.should_exit = True
            await task

    report = asyncio.run(run())
    report.assert_all_refused()
    assert report.counts() == {"no credential": (2, 2), "wrong credential": (2, 2), "lower role": (2, 2)}
    assert "GET /healthz" in report.public

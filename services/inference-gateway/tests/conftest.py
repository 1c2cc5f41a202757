"""Fixtures: the fake backends and a gateway started in-process on free ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from creditrisk.inference.v1 import inference_service_pb2_grpc as igrpc
from creditrisk_kit import aio_channel
from creditrisk_kit.auth import bearer_interceptors
from creditrisk_telemetry import configure_telemetry
from creditrisk_testing.refusal import REFUSAL_API_KEYS
from fakes import TOKEN, FakeDrift, FakeFeatureStore, FakeModelServer, FakeRegistry
from inference_gateway.service import Gateway
from inference_gateway.settings import GatewaySettings

configure_telemetry("inference-gateway-tests")  # a real TracerProvider: real trace ids

# API keys of the in-process gateway: key -> (subject, roles).
KEYS = {
    "admin-key": ("ops", ["admin"]),
    "predict-key": ("scorer", ["predict"]),
    "reader-key": ("analyst", ["predict", "read_features"]),
    "registry-key": ("viewer", ["read_registry"]),
    "monitor-key": ("prometheus", ["read_monitoring"]),
}
ADMIN_KEY = "admin-key"
API_KEYS = json.dumps(
    {key: {"subject": subject, "roles": roles} for key, (subject, roles) in KEYS.items()}
    | REFUSAL_API_KEYS  # creditrisk_testing.refusal's lower-role keys
)

# Applicants known to the fake feature store.
ROWS = {
    1: {"duration_in_month": 12, "credit_amount": 2000, "age": 35, "purpose": "car"},
    2: {"duration_in_month": 48, "credit_amount": 15000, "age": None, "purpose": "business"},
    3: {"duration_in_month": 24, "credit_amount": 6000, "age": 51, "purpose": "radio/tv"},
}


class Stack:
    """The fake backends of one test."""

    def __init__(self) -> None:
        self.features = FakeFeatureStore()
        self.registry = FakeRegistry()
        self.drift = FakeDrift()
        thresholds = {v: s.threshold for v, s in self.registry.versions.items()}
        self.champion = FakeModelServer(1, thresholds)
        self.challenger = FakeModelServer(2, thresholds)
        self.features.rows.update({k: dict(v) for k, v in ROWS.items()})
        self.features.rows.update(
            {
                i: {
                    "duration_in_month": 6 + i % 60,
                    "credit_amount": 500 + 37 * i,
                    "age": 20 + i % 50,
                    "purpose": "car",
                }
                for i in range(100, 3100)
            }
        )

    async def start(self) -> None:
        for part in (self.features, self.registry, self.drift, self.champion, self.challenger):
            await part.start()

    async def stop(self) -> None:
        for part in (self.champion, self.challenger, self.features, self.registry, self.drift):
            await part.stop()

    def settings(self, tmp_path: Path, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "feature_service_target": f"127.0.0.1:{self.features.port}",
            "registry_target": f"127.0.0.1:{self.registry.port}",
            "registry_token": TOKEN,
            "drift_service_target": f"127.0.0.1:{self.drift.port}",
            "champion_url": self.champion.url,
            "challenger_url": self.challenger.url,
            "feature_deadline_s": 0.5,
            "model_deadline_s": 0.5,
            "health_check_interval_s": 0.25,
            "slot_probe_interval_s": 0.05,
            "log_flush_interval_s": 0.05,
            "log_retry_interval_s": 0.1,
            "log_send_timeout_s": 0.5,
            "buffer_path": tmp_path / "buffer.sqlite3",
            "grace_period_s": 1.0,
            "max_batch_size": 50,
            "max_message_bytes": 256 * 1024,
            "auth_api_keys": API_KEYS,
            "credential": "gateway-own-credential",
        }
        values.update(overrides)
        return GatewaySettings(**values)


class Running:
    """A started gateway with clients for both transports."""

    def __init__(self, gateway: Gateway, key: str = ADMIN_KEY) -> None:
        self.gateway = gateway
        self.core = gateway.core
        self.http = self.http_client(key)
        self.channel = self.grpc_channel(key)
        self.grpc = igrpc.InferenceServiceStub(self.channel)

    def http_client(self, key: str | None) -> httpx.AsyncClient:
        """A REST client sending ``key`` (None: no credential); the caller closes it."""
        headers = {"authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.gateway.http_port}", timeout=10, headers=headers
        )

    def grpc_channel(self, key: str | None) -> Any:
        """A gRPC channel sending ``key`` (None: no credential); the caller closes it."""
        return aio_channel(
            f"127.0.0.1:{self.gateway.grpc_port}",
            max_message_bytes=1024 * 1024,
            interceptors=bearer_interceptors(key) if key is not None else (),
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.channel.close()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = Stack()
    await s.start()
    yield s
    await s.stop()


StartGateway = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_gateway(stack: Stack, tmp_path: Path) -> AsyncIterator[StartGateway]:
    started: list[Running] = []

    async def start(*, wait: bool = True, **overrides: Any) -> Running:
        """A gateway on ``stack`` with ``overrides`` of its settings; with ``wait``, once its
        champion slot is ready."""
        gateway = Gateway(stack.settings(tmp_path, **overrides))
        await gateway.start()
        running = Running(gateway)
        started.append(running)
        if wait:
            await wait_for(lambda: gateway.core.champion_ready())
        return running

    yield start
    for running in started:
        await running.close()
        await running.gateway.stop()


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Running:
    return await start_gateway()

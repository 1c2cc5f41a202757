"""Session fixtures: real ``mlflow server`` processes (embedded: SQLite; real: PostgreSQL), runs
made by the training-service's own code in its environment, a contract-level fake feature-service,
and the gateway in process (``ServiceRunner`` on port 0) per profile, with a generated stub."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from creditrisk.registry.v1 import registry_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, ServiceSettings, aio_channel, wait_until_serving
from creditrisk_testing.feature_store import FakeFeatureStoreService
from creditrisk_testing.feature_store import register as register_fake
from creditrisk_testing.mlflow import (
    MlflowServer,
    acting_as,
    create_postgres_database,
    drop_postgres_database,
    start_mlflow_server,
)
from registry_gateway.app import build
from registry_gateway.core import RegistryCore
from registry_gateway.settings import Settings, TokenEntry

HERE = Path(__file__).resolve().parent
SERVICE_DIR = HERE.parent
TRAINING_PYTHON = SERVICE_DIR.parent / "training-service" / ".venv" / "bin" / "python"
TOKENS = {
    "viewer-token": TokenEntry(subject="dashboard", role="viewer"),
    "promoter-token": TokenEntry(subject="pipeline", role="promoter"),
    "admin-token": TokenEntry(subject="alice", role="admin"),
}
VIEWER = (("authorization", "Bearer viewer-token"),)
PROMOTER = (("authorization", "Bearer promoter-token"),)
ADMIN = (("authorization", "Bearer admin-token"),)
PROFILES = ("embedded", "real")


@dataclass
class Stack:
    """One profile's MLflow server, its fixture runs and the gateway."""

    profile: str
    mlflow_url: str
    runs: dict[str, str]
    stub: Any = None
    core: RegistryCore | None = None
    runner: ServiceRunner | None = None
    settings: Settings | None = None


@pytest.fixture(scope="session")
def mlflow_stacks(postgres_dsn: str) -> Iterator[dict[str, Stack]]:
    """Both profiles' MLflow servers (basic-auth on), started together; the fixture runs made once
    for both. The session acts as MLflow's ``writer`` (the gateway in process and ``make_runs.py``)."""
    root = Path(tempfile.mkdtemp(prefix="rg-tests-"))
    servers: dict[str, MlflowServer] = {}
    databases: list[str] = []
    with acting_as("writer"):
        try:
            for profile in PROFILES:
                (root / profile).mkdir()
                backend = None
                if profile == "real":
                    backend, database = create_postgres_database(postgres_dsn, "mlflow_rg")
                    databases.append(database)
                servers[profile] = start_mlflow_server(root / profile, backend_uri=backend)
            for server in servers.values():
                server.wait_healthy()
            result = subprocess.run(
                [str(TRAINING_PYTHON), str(HERE / "make_runs.py"), *(s.url for s in servers.values())],
                capture_output=True,
                text=True,
                timeout=600,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            if result.returncode != 0:
                raise RuntimeError(f"make_runs failed:\n{result.stderr[-4000:]}")
            runs = json.loads(result.stdout.strip().splitlines()[-1])
            yield {p: Stack(p, s.url, runs[s.url]) for p, s in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
            for database in databases:
                drop_postgres_database(postgres_dsn, database)


@pytest.fixture(scope="session", autouse=True)
def telemetry() -> Iterator[None]:
    """A real tracer provider (no exporter): audit records carry real trace ids."""
    from creditrisk_telemetry import configure_telemetry

    handle = configure_telemetry("registry-gateway-tests")
    yield
    handle.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def feature_service() -> AsyncIterator[tuple[FakeFeatureStoreService, str]]:
    """The fake feature-service in process."""
    fake = FakeFeatureStoreService()
    runner = ServiceRunner(
        ServiceSettings(host="127.0.0.1", port=0),
        service_names=["creditrisk.feature.v1.FeatureStoreService"],
        register=register_fake(fake),
        instrument=False,
    )
    port = await runner.start()
    yield fake, f"127.0.0.1:{port}"
    await runner.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=PROFILES)
async def stack(
    request: pytest.FixtureRequest, mlflow_stacks: dict[str, Stack], feature_service: Any, postgres_dsn: str
) -> AsyncIterator[Stack]:
    """The gateway in process on one profile (audit store: SQLite file / PostgreSQL schema)."""
    profile = request.param
    current = mlflow_stacks[profile]
    tmp = Path(tempfile.mkdtemp(prefix=f"rg-{profile}-"))
    schema = None
    if profile == "embedded":
        audit_url = f"sqlite:///{tmp / 'audit.db'}"
    else:
        base = postgres_dsn.split("://", 1)[1]
        audit_url = f"postgresql+psycopg://{base}"
        schema = f"rg_audit_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        host="127.0.0.1",
        port=0,
        mlflow_tracking_uri=current.mlflow_url,
        feature_service_address=feature_service[1],
        tokens=TOKENS,
        audit_db_url=audit_url,
        audit_db_schema=schema,
        cache_dir=str(tmp / "cache"),
        health_check_interval_s=1.0,
        watch_poll_interval_s=0.5,
        signing_key_file=str(tmp / "signing" / "key.pem"),
        signing_key_create=True,
        signing_public_key_file=str(tmp / "signing" / "trusted.pem"),
    )
    service, core = build(settings)
    runner = service.runner(settings)
    port = await runner.start()
    channel = aio_channel(f"127.0.0.1:{port}", default_timeout_s=120)
    await wait_until_serving(channel, timeout_s=60)
    current.stub = pb_grpc.ModelRegistryServiceStub(channel)
    current.core, current.runner, current.settings = core, runner, settings
    yield current
    await channel.close()
    await runner.stop()
    if schema:
        from registry_gateway.audit import AuditStore

        AuditStore(audit_url, schema).drop_schema()


def unique(prefix: str) -> str:
    """A fresh registered model name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code(exc: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """The status code of a failed call."""
    return exc.code()

"""``python -m drift_service``'s build on the kit's service entry: the report server serves from
the gRPC server's start to after its drain, and the store is closed by the shutdown hook; the gRPC
API and the reports share one authenticator (the ``DRIFT_SERVICE_AUTH_*`` settings), and without a
credential source the service exits 2 naming them."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk.drift.v1 import drift_service_pb2_grpc as pb_grpc
from creditrisk_kit import aio_channel, wait_until_serving
from creditrisk_kit.auth import AuthConfigurationError, bearer_interceptors
from creditrisk_testing import entrypoints as ep
from drift_service.__main__ import SPEC, build
from drift_service.servicer import SERVICE_NAME
from drift_service.settings import DriftServiceSettings
from pydantic import SecretStr

READER = "reader-key"
KEYS = {READER: {"subject": "monitoring-reader", "roles": ["read_monitoring"]}}


def status_of(url: str, key: str | None = READER) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_build_serves_reports_while_running_and_stops_them_after_the_drain(
    settings: DriftServiceSettings,
) -> None:
    assert SPEC.name == "drift-service"
    assert SPEC.settings is DriftServiceSettings
    settings = settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "grace_period_s": 1.0,
            "auth_api_keys": SecretStr(json.dumps(KEYS)),
        }
    )
    service = await build(settings)
    assert list(service.service_names) == [SERVICE_NAME]
    assert list(service.readiness_checks) == ["event store"]
    runner = service.runner(settings)
    port = await runner.start()
    base_url = service.http_server.base_url  # type: ignore[union-attr]
    channel = aio_channel(f"127.0.0.1:{port}", retry=None)
    try:
        await wait_until_serving(channel, timeout_s=30)
        (settings.reports_dir / "r1.html").write_text("<!DOCTYPE html><p>report</p>")
        assert await asyncio.to_thread(status_of, f"{base_url}/reports/r1.html") == 200
        assert await asyncio.to_thread(status_of, f"{base_url}/reports/none.html") == 404
        # one authenticator for both: the reports refuse strangers, the gRPC API too
        assert await asyncio.to_thread(status_of, f"{base_url}/reports/r1.html", None) == 401
        request = pb.ListDriftReportsRequest(model_name="credit-risk")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.DriftServiceStub(channel).ListDriftReports(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with aio_channel(
            f"127.0.0.1:{port}", retry=None, interceptors=bearer_interceptors(READER)
        ) as reader:
            listed = await pb_grpc.DriftServiceStub(reader).ListDriftReports(request, timeout=10)
        assert list(listed.reports) == []
    finally:
        await channel.close()
        await runner.stop()
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(status_of, f"{base_url}/reports/r1.html")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"database_url": "not a url"}, "DRIFT_SERVICE_DATABASE_URL: not a SQLAlchemy URL"),
        ({"database_url": "mysql://u:secret@h/db"}, "DRIFT_SERVICE_DATABASE_URL: unsupported database"),
        (
            {"profile": "real", "postgres_dsn": "mysql://u:secret@h/db"},
            "DRIFT_SERVICE_POSTGRES_DSN: unsupported database",
        ),
    ],
)
def test_a_bad_store_url_is_a_configuration_error(variables: dict[str, str], message: str) -> None:
    # was a traceback (exit 1) at start instead of exit 2 naming the variable; the URL is not shown
    with pytest.raises(ValueError, match=message) as refused:
        DriftServiceSettings(**variables)  # type: ignore[arg-type]
    assert all("secret" not in error["msg"] for error in refused.value.errors())  # type: ignore[attr-defined]


async def test_build_refuses_to_start_without_a_credential_source(settings: DriftServiceSettings) -> None:
    with pytest.raises(AuthConfigurationError, match="DRIFT_SERVICE_AUTH_API_KEYS_FILE"):
        await build(settings)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_no_credential_source_exits_2_naming_the_settings(tmp_path: Path) -> None:
    ep.assert_no_credential_source_exits_2(
        "drift_service",
        "DRIFT_SERVICE_",
        profile="embedded",
        data_dir=str(tmp_path / "drift"),
        warm_up="false",
        report_http_port="0",
    )

"""``python -m drift_service``'s build on the kit's service entry: the report server serves from
the gRPC server's start to after its drain, and the store is closed by the shutdown hook."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from creditrisk_kit import aio_channel, wait_until_serving
from drift_service.__main__ import SPEC, build
from drift_service.servicer import SERVICE_NAME
from drift_service.settings import DriftServiceSettings


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_build_serves_reports_while_running_and_stops_them_after_the_drain(
    settings: DriftServiceSettings,
) -> None:
    assert SPEC.name == "drift-service"
    assert SPEC.settings is DriftServiceSettings
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": 0, "grace_period_s": 1.0})
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

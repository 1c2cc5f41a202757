"""The drift-service closed to strangers, in process: every RPC found through reflection refused
without a credential, with a wrong one and with every role but its own (the kit's interceptor
refuses before the servicer runs); the HTML reports need ``read_monitoring`` (401 / 403 as the
kit's HTTP refusals); reads of reports are in the access log, subject and report id, no content."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from email.message import Message
from pathlib import Path

import grpc
import pytest
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk.drift.v1 import drift_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, aio_channel
from creditrisk_kit.auth import Authenticator, Role, bearer_interceptors, service_methods
from creditrisk_testing.refusal import (
    REFUSAL_API_KEYS,
    WRONG_CREDENTIAL,
    check_servicer_refusals,
    lower_role_key,
)
from drift_service.core import DriftCore
from drift_service.reports_http import ReportServer
from drift_service.servicer import POLICY, SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings
from pydantic import SecretStr

READER = "monitoring-reader-key"
KEYS = {READER: {"subject": "monitoring-reader", "roles": ["read_monitoring"]}, **REFUSAL_API_KEYS}
CONTENT = "<!DOCTYPE html><p>applicant-derived 4711</p>"


def test_policy_covers_the_contract_writes_apart() -> None:
    POLICY.check_covers([SERVICE_NAME])
    assert len(POLICY) == len(service_methods(SERVICE_NAME)) == 8
    short = {name.rsplit("/", 1)[1]: role for name, role in POLICY.items()}
    assert short.pop("LogPredictions") == Role.LOG_PREDICTIONS
    assert short.pop("LogGroundTruth") == Role.WRITE_LABELS
    assert set(short.values()) == {Role.READ_MONITORING}  # ComputeDrift and every read


def keyed(settings: DriftServiceSettings) -> DriftServiceSettings:
    return settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "grace_period_s": 1.0,
            "auth_api_keys": SecretStr(json.dumps(KEYS)),
        }
    )


async def test_every_method_refused_three_ways(settings: DriftServiceSettings) -> None:
    servicer = DriftServiceServicer.__new__(DriftServiceServicer)  # never reached: refused before
    report = await check_servicer_refusals(
        keyed(settings),
        [SERVICE_NAME],
        lambda server: pb_grpc.add_DriftServiceServicer_to_server(servicer, server),
        POLICY,
    )
    print(f"drift-service (in process): {report.summary()}")
    report.assert_all_refused()
    assert report.counts() == {
        attempt: (8, 8) for attempt in ("no credential", "wrong credential", "lower role")
    }


@pytest.fixture
async def served_core(settings: DriftServiceSettings) -> AsyncIterator[tuple[ServiceRunner, DriftCore]]:
    settings = keyed(settings)
    core = DriftCore(settings, report_base_url="http://reports.test")
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: pb_grpc.add_DriftServiceServicer_to_server(
            DriftServiceServicer(core), server
        ),
        auth=POLICY,
        instrument=False,
    )
    await runner.start()
    try:
        yield runner, core
    finally:
        await runner.stop()
        core.close()


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "drift_service.access"]


async def test_report_reads_over_grpc_are_in_the_access_log(
    served_core: tuple[ServiceRunner, DriftCore], caplog: pytest.LogCaptureFixture
) -> None:
    runner, _ = served_core
    caplog.set_level(logging.INFO, logger="drift_service.access")
    async with aio_channel(
        f"127.0.0.1:{runner.port}", retry=None, instrument=False, interceptors=bearer_interceptors(READER)
    ) as channel:
        stub = pb_grpc.DriftServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetDriftReport(pb.GetDriftReportRequest(report_id="r-404"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        await stub.ListDriftReports(pb.ListDriftReportsRequest(model_name="credit-risk"), timeout=10)
    (got, listed) = access_records(caplog)
    assert (got.subject, got.method, got.report_ids, got.outcome) == (  # type: ignore[attr-defined]
        "monitoring-reader",
        "GetDriftReport",
        ["r-404"],
        "NOT_FOUND",
    )
    assert (listed.subject, listed.method, listed.report_ids) == (  # type: ignore[attr-defined]
        "monitoring-reader",
        "ListDriftReports",
        [],
    )


def fetch(url: str, key: str | None) -> tuple[int, Message, bytes]:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return int(response.status), response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.headers, exc.read()


@pytest.fixture
def reports(tmp_path: Path, settings: DriftServiceSettings) -> AsyncIterator[str]:
    directory = tmp_path / "reports"
    server = ReportServer(
        directory, "127.0.0.1", 0, authenticator=Authenticator.from_settings(keyed(settings))
    )
    server.start()
    (directory / "r1.html").write_text(CONTENT)
    try:
        yield server.base_url
    finally:
        server.stop()


def test_reports_need_read_monitoring(reports: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drift_service.access")
    url = f"{reports}/reports/r1.html"
    status, headers, body = fetch(url, None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["status"] == "UNAUTHENTICATED"
    assert "missing credential" in json.loads(body)["error"]["message"]
    status, _, body = fetch(url, WRONG_CREDENTIAL)
    assert (status, json.loads(body)["error"]["message"]) == (401, "unknown API key")
    assert WRONG_CREDENTIAL.encode() not in body
    status, _, body = fetch(url, lower_role_key(Role.READ_MONITORING))  # every role but this one
    message = json.loads(body)["error"]["message"]
    assert status == 403
    assert "read_monitoring" in message
    assert "refusal-test-without-read_monitoring" in message
    assert fetch(url, "not even a key at all")[0] == 401
    # unknown reports: a stranger cannot tell them from existing ones
    assert fetch(f"{reports}/reports/r-none.html", None)[0] == 401
    assert not access_records(caplog)  # refusals read nothing
    status, headers, body = fetch(url, READER)
    assert (status, body.decode()) == (200, CONTENT)
    assert headers["Content-Type"].startswith("text/html")
    assert fetch(f"{reports}/reports/r-none.html", READER)[0] == 404
    assert fetch(f"{reports}/other", READER)[0] == 404
    read, missing = access_records(caplog)
    assert (read.subject, read.via, read.report_ids, read.outcome) == (  # type: ignore[attr-defined]
        "monitoring-reader",
        "api_key",
        ["r1"],
        "OK",
    )
    assert (missing.report_ids, missing.outcome) == (["r-none"], "NOT_FOUND")  # type: ignore[attr-defined]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "4711" not in logged
    assert READER not in logged

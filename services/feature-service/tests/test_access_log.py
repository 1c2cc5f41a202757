"""The access log of feature reads (issue 18): a read by a known key leaves one
``feature_service.access`` record naming its subject, the method, the selection and the entity
keys, and no feature value; a refused read leaves the kit's refusal record; a large batch logs the
first 100 keys and the total."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import grpc
import pandas as pd
import pyarrow as pa
import pytest
from conftest import GERMAN_CSV
from creditrisk.common.v1 import values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, aio_channel
from creditrisk_kit.access_log import MAX_LOGGED_IDS
from feature_service.core import FeatureStoreCore
from feature_service.servicer import POLICY, SERVICE_NAME, FeatureStoreServiceServicer
from grpc_helpers import historical, requests
from pydantic import SecretStr

pytestmark = pytest.mark.timeout(300)

READER_KEY = "access-log-reader-key"
WRITER_KEY = "access-log-writer-key"
KEYS = {
    READER_KEY: {"subject": "risk-analyst", "roles": ["read_features"]},
    WRITER_KEY: {"subject": "feature-pusher", "roles": ["write_features"]},
}


@asynccontextmanager
async def authed(core: FeatureStoreCore, key: str) -> AsyncIterator[pb_grpc.FeatureStoreServiceStub]:
    """The core served with the kit's auth (``KEYS``) and a stub sending ``key``."""
    settings = core.settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "grace_period_s": 1.0,
            "auth_disabled": False,
            "auth_api_keys": SecretStr(json.dumps(KEYS)),
        }
    )
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: pb_grpc.add_FeatureStoreServiceServicer_to_server(
            FeatureStoreServiceServicer(core, settings), server
        ),
        auth=POLICY,
        instrument=False,
        reflection=False,
    )
    await runner.start()
    channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=60, instrument=False, retry=None)
    try:
        yield _Authed(pb_grpc.FeatureStoreServiceStub(channel), key)
    finally:
        await channel.close()
        await runner.stop()


class _Authed:
    """A stub whose every call carries ``authorization: Bearer <key>``."""

    def __init__(self, stub: pb_grpc.FeatureStoreServiceStub, key: str) -> None:
        self._stub, self._metadata = stub, (("authorization", f"Bearer {key}"),)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)


def _online(*ids: int) -> pb.GetOnlineFeaturesRequest:
    rows = [pb.EntityRow(join_keys={"applicant_id": values_pb2.FeatureValue(int64_value=i)}) for i in ids]
    return pb.GetOnlineFeaturesRequest(entity_rows=rows, feature_service="credit_risk_v1")


def _records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


#: The fields of an access record (besides a LogRecord's own): identifiers and counts only.
RECORD_FIELDS = {
    "subject", "via", "method", "entity_keys", "entity_keys_count", "outcome",
    "feature_service", "feature_refs", "row_count",
}  # fmt: skip
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _no_value_in(record: logging.LogRecord, values: list[object]) -> None:
    """The record carries only :data:`RECORD_FIELDS`, and none of ``values`` in them or its text."""
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    assert set(fields) == RECORD_FIELDS
    text = record.getMessage() + " " + json.dumps(fields, default=str)
    for value in values:
        assert f'"{value}"' not in text, f"a feature value {value!r} is logged"
        assert f" {value}," not in text, f"a feature value {value!r} is logged"


async def test_online_read_is_recorded_with_subject_and_ids_and_no_value(
    german: FeatureStoreCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feature_service.access")
    async with authed(german, READER_KEY) as stub:
        response = await stub.GetOnlineFeatures(_online(1, 3))
    assert len(response.rows) == 2
    (record,) = _records(caplog, "feature_service.access")
    assert record.subject == "risk-analyst"  # type: ignore[attr-defined]
    assert record.method == "GetOnlineFeatures"  # type: ignore[attr-defined]
    assert record.feature_service == "credit_risk_v1"  # type: ignore[attr-defined]
    assert record.entity_keys == [1, 3]  # type: ignore[attr-defined]
    assert record.entity_keys_count == 2  # type: ignore[attr-defined]
    assert record.row_count == 2  # type: ignore[attr-defined]
    assert record.outcome == "OK"  # type: ignore[attr-defined]
    csv = pd.read_csv(GERMAN_CSV, nrows=3)
    _no_value_in(record, [csv.loc[0, "purpose"], csv.loc[0, "credit_amount"], csv.loc[2, "credit_amount"]])


async def test_a_large_batch_logs_the_first_keys_and_the_total(
    german: FeatureStoreCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feature_service.access")
    ids = list(range(1, 151))
    async with authed(german, READER_KEY) as stub:
        await stub.GetOnlineFeatures(_online(*ids))
    (record,) = _records(caplog, "feature_service.access")
    assert record.entity_keys == ids[:MAX_LOGGED_IDS]  # type: ignore[attr-defined]
    assert record.entity_keys_count == 150  # type: ignore[attr-defined]


async def test_a_failed_read_is_recorded_with_its_status(
    german: FeatureStoreCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feature_service.access")
    request = _online(7)
    request.feature_service = "no_such_service"
    async with authed(german, READER_KEY) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetOnlineFeatures(request)
    (record,) = _records(caplog, "feature_service.access")
    assert info.value.code() != grpc.StatusCode.OK
    assert record.outcome == info.value.code().name  # type: ignore[attr-defined]
    assert record.entity_keys == [7]  # type: ignore[attr-defined]
    assert record.row_count == 0  # type: ignore[attr-defined]


async def test_historical_read_is_recorded_with_the_join_keys_only(
    german: FeatureStoreCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feature_service.access")
    when = datetime(2025, 1, 1, tzinfo=UTC)
    entity = pa.table(
        {
            "applicant_id": pa.array([2, 5], pa.int64()),
            "event_timestamp": pa.array([when, when], pa.timestamp("us", tz="UTC")),
        }
    )
    query = pb.HistoricalFeaturesQuery(feature_service="credit_risk_v1")
    async with authed(german, READER_KEY) as stub:
        result = await historical(stub, requests(query, entity))
    assert result.table.num_rows == 2
    (record,) = _records(caplog, "feature_service.access")
    assert record.subject == "risk-analyst"  # type: ignore[attr-defined]
    assert record.method == "GetHistoricalFeatures"  # type: ignore[attr-defined]
    assert record.entity_keys == [2, 5]  # type: ignore[attr-defined]
    assert record.row_count == 2  # type: ignore[attr-defined]
    assert record.outcome == "OK"  # type: ignore[attr-defined]
    csv = pd.read_csv(GERMAN_CSV, nrows=5)
    _no_value_in(record, [csv.loc[1, "purpose"], csv.loc[4, "purpose"]])


async def test_a_refused_read_leaves_the_kits_refusal_record(
    german: FeatureStoreCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with authed(german, WRITER_KEY) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetOnlineFeatures(_online(1))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _records(caplog, "feature_service.access") == []  # the servicer never ran
    (refusal,) = _records(caplog, "creditrisk_kit.auth.refusals")
    assert refusal.subject == "feature-pusher"  # type: ignore[attr-defined]
    assert refusal.method.endswith("/GetOnlineFeatures")  # type: ignore[attr-defined]
    assert refusal.outcome == "PERMISSION_DENIED"  # type: ignore[attr-defined]
    assert WRITER_KEY not in refusal.getMessage()

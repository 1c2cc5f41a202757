"""FeatureServiceClient against in-process feature-services on port 0.

The contract-level test double of creditrisk_testing (German credit, labelled entities) for the
definitions and the historical stream; a small servicer of its own here for online reads, push,
slow answers and broken streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pandas as pd
import pyarrow as pa
import pytest
from creditrisk.common.v1 import arrow_pb2, time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk_clients import (
    DownstreamErrors,
    FeatureServiceClient,
    dependency_status,
    entity_row,
    invalid_argument,
    not_found,
)
from creditrisk_clients.historical import reassemble
from creditrisk_kit import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from creditrisk_kit.arrow import encode_chunks
from creditrisk_testing.feature_store import (
    FAIRNESS_SERVICE,
    LABEL_VIEW,
    MODEL_SERVICE,
    FakeFeatureStoreService,
    register,
)
from creditrisk_testing.german_credit import german_credit_frame
from google.protobuf import timestamp_pb2

START = datetime(2023, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 1, tzinfo=UTC)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


FEATURE_STORE = "creditrisk.feature.v1.FeatureStoreService"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return german_credit_frame(seed=42)


@pytest.fixture
async def fake(
    frame: pd.DataFrame, serve: Any
) -> AsyncIterator[tuple[FakeFeatureStoreService, FeatureServiceClient]]:
    service = FakeFeatureStoreService(frame, max_chunk_rows=50)
    client = FeatureServiceClient.connect(f"127.0.0.1:{await serve(FEATURE_STORE, register(service))}")
    yield service, client
    await client.close()


def _query(service: str = MODEL_SERVICE, version: str = "", **kwargs: Any) -> fpb.HistoricalFeaturesQuery:
    return fpb.HistoricalFeaturesQuery(
        feature_service=service,
        feature_service_version=version,
        labelled_entities=fpb.LabelledEntities(
            label_view=kwargs.get("label_view", LABEL_VIEW),
            application_time_range=time_range_pb2.TimeRange(
                start=_ts(kwargs.get("start", START)), end=_ts(kwargs.get("end", END))
            ),
        ),
    )


async def test_feature_service_definition_and_health(fake: Any) -> None:
    _, client = fake
    assert await client.serving()
    definition = await client.get_feature_service(MODEL_SERVICE)
    assert definition.name == MODEL_SERVICE
    assert definition.version == "1"
    assert definition.features["credit_amount"] == values_pb2.VALUE_TYPE_INT64
    assert definition.features["monthly_installment"] == values_pb2.VALUE_TYPE_DOUBLE
    assert definition.features["purpose"] == values_pb2.VALUE_TYPE_STRING
    assert "personal_status_and_sex" not in definition.features  # the fairness service's
    assert definition.request_values == {}
    view = await client.get_feature_view(LABEL_VIEW)
    assert view.name == LABEL_VIEW


async def test_unknown_names_map_as_the_caller_says(fake: Any) -> None:
    _, client = fake
    with pytest.raises(grpc.aio.AioRpcError) as raw:  # no handler: the dependency's error itself
        await client.get_feature_service("nope")
    assert raw.value.code() is grpc.StatusCode.NOT_FOUND
    errors = DownstreamErrors("the feature-service", on={grpc.StatusCode.NOT_FOUND: not_found("fs", "nope")})
    with pytest.raises(NotFound) as mapped:
        await client.get_feature_service("nope", errors=errors)
    assert (mapped.value.kind, mapped.value.name) == ("fs", "nope")
    with pytest.raises(NotFound):
        await client.get_feature_view("no_view", errors=errors)


async def test_historical_stream_reassembled_once_and_typed(fake: Any, frame: pd.DataFrame) -> None:
    service, client = fake
    result = await client.historical_features(_query())
    expected = frame[(frame["event_timestamp"] >= START) & (frame["event_timestamp"] < END)]
    assert result.table.num_rows == len(expected) == result.summary.row_count
    assert result.summary.chunk_count > 1  # several chunks of at most 50 rows, put back together
    schema = result.table.schema
    assert schema.field("credit_amount").type == pa.int64()
    assert schema.field("monthly_installment").type == pa.float64()
    assert schema.field("purpose").type == pa.string()
    got = result.to_pandas().sort_values("applicant_id").reset_index(drop=True)
    want = expected.sort_values("applicant_id").reset_index(drop=True)
    assert got["applicant_id"].tolist() == want["applicant_id"].tolist()
    assert got["credit_amount"].tolist() == want["credit_amount"].astype("int64").tolist()
    assert got["purpose"].tolist() == want["purpose"].tolist()
    assert [q.feature_service for q in service.queries] == [MODEL_SERVICE]


async def test_historical_empty_range_has_the_headers_columns(fake: Any) -> None:
    _, client = fake
    result = await client.historical_features(
        _query(FAIRNESS_SERVICE, start=datetime(2030, 1, 1, tzinfo=UTC), end=datetime(2031, 1, 1, tzinfo=UTC))
    )
    assert result.table.num_rows == 0
    assert result.table.column_names[:2] == ["applicant_id", "event_timestamp"]
    assert [f.name for f in result.header.features] == ["personal_status_and_sex", "foreign_worker"]


async def test_historical_errors(fake: Any) -> None:
    service, client = fake
    with pytest.raises(grpc.aio.AioRpcError) as mismatch:
        await client.historical_features(_query(version="7"))
    assert mismatch.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    # Entity rows are sent as Arrow chunks after the query; this double refuses them with
    # INVALID_ARGUMENT, which the caller names as its own field.
    rows = pa.table({"applicant_id": pa.array([1, 2], pa.int64())})
    errors = DownstreamErrors("the feature-service").with_handlers(
        {grpc.StatusCode.INVALID_ARGUMENT: invalid_argument("entities")}
    )
    with pytest.raises(InvalidArgument) as invalid:
        await client.historical_features(_query(), rows, errors=errors)
    assert invalid.value.violations[0].field == "entities"
    assert "no entity rows may be sent" in invalid.value.violations[0].reason
    service.unavailable = True
    with pytest.raises(Unavailable) as down:
        await client.historical_features(_query())
    assert dependency_status(down.value) is grpc.StatusCode.UNAVAILABLE


class _Servicer(fpb_grpc.FeatureStoreServiceServicer):  # type: ignore[misc]
    """Online reads echoing their request, push counting rows, a slow method, broken streams."""

    def __init__(self) -> None:
        self.online: list[fpb.GetOnlineFeaturesRequest] = []
        self.pushed: list[fpb.PushRequest] = []
        self.delay_s = 0.0
        self.stream: list[fpb.GetHistoricalFeaturesResponse] = []

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        await asyncio.sleep(self.delay_s)
        self.online.append(request)
        response = fpb.GetOnlineFeaturesResponse(
            features=[values_pb2.FeatureSpec(name="age", value_type=values_pb2.VALUE_TYPE_INT64)],
            feature_service_version="3",
        )
        for row in request.entity_rows:
            response.rows.add().values.add(
                value=values_pb2.FeatureValue(int64_value=row.join_keys["applicant_id"].int64_value + 100),
                status=fpb.FEATURE_STATUS_PRESENT,
            )
        return response

    async def Push(self, request: Any, context: Any) -> Any:
        self.pushed.append(request)
        return fpb.PushResponse(rows_written=len(request.rows))

    async def Materialize(self, request: Any, context: Any) -> Any:
        if not request.range.HasField("end"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "range is required")
        views = list(request.feature_views) or ["applicant_profile", "credit_history"]
        response = fpb.MaterializeResponse()
        for name in sorted(views):
            response.views.add(feature_view=name, range=request.range, rows_written=10)
        return response

    async def GetHistoricalFeatures(self, request_iterator: Any, context: Any) -> Any:
        async for _ in request_iterator:
            pass
        for message in self.stream:
            yield message


@pytest.fixture
async def custom(serve: Any) -> AsyncIterator[tuple[_Servicer, FeatureServiceClient]]:
    servicer = _Servicer()
    port = await serve(
        FEATURE_STORE, lambda server: fpb_grpc.add_FeatureStoreServiceServicer_to_server(servicer, server)
    )
    client = FeatureServiceClient.connect(f"127.0.0.1:{port}", default_timeout_s=None)
    yield servicer, client
    await client.close()


async def test_online_features_and_push(custom: Any) -> None:
    servicer, client = custom
    rows = [
        entity_row(
            {"applicant_id": values_pb2.FeatureValue(int64_value=i)},
            {"credit_amount": values_pb2.FeatureValue(int64_value=1000)},
        )
        for i in (1, 2)
    ]
    response = await client.get_online_features("credit_risk_v1", rows, version="3", timeout_s=2.0)
    assert [r.values[0].value.int64_value for r in response.rows] == [101, 102]
    sent = servicer.online[-1]
    assert sent.feature_service_version == "3"
    assert sent.entity_rows[0].request_values["credit_amount"].int64_value == 1000
    pushed = await client.push(
        "applicant_push",
        [
            fpb.PushRow(
                values={"applicant_id": values_pb2.FeatureValue(int64_value=5)}, event_timestamp=_ts(START)
            )
        ],
        target=fpb.PUSH_TARGET_ONLINE,
        timeout_s=2.0,
    )
    assert pushed.rows_written == 1
    assert servicer.pushed[-1].target == fpb.PUSH_TARGET_ONLINE


async def test_materialize_returns_a_summary_per_view(custom: Any) -> None:
    _servicer, client = custom
    event_times = time_range_pb2.TimeRange(start=_ts(START), end=_ts(END))
    views = await client.materialize(event_times, timeout_s=2.0)
    assert [(v.feature_view, v.rows_written) for v in views] == [
        ("applicant_profile", 10),
        ("credit_history", 10),
    ]
    assert views[0].range == event_times
    [one] = await client.materialize(event_times, ["credit_history"], timeout_s=2.0)
    assert one.feature_view == "credit_history"
    errors = DownstreamErrors(
        "the feature-service", on={grpc.StatusCode.INVALID_ARGUMENT: invalid_argument("window")}
    )
    with pytest.raises(InvalidArgument, match="range is required"):
        await client.materialize(time_range_pb2.TimeRange(), timeout_s=2.0, errors=errors)


async def test_deadline_maps_per_the_callers_contract(custom: Any) -> None:
    servicer, client = custom
    servicer.delay_s = 0.5
    rows = [entity_row({"applicant_id": values_pb2.FeatureValue(int64_value=1)})]
    with pytest.raises(DeadlineExceeded):
        await client.get_online_features("credit_risk_v1", rows, timeout_s=0.05)
    gateway = DownstreamErrors("feature-service", deadline_as_unavailable=True)
    with pytest.raises(Unavailable) as down:
        await client.get_online_features("credit_risk_v1", rows, timeout_s=0.05, errors=gateway)
    assert dependency_status(down.value) is grpc.StatusCode.DEADLINE_EXCEEDED


def _chunk(table: pa.Table, sequence: int, row_count: int | None = None) -> fpb.GetHistoricalFeaturesResponse:
    (encoded,) = list(encode_chunks(table))
    return fpb.GetHistoricalFeaturesResponse(
        chunk=arrow_pb2.ArrowChunk(
            arrow_ipc_stream=encoded.payload,
            row_count=encoded.row_count if row_count is None else row_count,
            sequence=sequence,
        )
    )


_TABLE = pa.table({"applicant_id": pa.array([1, 2], pa.int64()), "age": pa.array([None, None], pa.null())})
_HEADER = fpb.GetHistoricalFeaturesResponse(
    header=fpb.HistoricalFeaturesHeader(
        features=[values_pb2.FeatureSpec(name="age", value_type=values_pb2.VALUE_TYPE_INT64)],
        entity_columns=["applicant_id"],
        entity_row_count=2,
    )
)
_SUMMARY = fpb.GetHistoricalFeaturesResponse(
    summary=fpb.HistoricalFeaturesSummary(row_count=2, chunk_count=1)
)


async def test_reassembly_casts_an_all_null_column_to_its_declared_type(custom: Any) -> None:
    servicer, client = custom
    servicer.stream = [_HEADER, _chunk(_TABLE, 0), _SUMMARY]
    result = await client.historical_features(fpb.HistoricalFeaturesQuery(feature_service="x"), timeout_s=5)
    assert result.table.schema.field("age").type == pa.int64()
    assert result.table.column("age").null_count == 2


@pytest.mark.parametrize(
    ("stream", "error", "text"),
    [
        ([_HEADER, _chunk(_TABLE, 0)], Unavailable, "without header or summary"),
        ([_chunk(_TABLE, 0), _SUMMARY], Unavailable, "without header or summary"),
        (
            [
                _HEADER,
                _chunk(_TABLE, 0),
                fpb.GetHistoricalFeaturesResponse(summary=fpb.HistoricalFeaturesSummary(row_count=3)),
            ],
            Unavailable,
            "sent 2 rows",
        ),
        # The server's broken stream is the server's fault: never the caller's INVALID_ARGUMENT,
        # never an unexpected exception (INTERNAL), never a table missing a declared column.
        ([_HEADER, _chunk(_TABLE, 1), _SUMMARY], Unavailable, "chunk.sequence"),
        ([_HEADER, _chunk(_TABLE, 0, row_count=5), _SUMMARY], Unavailable, "chunk.row_count"),
        (
            [
                _HEADER,
                fpb.GetHistoricalFeaturesResponse(
                    chunk=arrow_pb2.ArrowChunk(arrow_ipc_stream=b"garbage", row_count=2, sequence=0)
                ),
                _SUMMARY,
            ],
            Unavailable,
            "not an Arrow IPC stream",
        ),
        (
            [_HEADER, _chunk(pa.table({"applicant_id": [1, 2], "age": ["x", "y"]}), 0), _SUMMARY],
            Unavailable,
            "feature column 'age' as string",
        ),
        (
            [_HEADER, _chunk(pa.table({"applicant_id": [1, 2], "age": [[1], [2]]}), 0), _SUMMARY],
            Unavailable,
            "feature column 'age' as list",
        ),
        (
            [_HEADER, _chunk(pa.table({"applicant_id": [1, 2], "age": [1.5, 2.0]}), 0), _SUMMARY],
            Unavailable,
            "feature column 'age' as double",
        ),
        ([_HEADER, _chunk(pa.table({"applicant_id": [1, 2]}), 0), _SUMMARY], Unavailable, "['age']"),
        ([_HEADER, _chunk(pa.table({"age": [1, 2]}), 0), _SUMMARY], Unavailable, "['applicant_id']"),
    ],
)
async def test_broken_streams_are_refused(stream: list[Any], error: type[Exception], text: str) -> None:
    async def messages() -> AsyncIterator[fpb.GetHistoricalFeaturesResponse]:
        for message in stream:
            yield message

    with pytest.raises(error) as raised:
        await reassemble(messages())
    assert text in str(raised.value)

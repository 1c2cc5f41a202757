"""The gRPC transport over the real core, on both profiles, through the generated stub only.

An in-process server (the kit's ``ServiceRunner`` on port 0, with its ``ErrorInterceptor``); every
RPC of ``FeatureStoreService``, each bad input mapped to its status with the offending thing named,
version checks, labelled entities, and the chunking of GetHistoricalFeatures under a small message
size limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import GERMAN_CSV, T
from creditrisk.common.v1 import arrow_pb2, time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from feature_service.core import FeatureStoreCore
from feature_service.ingest import application_times
from google.protobuf import timestamp_pb2
from grpc_helpers import historical, requests, serving

pytestmark = pytest.mark.timeout(300)


def _i(value: int) -> values_pb2.FeatureValue:
    return values_pb2.FeatureValue(int64_value=value)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return out


def _online(*ids: int, **kwargs) -> pb.GetOnlineFeaturesRequest:
    kwargs.setdefault("feature_service", "credit_risk_v1")
    rows = [pb.EntityRow(join_keys={"applicant_id": _i(i)}) for i in ids]
    return pb.GetOnlineFeaturesRequest(entity_rows=rows, **kwargs)


async def _error(call) -> grpc.aio.AioRpcError:
    async def consume() -> None:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await consume()
    return info.value


def _assert_status(err: grpc.aio.AioRpcError, code: grpc.StatusCode, named: str) -> None:
    assert err.code() == code, err.details()
    assert named in err.details()


def _entity(ids: list[int], times: list[datetime], **extra) -> pa.Table:
    columns = {
        "applicant_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
    }
    columns.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(columns)


# ---------------------------------------------------------------------- online


async def test_online_features_are_typed_with_status_timestamp_and_version(german: FeatureStoreCore) -> None:
    csv = pd.read_csv(GERMAN_CSV, nrows=3)
    async with serving(german) as s:
        response = await s.stub.GetOnlineFeatures(_online(1, 3, 10_000_001))
    assert response.feature_service_version == "1"
    specs = {f.name: f.value_type for f in response.features}
    assert specs["credit_amount"] == values_pb2.VALUE_TYPE_INT64
    assert specs["purpose"] == values_pb2.VALUE_TYPE_STRING
    assert specs["monthly_installment"] == values_pb2.VALUE_TYPE_DOUBLE
    names = [f.name for f in response.features]
    first = dict(zip(names, response.rows[0].values, strict=True))
    assert first["credit_amount"].value.WhichOneof("kind") == "int64_value"
    assert first["credit_amount"].value.int64_value == csv.loc[0, "credit_amount"]
    assert first["purpose"].value.string_value == csv.loc[0, "purpose"]
    assert first["monthly_installment"].value.double_value == pytest.approx(
        csv.loc[0, "credit_amount"] / csv.loc[0, "duration_in_month"]
    )
    assert first["credit_amount"].status == pb.FEATURE_STATUS_PRESENT
    assert first["credit_amount"].event_timestamp.ToDatetime(tzinfo=UTC) == datetime(
        2023, 3, 7, 5, 49, 7, tzinfo=UTC
    )
    # an applicant that exists nowhere: MISSING, null values, no timestamp; not an error
    unknown = response.rows[2].values
    assert {v.status for v in unknown} == {pb.FEATURE_STATUS_MISSING}
    assert {v.value.WhichOneof("kind") for v in unknown} == {"null_value"}
    assert not any(v.HasField("event_timestamp") for v in unknown)


async def test_online_full_names_refs_and_request_override(german: FeatureStoreCore) -> None:
    async with serving(german) as s:
        full = await s.stub.GetOnlineFeatures(_online(1, full_feature_names=True))
        assert "loan_request__credit_amount" in [f.name for f in full.features]
        refs = pb.FeatureRefs(refs=["loan_request:credit_amount", "loan_affordability:monthly_installment"])
        plain = await s.stub.GetOnlineFeatures(_online(1, features=refs, feature_service=None))
        assert plain.feature_service_version == ""
        amount, installment = (v.value for v in plain.rows[0].values)
        override = pb.GetOnlineFeaturesRequest(
            features=refs,
            entity_rows=[
                pb.EntityRow(join_keys={"applicant_id": _i(1)}, request_values={"credit_amount": _i(12_000)})
            ],
        )
        changed = await s.stub.GetOnlineFeatures(override)
    months = amount.int64_value / installment.double_value
    assert changed.rows[0].values[0].value.int64_value == amount.int64_value  # stored value unchanged
    assert changed.rows[0].values[1].value.double_value == pytest.approx(12_000 / months)


@pytest.mark.parametrize(
    ("request_", "code", "named"),
    [
        (_online(1, feature_service="credit_risk_v9"), grpc.StatusCode.NOT_FOUND, "credit_risk_v9"),
        (
            _online(1, features=pb.FeatureRefs(refs=["loan_request:nope"]), feature_service=None),
            grpc.StatusCode.NOT_FOUND,
            "loan_request:nope",
        ),
        (
            _online(1, features=pb.FeatureRefs(refs=["no_view:x"]), feature_service=None),
            grpc.StatusCode.NOT_FOUND,
            "no_view",
        ),
        (
            pb.GetOnlineFeaturesRequest(feature_service="credit_risk_v1", entity_rows=[pb.EntityRow()]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "applicant_id",
        ),
        (
            pb.GetOnlineFeaturesRequest(
                feature_service="credit_risk_v1",
                entity_rows=[
                    pb.EntityRow(join_keys={"applicant_id": values_pb2.FeatureValue(string_value="1")})
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "applicant_id",
        ),
        (
            pb.GetOnlineFeaturesRequest(
                feature_service="credit_risk_v1",
                entity_rows=[pb.EntityRow(join_keys={"applicant_id": values_pb2.FeatureValue()})],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entity_rows[0].join_keys.applicant_id",
        ),
        (
            pb.GetOnlineFeaturesRequest(
                feature_service="credit_risk_v1",
                entity_rows=[
                    pb.EntityRow(
                        join_keys={"applicant_id": _i(1)},
                        request_values={"credit_amount": values_pb2.FeatureValue(string_value="lots")},
                    )
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "credit_amount",
        ),
        (
            pb.GetOnlineFeaturesRequest(feature_service="credit_risk_v1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entity_rows",
        ),
        (
            pb.GetOnlineFeaturesRequest(entity_rows=[pb.EntityRow()]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "selection",
        ),
        (
            _online(1, feature_service="credit_risk_labels_v1"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "credit_label",
        ),
        (
            _online(1, feature_service_version="2"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "'1'",
        ),
    ],
    ids=[
        "unknown-service",
        "unknown-feature",
        "unknown-view",
        "missing-key",
        "key-wrong-type",
        "value-no-branch",
        "request-value-wrong-type",
        "no-rows",
        "no-selection",
        "offline-only",
        "version-mismatch",
    ],
)
async def test_online_bad_input_maps_to_status_naming_it(
    german: FeatureStoreCore, request_: pb.GetOnlineFeaturesRequest, code: grpc.StatusCode, named: str
) -> None:
    async with serving(german) as s:
        err = await _error(s.stub.GetOnlineFeatures(request_))
    assert err.code() == code, err.details()
    assert named in err.details()
    assert "Traceback" not in err.details()


async def test_version_mismatch_names_both_versions_and_matching_version_passes(
    german: FeatureStoreCore,
) -> None:
    async with serving(german) as s:
        err = await _error(s.stub.GetOnlineFeatures(_online(1, feature_service_version="7")))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "'1'" in err.details()
        assert "'7'" in err.details()
        assert "credit_risk_v1" in err.details()
        ok = await s.stub.GetOnlineFeatures(_online(1, feature_service_version="1"))
        assert ok.feature_service_version == "1"
        query = pb.HistoricalFeaturesQuery(feature_service="credit_risk_v1", feature_service_version="7")
        entity = _entity([1], [datetime(2025, 1, 1, tzinfo=UTC)])
        err = await _error(s.stub.GetHistoricalFeatures(iter(requests(query, entity))))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "'1'" in err.details()
        assert "'7'" in err.details()
        query = pb.HistoricalFeaturesQuery(feature_service="credit_risk_v1", feature_service_version="1")
        result = await historical(s.stub, requests(query, entity))
    assert result.header.feature_service_version == "1"


async def test_unexpected_failure_is_internal_without_traceback(
    german: FeatureStoreCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("secret detail of the backend")

    async def boom_async(*args, **kwargs):
        boom()

    monkeypatch.setattr(german.online, "get_online_features", boom)
    monkeypatch.setattr(german.online, "get_online_features_async", boom_async)
    async with serving(german) as s:
        err = await _error(s.stub.GetOnlineFeatures(_online(1)))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret detail" not in err.details()
    assert "Traceback" not in err.details()


# ---------------------------------------------------------------------- historical


async def test_historical_chunking_under_a_small_message_limit(german: FeatureStoreCore) -> None:
    limit = 16 * 1024
    rng = np.random.default_rng(7)
    n = 3000
    ids = rng.integers(1, 1001, size=n).tolist()
    start = datetime(2023, 1, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=int(s)) for s in rng.integers(0, 3 * 365 * 86400, size=n)]
    entity = _entity(ids, times, row_no=list(range(n)))
    query = pb.HistoricalFeaturesQuery(feature_service="credit_risk_v1", max_chunk_rows=400)
    async with serving(german, max_message_bytes=limit) as s:
        result = await historical(s.stub, requests(query, entity, chunk_rows=200))
    direct = german.historical.get_historical_table(entity, feature_service="credit_risk_v1")
    assert result.table.equals(direct)  # same rows, same order, same types
    assert result.table.column("row_no").to_pylist() == list(range(n))
    assert result.chunk_count >= n // 400
    assert result.chunk_count > 10
    assert max(result.message_sizes) < limit
    assert result.summary.row_count == n
    assert result.summary.chunk_count == result.chunk_count
    assert result.header.entity_row_count == n
    assert list(result.header.entity_columns) == ["applicant_id", "event_timestamp", "row_no"]
    assert [f.name for f in result.header.features] == result.table.column_names[3:]


async def test_historical_typed_values_nulls_and_all_null_columns(handmade: FeatureStoreCore) -> None:
    refs = [
        "loan_request:credit_amount",
        "loan_request:installment_rate_in_percentage_of_disposable_income",
        "loan_request:other_debtors_or_guarantors",
        "loan_request:purpose",
    ]
    query = pb.HistoricalFeaturesQuery(features=pb.FeatureRefs(refs=refs), max_chunk_rows=1)
    naive = pa.array(
        [datetime(2024, 3, 6, 12), datetime(2024, 3, 6, 12), datetime(2024, 3, 1, 12)], pa.timestamp("us")
    )
    entity = pa.table({"applicant_id": pa.array([101, 999, 104], pa.int64()), "event_timestamp": naive})
    async with serving(handmade) as s:
        result = await historical(s.stub, requests(query, entity))
    out = result.table
    assert out.schema.field("credit_amount").type == pa.int64()
    assert out.schema.field("installment_rate_in_percentage_of_disposable_income").type == pa.int64()
    assert out.schema.field("other_debtors_or_guarantors").type == pa.string()
    assert out.column("credit_amount").to_pylist() == [1000, None, None]  # naive time is UTC
    assert out.column("installment_rate_in_percentage_of_disposable_income").null_count == 3
    assert out.column("other_debtors_or_guarantors").null_count == 3
    assert out.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert result.chunk_count == 3
    types = {f.name: f.value_type for f in result.header.features}
    assert types["installment_rate_in_percentage_of_disposable_income"] == values_pb2.VALUE_TYPE_INT64


async def test_historical_string_timestamps_each_with_its_own_offset(
    handmade: FeatureStoreCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 16: in one request, a naive row after a -03:00 row was read as 14:00Z and saw 600.
    query = pb.HistoricalFeaturesQuery(features=pb.FeatureRefs(refs=["loan_request:credit_amount"]))
    times = pa.array(["2024-03-01T09:30:00-03:00", "2024-03-01 11:00:00"])
    entity = pa.table({"applicant_id": pa.array([102, 102], pa.int64()), "event_timestamp": times})
    async with serving(handmade) as s:
        result = await historical(s.stub, requests(query, entity))
    assert result.table.column("credit_amount").to_pylist() == [600, 500]
    assert result.table.column("event_timestamp").to_pylist() == [
        datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        datetime(2024, 3, 1, 11, 0, tzinfo=UTC),
    ]
    monkeypatch.setattr(
        handmade, "settings", handmade.settings.model_copy(update={"naive_timestamps": "refuse"})
    )
    async with serving(handmade) as s:
        err = await _error(s.stub.GetHistoricalFeatures(iter(requests(query, entity)), timeout=60))
    _assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "event_timestamp[1]")


async def test_historical_custom_timestamp_and_label_columns(handmade: FeatureStoreCore) -> None:
    query = pb.HistoricalFeaturesQuery(
        features=pb.FeatureRefs(refs=["loan_request:credit_amount"]),
        event_timestamp_column="as_of",
        label_column="outcome",
        full_feature_names=True,
    )
    entity = pa.table(
        {
            "applicant_id": pa.array([101, 101], pa.int64()),
            "as_of": pa.array([T + timedelta(days=5), T + timedelta(days=15)], pa.timestamp("us", tz="UTC")),
            "outcome": pa.array([0, 1], pa.int64()),
        }
    )
    async with serving(handmade) as s:
        result = await historical(s.stub, requests(query, entity))
    assert result.table.column_names == ["applicant_id", "as_of", "outcome", "loan_request__credit_amount"]
    assert result.table.column("loan_request__credit_amount").to_pylist() == [1000, 2000]
    assert result.table.column("outcome").to_pylist() == [0, 1]


@pytest.mark.parametrize(
    ("times", "named"),
    [
        (["2024-03-01T12:00:00Z", "2024-03-01 11:00:00", "2024-03-01+14:00"], "as_of[2]"),
        (["2024-03-01T12:00:00Z", "0000-01-01T00:00:00Z"], "as_of[1]"),
        (["2024-03-01T12:00:00Z", "0001-01-01T00:00:00+01:00"], "as_of[1]"),
        (["9999-12-31T23:59:59-01:00"], "as_of[0]"),
        (pa.array([0, 2**62], pa.timestamp("s")), "as_of[1]"),
        (pa.array(["2024-03-01T12:00:00Z", None]), "as_of[1]"),
    ],
    ids=["date-with-offset", "year-0", "before-year-1", "after-9999", "seconds-overflow", "null"],
)
async def test_historical_bad_timestamps_name_the_clients_column_and_row(
    handmade: FeatureStoreCore, times, named: str
) -> None:
    # Arrow's cast takes year 0 and instants pushed out of range by their offset: Feast then failed
    # (INTERNAL); a date followed by an offset was read as a time of day.
    query = pb.HistoricalFeaturesQuery(
        features=pb.FeatureRefs(refs=["loan_request:credit_amount"]), event_timestamp_column="as_of"
    )
    column = times if isinstance(times, pa.Array) else pa.array(times)
    entity = pa.table({"applicant_id": pa.array([102] * len(column), pa.int64()), "as_of": column})
    async with serving(handmade) as s:
        err = await _error(s.stub.GetHistoricalFeatures(iter(requests(query, entity)), timeout=60))
    _assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, named)


@pytest.mark.parametrize(
    "names", [["applicant_id", "as_of", "as_of"], ["applicant_id", "applicant_id", "as_of"]]
)
async def test_historical_repeated_column_names_are_refused(handmade: FeatureStoreCore, names) -> None:
    # Arrow allows a name twice; the second timestamp column kept its raw strings (INTERNAL).
    query = pb.HistoricalFeaturesQuery(
        features=pb.FeatureRefs(refs=["loan_request:credit_amount"]), event_timestamp_column="as_of"
    )
    columns = {
        "applicant_id": pa.array([102], pa.int64()),
        "as_of": pa.array(["2024-03-01T12:30:00Z"]),
    }
    entity = pa.Table.from_arrays([columns[n] for n in names], names=names)
    async with serving(handmade) as s:
        err = await _error(s.stub.GetHistoricalFeatures(iter(requests(query, entity)), timeout=60))
    _assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "appears more than once")


def _chunk(table: pa.Table, sequence: int = 0) -> pb.GetHistoricalFeaturesRequest:
    payload = next(iter(requests(pb.HistoricalFeaturesQuery(), table)[1:])).entity_rows.arrow_ipc_stream
    return pb.GetHistoricalFeaturesRequest(
        entity_rows=arrow_pb2.ArrowChunk(
            arrow_ipc_stream=payload, row_count=table.num_rows, sequence=sequence
        )
    )


_Q = pb.HistoricalFeaturesQuery(features=pb.FeatureRefs(refs=["loan_request:credit_amount"]))
_GOOD = _entity([101], [T])


@pytest.mark.parametrize(
    ("messages", "code", "named"),
    [
        ([_chunk(_GOOD)], grpc.StatusCode.INVALID_ARGUMENT, "query"),
        ([], grpc.StatusCode.INVALID_ARGUMENT, "query"),
        (
            [pb.GetHistoricalFeaturesRequest(query=_Q), pb.GetHistoricalFeaturesRequest(query=_Q)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "query",
        ),
        ([pb.GetHistoricalFeaturesRequest(query=_Q)], grpc.StatusCode.INVALID_ARGUMENT, "entity_rows"),
        (
            [pb.GetHistoricalFeaturesRequest(query=_Q), _chunk(_GOOD.drop_columns(["applicant_id"]))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "applicant_id",
        ),
        (
            [pb.GetHistoricalFeaturesRequest(query=_Q), _chunk(_GOOD.drop_columns(["event_timestamp"]))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "event_timestamp",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(query=_Q),
                _chunk(pa.table({"applicant_id": pa.array(["101"]), "event_timestamp": _GOOD.column(1)})),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "applicant_id",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(query=_Q),
                _chunk(pa.table({"applicant_id": _GOOD.column(0), "event_timestamp": pa.array([1.5])})),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "event_timestamp",
        ),
        (
            [pb.GetHistoricalFeaturesRequest(query=_Q), _chunk(_GOOD, sequence=1)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "sequence",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(query=_Q),
                pb.GetHistoricalFeaturesRequest(
                    entity_rows=arrow_pb2.ArrowChunk(arrow_ipc_stream=b"junk", row_count=1)
                ),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "arrow_ipc_stream",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(
                    query=pb.HistoricalFeaturesQuery(features=_Q.features, label_column="outcome")
                ),
                _chunk(_GOOD),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "outcome",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(
                    query=pb.HistoricalFeaturesQuery(
                        feature_service="credit_risk_v1",
                        labelled_entities=pb.LabelledEntities(
                            label_view="credit_label",
                            application_time_range=time_range_pb2.TimeRange(
                                start=_ts(datetime(2023, 1, 1, tzinfo=UTC)),
                                end=_ts(datetime(2024, 1, 1, tzinfo=UTC)),
                            ),
                        ),
                    )
                ),
                _chunk(_GOOD),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "labelled_entities",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(query=pb.HistoricalFeaturesQuery(feature_service="nope_v1")),
                _chunk(_GOOD),
            ],
            grpc.StatusCode.NOT_FOUND,
            "nope_v1",
        ),
        (
            [
                pb.GetHistoricalFeaturesRequest(
                    query=pb.HistoricalFeaturesQuery(features=_Q.features, max_chunk_rows=-1)
                )
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_chunk_rows",
        ),
    ],
    ids=[
        "chunk-first",
        "empty-stream",
        "second-query",
        "no-entity-rows",
        "missing-join-key",
        "missing-timestamp",
        "key-wrong-type",
        "timestamp-wrong-type",
        "sequence-gap",
        "undecodable",
        "missing-label-column",
        "chunks-with-labelled-entities",
        "unknown-service",
        "negative-chunk-rows",
    ],
)
async def test_historical_bad_input_maps_to_status_naming_it(
    handmade: FeatureStoreCore, messages: list, code: grpc.StatusCode, named: str
) -> None:
    async with serving(handmade) as s:
        err = await _error(s.stub.GetHistoricalFeatures(iter(messages), timeout=60))
    assert err.code() == code, err.details()
    assert named in err.details()
    assert "Traceback" not in err.details()


async def test_labelled_entities_build_a_training_set_from_the_label_view(german: FeatureStoreCore) -> None:
    start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 7, 1, tzinfo=UTC)
    known_at = datetime(2024, 3, 1, tzinfo=UTC)
    query = pb.HistoricalFeaturesQuery(
        feature_service="credit_risk_v1",
        feature_service_version="1",
        labelled_entities=pb.LabelledEntities(
            label_view="credit_label",
            application_time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
            labels_known_at=_ts(known_at),
        ),
    )
    async with serving(german) as s:
        result = await historical(s.stub, requests(query))
        everything = await historical(
            s.stub,
            requests(
                pb.HistoricalFeaturesQuery(
                    features=pb.FeatureRefs(refs=["loan_request:credit_amount"]),
                    labelled_entities=pb.LabelledEntities(
                        label_view="credit_label",
                        application_time_range=time_range_pb2.TimeRange(
                            start=_ts(datetime(2000, 1, 1, tzinfo=UTC)),
                            end=_ts(datetime(2030, 1, 1, tzinfo=UTC)),
                        ),
                    ),
                )
            ),
        )
    # the expected applicants, from the deterministic ingestion scheme (seed 42, label after 365 days)
    applied = application_times(1000, 42, datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    label_known = applied + pd.to_timedelta(365, unit="D")
    mask = (applied >= start) & (applied < end) & (label_known <= known_at)
    expected = sorted((t, i + 1) for i, t in enumerate(applied) if mask.iloc[i])
    table = result.table
    assert 0 < table.num_rows == len(expected) < 1000
    assert table.column("applicant_id").to_pylist() == [i for _, i in expected]
    assert table.column("event_timestamp").to_pylist() == [t.to_pydatetime() for t, _ in expected]
    assert table.column_names[:4] == ["applicant_id", "event_timestamp", "creditability", "label_timestamp"]
    lag = pc.subtract(table.column("label_timestamp"), table.column("event_timestamp")).to_pylist()
    assert set(lag) == {timedelta(days=365)}
    assert max(table.column("label_timestamp").to_pylist()) <= known_at
    csv = pd.read_csv(GERMAN_CSV)
    want = csv["credit_amount"].to_numpy()[np.array(table.column("applicant_id").to_pylist()) - 1].tolist()
    assert table.column("credit_amount").to_pylist() == want  # features as of the application time
    labels = (csv["creditability"] == "bad").astype(int).to_numpy()
    assert (
        table.column("creditability").to_pylist()
        == labels[np.array(table.column("applicant_id")) - 1].tolist()
    )
    assert list(result.header.entity_columns) == [
        "applicant_id",
        "event_timestamp",
        "creditability",
        "label_timestamp",
    ]
    assert everything.table.num_rows == 1000
    assert everything.header.feature_service_version == ""


# ---------------------------------------------------------------------- materialize, push


async def test_materialize_and_incremental(handmade: FeatureStoreCore) -> None:
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC)
    async with serving(handmade) as s:
        response = await s.stub.Materialize(
            pb.MaterializeRequest(
                range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
                feature_views=["loan_request", "demographics"],
            )
        )
        assert [v.feature_view for v in response.views] == ["demographics", "loan_request"]
        assert response.views[0].range.start.ToDatetime(tzinfo=UTC) == start
        assert response.views[0].duration.ToTimedelta() > timedelta(0)
        every = await s.stub.Materialize(
            pb.MaterializeRequest(range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)))
        )
        assert "credit_label" not in [v.feature_view for v in every.views]
        assert len(every.views) == 5
        inc = await s.stub.MaterializeIncremental(
            pb.MaterializeIncrementalRequest(end_time=_ts(datetime.now(UTC)), feature_views=["loan_request"])
        )
        assert [v.feature_view for v in inc.views] == ["loan_request"]
        assert inc.views[0].range.HasField("start")
        bad = [
            (pb.MaterializeRequest(), grpc.StatusCode.INVALID_ARGUMENT, "range"),
            (
                pb.MaterializeRequest(range=time_range_pb2.TimeRange(start=_ts(end), end=_ts(start))),
                grpc.StatusCode.INVALID_ARGUMENT,
                "range.end",
            ),
            (
                pb.MaterializeRequest(
                    range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)), feature_views=["nope"]
                ),
                grpc.StatusCode.NOT_FOUND,
                "nope",
            ),
            (
                pb.MaterializeRequest(
                    range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
                    feature_views=["credit_label"],
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "credit_label",
            ),
        ]
        for request, code, named in bad:
            err = await _error(s.stub.Materialize(request))
            _assert_status(err, code, named)
        err = await _error(s.stub.MaterializeIncremental(pb.MaterializeIncrementalRequest()))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "end_time" in err.details()


def _demographics_row(applicant: int, age: int | None, at: datetime) -> pb.PushRow:
    null = values_pb2.FeatureValue(null_value=0)
    return pb.PushRow(
        values={
            "applicant_id": _i(applicant),
            "age_in_years": _i(age) if age is not None else null,
            "number_of_people_being_liable_to_provide_maintenance_for": _i(1),
        },
        event_timestamp=_ts(at),
    )


async def test_push_online_and_offline(handmade: FeatureStoreCore) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    refs = pb.FeatureRefs(refs=["demographics:age_in_years"])
    async with serving(handmade) as s:
        pushed = await s.stub.Push(
            pb.PushRequest(
                push_source="demographics_push",
                rows=[_demographics_row(450, 41, now), _demographics_row(451, None, now)],
                target=pb.PUSH_TARGET_ONLINE_AND_OFFLINE,
            )
        )
        assert pushed.rows_written == 2
        online = await s.stub.GetOnlineFeatures(_online(450, 451, features=refs, feature_service=None))
        assert online.rows[0].values[0].value.int64_value == 41
        assert online.rows[1].values[0].status == pb.FEATURE_STATUS_NULL_VALUE
        assert online.rows[1].values[0].value.WhichOneof("kind") == "null_value"
        query = pb.HistoricalFeaturesQuery(features=refs)
        offline = await historical(s.stub, requests(query, _entity([450], [now + timedelta(seconds=1)])))
        assert offline.table.column("age_in_years").to_pylist() == [41]
        label = pb.PushRow(values={"applicant_id": _i(452), "creditability": _i(1)}, event_timestamp=_ts(now))
        written = await s.stub.Push(
            pb.PushRequest(push_source="credit_label_push", rows=[label], target=pb.PUSH_TARGET_OFFLINE)
        )
        assert written.rows_written == 1
        missing_column = pb.PushRow(values={"applicant_id": _i(453)}, event_timestamp=_ts(now))
        unknown_column = _demographics_row(454, 1, now)
        unknown_column.values["shoe_size"].CopyFrom(_i(44))
        bad = [
            (
                pb.PushRequest(push_source="nope_push", rows=[_demographics_row(455, 1, now)]),
                grpc.StatusCode.NOT_FOUND,
                "nope_push",
            ),
            (
                pb.PushRequest(push_source="demographics_push", rows=[missing_column]),
                grpc.StatusCode.INVALID_ARGUMENT,
                "age_in_years",
            ),
            (
                pb.PushRequest(push_source="demographics_push", rows=[unknown_column]),
                grpc.StatusCode.INVALID_ARGUMENT,
                "shoe_size",
            ),
            (
                pb.PushRequest(
                    push_source="demographics_push", rows=[pb.PushRow(values={"applicant_id": _i(456)})]
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "rows[0].event_timestamp",
            ),
            (pb.PushRequest(push_source="demographics_push"), grpc.StatusCode.INVALID_ARGUMENT, "rows"),
            (
                pb.PushRequest(push_source="credit_label_push", rows=[label]),
                grpc.StatusCode.FAILED_PRECONDITION,
                "credit_label",
            ),
        ]
        for request, code, named in bad:
            err = await _error(s.stub.Push(request))
            _assert_status(err, code, named)


# ---------------------------------------------------------------------- listing


async def test_list_and_describe_with_pagination(handmade: FeatureStoreCore) -> None:
    async with serving(handmade) as s:
        services = await s.stub.ListFeatureServices(pb.ListFeatureServicesRequest())
        assert [f.name for f in services.feature_services] == [
            "credit_risk_fairness_v1",
            "credit_risk_labels_v1",
            "credit_risk_v1",
        ]
        assert services.next_page_token == ""
        model = (
            await s.stub.GetFeatureService(pb.GetFeatureServiceRequest(name="credit_risk_v1"))
        ).feature_service
        assert model.version == "1"
        assert model.tags["version"] == "1"
        assert [p.feature_view for p in model.projections] == [
            "loan_request",
            "credit_standing",
            "employment_and_residence",
            "demographics",
            "loan_affordability",
        ]
        assert {r.name for r in model.request_values} == {"credit_amount", "duration_in_month"}
        assert model.entities[0].join_key == "applicant_id"
        assert model.entities[0].value_type == values_pb2.VALUE_TYPE_INT64
        names, token, pages = [], "", 0
        while True:
            page = await s.stub.ListFeatureViews(pb.ListFeatureViewsRequest(page_size=2, page_token=token))
            names += [v.name for v in page.feature_views]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert names == sorted(names)
        assert len(names) == 7
        assert pages == 4
        used = await s.stub.ListFeatureViews(
            pb.ListFeatureViewsRequest(feature_service="credit_risk_fairness_v1")
        )
        assert [v.name for v in used.feature_views] == ["protected_attributes"]
        on_demand = await s.stub.ListFeatureViews(
            pb.ListFeatureViewsRequest(kind=pb.FEATURE_VIEW_KIND_ON_DEMAND)
        )
        assert [v.name for v in on_demand.feature_views] == ["loan_affordability"]
        labels = await s.stub.ListFeatureViews(pb.ListFeatureViewsRequest(tags={"group": "label"}))
        assert [v.name for v in labels.feature_views] == ["credit_label"]
        view = (await s.stub.GetFeatureView(pb.GetFeatureViewRequest(name="loan_request"))).feature_view
        assert view.kind == pb.FEATURE_VIEW_KIND_BATCH
        assert view.online
        assert view.ttl.ToTimedelta() == timedelta(days=30)
        assert {src.kind for src in view.sources} >= {pb.DATA_SOURCE_KIND_PUSH}
        label_view = (await s.stub.GetFeatureView(pb.GetFeatureViewRequest(name="credit_label"))).feature_view
        assert not label_view.online
        assert not label_view.HasField("ttl")
        bad = [
            (
                s.stub.ListFeatureViews(pb.ListFeatureViewsRequest(page_size=-1)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_size",
            ),
            (
                s.stub.ListFeatureServices(pb.ListFeatureServicesRequest(page_token="%%%")),
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_token",
            ),
            (
                s.stub.ListFeatureViews(pb.ListFeatureViewsRequest(feature_service="nope_v1")),
                grpc.StatusCode.NOT_FOUND,
                "nope_v1",
            ),
            (
                s.stub.GetFeatureService(pb.GetFeatureServiceRequest(name="nope_v1")),
                grpc.StatusCode.NOT_FOUND,
                "nope_v1",
            ),
            (
                s.stub.GetFeatureView(pb.GetFeatureViewRequest(name="nope_view")),
                grpc.StatusCode.NOT_FOUND,
                "nope_view",
            ),
            (s.stub.GetFeatureView(pb.GetFeatureViewRequest()), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ]
        for call, code, named in bad:
            err = await _error(call)
            _assert_status(err, code, named)


async def test_health_follows_the_core_readiness(settings_factory, handmade: FeatureStoreCore) -> None:
    from creditrisk_kit import wait_until_serving

    async with serving(handmade) as s:
        await wait_until_serving(s.channel, timeout_s=30)
        assert s.runner.ready
    never_applied = FeatureStoreCore(settings_factory("unapplied"))
    try:
        async with serving(never_applied) as s:
            assert await s.runner.check_readiness() is False
    finally:
        never_applied.teardown()

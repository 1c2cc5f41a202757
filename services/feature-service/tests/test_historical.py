"""Point-in-time retrieval: hand-made cases that fail if the join leaks, chunking, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from conftest import T
from feature_service.core import FeatureStoreCore
from feature_service.errors import InvalidArgument, NotFound

AMOUNT = ["loan_request:credit_amount"]


def _entity(ids: list[int], times: list, ts_type: pa.DataType | None = None, **extra: list) -> pa.Table:
    columns = {
        "applicant_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(times, ts_type) if ts_type else pa.array(times),
    }
    columns.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(columns)


def _fetch(core: FeatureStoreCore, entity: pa.Table, **kwargs) -> pa.Table:
    if "feature_service" not in kwargs:
        kwargs.setdefault("features", AMOUNT)
    return pa.Table.from_batches(list(core.historical.get_historical_features(entity, **kwargs)))


def test_value_stamped_later_than_the_row_is_not_seen(handmade: FeatureStoreCore) -> None:
    out = _fetch(handmade, _entity([101, 101], [T + timedelta(days=5), T + timedelta(days=15)]))
    assert out.column("credit_amount").to_pylist() == [1000, 2000]


def test_naive_timestamps_are_utc_and_offsets_are_normalized(handmade: FeatureStoreCore) -> None:
    # 102 has 500 from T-10d and 600 from T (12:00 UTC). 13:30+02:00 is 11:30 UTC -> 500;
    # 14:30+02:00 is 12:30 UTC -> 600. Ignoring the offset would give 600 for both.
    plus2 = timezone(timedelta(hours=2))
    aware = [datetime(2024, 3, 1, 13, 30, tzinfo=plus2), datetime(2024, 3, 1, 14, 30, tzinfo=plus2)]
    berlin = _entity([102, 102], aware, pa.timestamp("us", tz="+02:00"))
    out = _fetch(handmade, berlin)
    assert out.column("credit_amount").to_pylist() == [500, 600]
    assert out.column("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert [t.astimezone(UTC) for t in out.column("event_timestamp").to_pylist()] == [
        datetime(2024, 3, 1, 11, 30, tzinfo=UTC),
        datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
    ]
    strings = _entity([102, 102], ["2024-03-01T13:30:00+02:00", "2024-03-01T14:30:00+02:00"])
    assert _fetch(handmade, strings).column("credit_amount").to_pylist() == [500, 600]
    naive = _entity(
        [102, 102], [datetime(2024, 3, 1, 11, 30), datetime(2024, 3, 1, 12, 30)], pa.timestamp("us")
    )
    assert _fetch(handmade, naive).column("credit_amount").to_pylist() == [500, 600]


_1230Z, _1100Z = datetime(2024, 3, 1, 12, 30, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "rows",
    [
        [("2024-03-01T09:30:00-03:00", _1230Z), ("2024-03-01 11:00:00", _1100Z)],  # issue 16: 14:00Z
        [("2024-03-01 11:00:00", _1100Z), ("2024-03-01T09:30:00-03:00", _1230Z)],
        [("2024-03-01T12:30:00Z", _1230Z), ("2024-03-01T11:00:00", _1100Z)],
        [("2024-03-01T15:30:00+03:00", _1230Z), ("2024-03-01T11:00:00.000000", _1100Z)],
        [("2024-03-01T14:00:00+03:00", _1100Z), ("2024-03-01T09:30:00-03:00", _1230Z)],
    ],
    ids=["offset-then-naive", "naive-then-offset", "z-then-naive", "fraction", "two-offsets"],
)
def test_each_string_timestamp_is_read_with_its_own_offset(handmade: FeatureStoreCore, rows) -> None:
    # 102 has 500 from T-10d and 600 from T (12:00 UTC): 12:30Z sees 600, 11:00Z (naive is UTC) 500.
    # One offset inferred for the batch read "2024-03-01 11:00:00" after a -03:00 row as 14:00Z: 600.
    out = _fetch(handmade, _entity([102, 102], [text for text, _ in rows]))
    assert out.column("credit_amount").to_pylist() == [600 if t == _1230Z else 500 for _, t in rows]
    assert [t.astimezone(UTC) for t in out.column("event_timestamp").to_pylist()] == [t for _, t in rows]


def test_naive_timestamps_can_be_refused_by_configuration(
    handmade: FeatureStoreCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        handmade, "settings", handmade.settings.model_copy(update={"naive_timestamps": "refuse"})
    )
    mixed = _entity([102, 102, 102], ["2024-03-01T09:30:00-03:00", "2024-03-01 11:00:00", "2024-03-01"])
    with pytest.raises(InvalidArgument) as info:
        _fetch(handmade, mixed)
    assert info.value.fields() == ("event_timestamp[1]", "event_timestamp[2]")
    assert "no UTC offset" in info.value.reason
    naive_column = _entity([102], [datetime(2024, 3, 1, 11)], pa.timestamp("us"))
    with pytest.raises(InvalidArgument, match="without a time zone") as info:
        _fetch(handmade, naive_column)
    assert info.value.field == "event_timestamp"
    aware = _entity([102, 102], ["2024-03-01T09:30:00-03:00", "2024-03-01T11:00:00Z"])
    assert _fetch(handmade, aware).column("credit_amount").to_pylist() == [600, 500]


def test_late_correction_does_not_reach_rows_before_it_existed(handmade: FeatureStoreCore) -> None:
    # 103: 700 at T (created T), corrected to 777 at the same event time but created T+20d.
    entity = _entity([103, 103], [T + timedelta(days=5), T + timedelta(days=25)])
    assert _fetch(handmade, entity).column("credit_amount").to_pylist() == [700, 777]
    # Feast's default (filter_by_created_timestamp=False) leaks the correction into the earlier row:
    frame = pd.DataFrame({"applicant_id": [103], "event_timestamp": [pd.Timestamp(T + timedelta(days=5))]})
    leaked = handmade.store.get_historical_features(entity_df=frame, features=AMOUNT).to_df()
    assert leaked["credit_amount"].tolist() == [777]


def test_rows_with_only_future_or_expired_feature_rows_come_back_with_nulls(
    handmade: FeatureStoreCore,
) -> None:
    # 104 only has a row 30 days after T; 105 only a row 60 days before T (TTL 30 days); 999 nothing.
    entity = _entity([104, 105, 999, 101], [T, T, T, T])
    out = _fetch(handmade, entity)
    assert out.num_rows == 4
    assert out.column("applicant_id").to_pylist() == [104, 105, 999, 101]
    assert out.column("credit_amount").to_pylist() == [None, None, None, 1000]
    assert out.column("credit_amount").type == pa.int64()


def test_nulls_survive_offline_with_schema_types(handmade: FeatureStoreCore) -> None:
    out = _fetch(
        handmade,
        _entity([201, 202], [datetime.now(UTC)] * 2),
        features=[
            "loan_request:credit_amount",
            "loan_request:duration_in_month",
            "loan_request:installment_rate_in_percentage_of_disposable_income",
            "loan_request:other_debtors_or_guarantors",
        ],
    )
    assert out.column("credit_amount").to_pylist() == [None, 3000]
    assert out.column("duration_in_month").to_pylist() == [12, None]
    assert out.column("installment_rate_in_percentage_of_disposable_income").to_pylist() == [None, None]
    assert out.column("installment_rate_in_percentage_of_disposable_income").type == pa.int64()
    assert out.column("other_debtors_or_guarantors").to_pylist() == [None, None]


def test_on_demand_feature_is_computed_identically_offline(german: FeatureStoreCore) -> None:
    at = datetime(2030, 1, 1)
    entity = _entity(
        [1, 1, 2], [at, at, at], pa.timestamp("us"), credit_amount=pa.array([None, 6000, None], pa.int64())
    )
    out = _fetch(
        german, entity, features=["loan_affordability:monthly_installment", "loan_request:credit_amount"]
    )
    assert out.column("monthly_installment").to_pylist() == pytest.approx([1169 / 6, 1000.0, 5951 / 48])
    assert out.column("credit_amount").to_pylist() == [1169, 1169, 5951]  # the caller's column is not leaked
    online = german.online.get_online_features(
        [{"applicant_id": 1}, {"applicant_id": 1}, {"applicant_id": 2}],
        request_values=[None, {"credit_amount": 6000}, None],
        features=["loan_affordability:monthly_installment"],
    )
    assert [r[0].value for r in online.values] == out.column("monthly_installment").to_pylist()
    plain = _fetch(
        german,
        _entity([1], [at], pa.timestamp("us")),
        feature_service="credit_risk_v1",
        full_feature_names=True,
    )
    assert plain.column("loan_affordability__monthly_installment").to_pylist() == pytest.approx([1169 / 6])
    assert "demographics__age_in_years" in plain.column_names


def test_output_is_chunked_in_row_order(german: FeatureStoreCore) -> None:
    ids = [5, 3, 1, 4, 2]
    batches = list(
        german.historical.get_historical_features(
            _entity(ids, [datetime(2030, 1, 1)] * 5, pa.timestamp("us")),
            feature_service="credit_risk_v1",
            chunk_rows=2,
        )
    )
    assert [b.num_rows for b in batches] == [2, 2, 1]
    table = pa.Table.from_batches(batches)
    assert table.column("applicant_id").to_pylist() == ids
    assert table.column("credit_amount").to_pylist() == [4870, 2096, 1169, 7882, 5951]


@pytest.mark.parametrize(
    ("entity", "key"),
    [
        (pa.table({"event_timestamp": pa.array([datetime(2030, 1, 1)])}), "applicant_id"),
        (
            pa.table({"applicant_id": ["1"], "event_timestamp": pa.array([datetime(2030, 1, 1)])}),
            "applicant_id",
        ),
        (pa.table({"applicant_id": pa.array([1], pa.int64())}), "event_timestamp"),
        (
            pa.table({"applicant_id": pa.array([1], pa.int64()), "event_timestamp": ["yesterday-ish"]}),
            "event_timestamp",
        ),
    ],
)
def test_bad_entity_df_is_invalid_argument_naming_the_column(german: FeatureStoreCore, entity, key) -> None:
    with pytest.raises(InvalidArgument) as info:
        _fetch(german, entity, feature_service="credit_risk_v1")
    assert info.value.field.partition("[")[0] == key


def test_unknown_feature_service_offline_is_not_found(german: FeatureStoreCore) -> None:
    with pytest.raises(NotFound, match="nope_v1"):
        _fetch(german, _entity([1], [datetime(2030, 1, 1)], pa.timestamp("us")), feature_service="nope_v1")

"""The fast materialization engine writes exactly what Feast's own engine writes (both profiles).

Two projects get the same offline rows (the German credit data plus the hand-made rows: several rows
per applicant, a late correction, nulls, a column null in every row of a window); one materializes
with Feast 0.67's ``local`` engine, the other with ``feature_service.materialization``, through the
same sequence of windows (an explicit window, an older window that must not overwrite newer values,
an incremental run). After each step, Feast's own ``get_online_features`` returns the same values,
statuses and event timestamps from both; on Redis the raw hashes are byte-equal as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import GERMAN_CSV, HANDMADE_LOAN_ROWS, RECENT, T
from feature_service.core import FeatureStoreCore
from feature_service.domain import ValueStatus
from feature_service.settings import FeatureServiceSettings

IDS = [*range(1, 1001, 37), 1000, 101, 102, 103, 104, 105, 201, 202, 10_000_003]


@pytest.fixture(scope="module")
def pair(settings_factory: Callable[..., FeatureServiceSettings]) -> Iterator[dict[str, FeatureStoreCore]]:
    """``{"feast": core, "fast": core}``: same offline rows, 30-day TTL, nothing materialized yet."""
    from conftest import german_layout
    from feature_service.ingest import ingest
    from feature_service.offline import arrow_schema, offline_writer

    LOAN_REQUEST = german_layout().view("loan_request")

    cores = {}
    for engine in ("feast", "fast"):
        settings = settings_factory(f"mat{engine}", feature_ttl_days=30, materialization_engine=engine)
        ingest(GERMAN_CSV, settings)
        offline_writer(settings).append(
            LOAN_REQUEST, pa.Table.from_pylist(HANDMADE_LOAN_ROWS, schema=arrow_schema(LOAN_REQUEST))
        )
        cores[engine] = FeatureStoreCore(settings)
    yield cores
    for core in cores.values():
        core.teardown()


def _refs(core: FeatureStoreCore) -> list[str]:
    return sorted(
        f"{fv.name}:{f.name}" for fv in core.store.list_feature_views() if fv.online for f in fv.features
    )


def _feast_read(core: FeatureStoreCore) -> list[tuple[str, list[bytes], list[int], list[Any]]]:
    """Feast's own online read of every online feature: (name, value protos, statuses, timestamps)."""
    response = core.store.get_online_features(
        features=_refs(core), entity_rows=[{"applicant_id": i} for i in IDS], full_feature_names=True
    ).proto
    names = list(response.metadata.feature_names.val)
    return [
        (
            name,
            [v.SerializeToString() for v in vector.values],
            list(vector.statuses),
            [(t.seconds, t.nanos) for t in vector.event_timestamps],
        )
        for name, vector in zip(names, response.results, strict=True)
    ]


def _raw_hashes(core: FeatureStoreCore) -> dict[bytes, dict[bytes, bytes]]:
    import redis

    client = redis.Redis.from_url(core.settings.redis_url)
    suffix = core.settings.project.encode()
    return {
        key[: -len(suffix)]: client.hgetall(key) for key in client.scan_iter(match=b"*" + suffix, count=5000)
    }


def _assert_same(pair: dict[str, FeatureStoreCore]) -> None:
    feast, fast = _feast_read(pair["feast"]), _feast_read(pair["fast"])
    assert [f[0] for f in feast] == [f[0] for f in fast]
    for expected, actual in zip(feast, fast, strict=True):
        assert actual == expected, expected[0]
    if pair["fast"].settings.profile == "real":
        expected_hashes, actual_hashes = _raw_hashes(pair["feast"]), _raw_hashes(pair["fast"])
        assert expected_hashes.keys() == actual_hashes.keys()
        assert actual_hashes == expected_hashes


def _both(pair: dict[str, FeatureStoreCore], method: str, *args: Any) -> None:
    for core in pair.values():
        getattr(core.writes, method)(*args)


def test_the_fast_engine_is_configured_and_feast_is_the_fallback(pair: dict[str, FeatureStoreCore]) -> None:
    from feast.infra.compute_engines.local.compute import LocalComputeEngine
    from feature_service.materialization import FastMaterializationEngine

    fast_engine = pair["fast"].store._get_provider().batch_engine
    feast_engine = pair["feast"].store._get_provider().batch_engine
    assert type(fast_engine) is FastMaterializationEngine
    assert type(feast_engine) is LocalComputeEngine


def test_same_online_data_as_feast_through_windows_nulls_and_incremental_runs(
    pair: dict[str, FeatureStoreCore],
) -> None:
    fast = pair["fast"]
    now = datetime.now(UTC)
    # 1. only the two recent hand-made rows: nulls in single rows, and the installment-rate and
    #    other-debtors columns null in every row of the batch
    _both(pair, "materialize", RECENT - timedelta(hours=1), now)
    _assert_same(pair)
    recent = fast.online.get_online_features(
        [{"applicant_id": 201}, {"applicant_id": 202}],
        features=[
            "loan_request:credit_amount",
            "loan_request:purpose",
            "loan_request:installment_rate_in_percentage_of_disposable_income",
            "loan_request:other_debtors_or_guarantors",
            "loan_request:duration_in_month",
        ],
    )
    assert [[v.value for v in row] for row in recent.values] == [
        [None, None, None, None, 12],
        [3000, "car", None, None, None],
    ]
    assert recent.values[0][0].status == ValueStatus.NULL_VALUE
    assert recent.values[1][0].status == ValueStatus.PRESENT

    # 2. everything up to T + 5 days: latest row per applicant (the hand-made ids 101..105 are
    #    German applicants too), the late correction wins (103 -> 777)
    _both(pair, "materialize", datetime(2022, 1, 1, tzinfo=UTC), T + timedelta(days=5))
    _assert_same(pair)
    got = fast.online.get_online_features(
        [{"applicant_id": i} for i in (101, 102, 103)], features=["loan_request:credit_amount"]
    )
    assert [row[0].value for row in got.values] == [1000, 600, 777]
    # older than the 30-day TTL: still returned, reported OUTSIDE_TTL
    assert got.values[0][0].status == ValueStatus.OUTSIDE_TTL

    # 3. everything: 101 moves to its latest row
    _both(pair, "materialize", datetime(2022, 1, 1, tzinfo=UTC), now)
    _assert_same(pair)
    latest = fast.online.get_online_features([{"applicant_id": 101}], features=["loan_request:credit_amount"])
    assert latest.values[0][0].value != 1000
    # 4. an older window again: Feast's Redis store skips rows not newer than the stored ones; its
    #    SQLite store has no such rule and overwrites (the fast engine does what each store does)
    _both(pair, "materialize", datetime(2022, 1, 1, tzinfo=UTC), T)
    _assert_same(pair)
    got = fast.online.get_online_features([{"applicant_id": 101}], features=["loan_request:credit_amount"])
    if fast.settings.profile == "real":
        assert got.values[0][0] == latest.values[0][0]
    else:
        assert got.values[0][0].value == 1000

    # 5. incremental: from each view's last end to a later end
    _both(pair, "materialize_incremental", now + timedelta(minutes=1))
    _assert_same(pair)
    views = {v.feature_view: v for v in fast.writes.materialize_incremental(now + timedelta(minutes=2)).views}
    assert views["loan_request"].start == now + timedelta(minutes=1)


def test_first_incremental_run_starts_at_end_minus_ttl(
    settings_factory: Callable[..., FeatureServiceSettings],
) -> None:
    """Nothing materialized yet: only rows of the last TTL (30 days) are loaded, as with Feast."""
    from conftest import german_layout
    from feature_service.offline import arrow_schema, offline_writer

    layout = german_layout()
    ALL_VIEWS, LOAN_REQUEST = layout.views, layout.view("loan_request")

    settings = settings_factory("matttl", feature_ttl_days=30)
    writer = offline_writer(settings)
    for view in ALL_VIEWS:
        rows = HANDMADE_LOAN_ROWS if view is LOAN_REQUEST else []
        writer.replace(view, pa.Table.from_pylist(rows, schema=arrow_schema(view)))
    core = FeatureStoreCore(settings)
    try:
        core.apply()
        core.writes.materialize_incremental(datetime.now(UTC), views=["loan_request"])
        got = core.online.get_online_features(
            [{"applicant_id": i} for i in (101, 105, 201, 202)], features=["loan_request:credit_amount"]
        )
        assert [row[0].status for row in got.values] == [
            ValueStatus.MISSING,
            ValueStatus.MISSING,
            ValueStatus.NULL_VALUE,
            ValueStatus.PRESENT,
        ]
    finally:
        core.teardown()


def test_column_pieces_match_feasts_conversion_row_by_row() -> None:
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType
    from feature_service.materialization import column_pieces

    cases = [
        (pa.array([3, None, 3, 7, None], pa.int64()), ValueType.INT64),
        (pa.array([1.5, float("nan"), None, 1.5], pa.float64()), ValueType.DOUBLE),
        (pa.array([1.0, float("nan"), None, 2.0], pa.float64()), ValueType.INT64),  # ints as float64
        (pa.array(["a", None, "b", "a", ""], pa.string()), ValueType.STRING),
        (pa.array([None, None], pa.int64()), ValueType.INT64),  # null in every row
        (pa.array([None, None], pa.null()), ValueType.STRING),
        (pa.chunked_array([[1, 2], [2, None]], pa.int64()), ValueType.INT64),
    ]
    for column, value_type in cases:
        protos, codes = column_pieces(column, value_type)
        values = (
            column.to_numpy(zero_copy_only=False)
            if isinstance(column, pa.Array)
            else np.concatenate([c.to_numpy(zero_copy_only=False) for c in column.chunks])
        )
        expected = python_values_to_proto_values(values, value_type)
        assert [protos[c].SerializeToString() for c in codes] == [p.SerializeToString() for p in expected]

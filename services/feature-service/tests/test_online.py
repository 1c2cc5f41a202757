"""Online retrieval: typed values, statuses, timestamps, bad input, labels never online."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import GERMAN_CSV, german_layout
from feature_service.core import FeatureStoreCore
from feature_service.domain import ValueStatus
from feature_service.errors import FailedPrecondition, InvalidArgument, NotFound

PROTECTED = {"personal_status_and_sex", "foreign_worker"}
_LAYOUT = german_layout()
#: The 20 attributes of the German credit data (every feature but the label).
ATTRIBUTE_COLUMNS = [n for v in _LAYOUT.views if v is not _LAYOUT.label_view for n in v.feature_names]
INT_ATTRIBUTES = {n for v in _LAYOUT.views for n, kind in v.features if kind == "int"}


def test_real_applicants_come_back_typed_with_status_and_timestamp(german: FeatureStoreCore) -> None:
    csv = pd.read_csv(GERMAN_CSV, nrows=3)
    result = german.online.get_online_features(
        [{"applicant_id": 1}, {"applicant_id": 3}], feature_service="credit_risk_v1"
    )
    names = [s.feature for s in result.features]
    assert set(names) == (set(ATTRIBUTE_COLUMNS) - PROTECTED) | {"monthly_installment"}
    types = {s.feature: s.value_type for s in result.features}
    assert types["credit_amount"] == "INT64"
    assert types["purpose"] == "STRING"
    assert types["monthly_installment"] == "DOUBLE"
    applied = {1: datetime(2023, 3, 7, 5, 49, 7, tzinfo=UTC), 3: datetime(2024, 4, 23, 11, 48, 9, tzinfo=UTC)}
    for row_index, (applicant, values) in enumerate(zip((1, 3), result.values, strict=True)):
        expected = csv.iloc[0 if applicant == 1 else 2]
        for spec, value in zip(result.features, values, strict=True):
            assert value.status == ValueStatus.PRESENT, (applicant, spec.name)
            assert value.event_timestamp == applied[applicant], (applicant, spec.name)
            if spec.feature == "monthly_installment":
                assert value.value == pytest.approx(expected["credit_amount"] / expected["duration_in_month"])
            elif spec.feature in INT_ATTRIBUTES:
                assert type(value.value) is int
                assert value.value == expected[spec.feature]
            else:
                assert type(value.value) is str
                assert value.value == expected[spec.feature]
        assert result.entity_rows[row_index] == {"applicant_id": applicant}


def test_unknown_applicant_is_missing_not_an_error(german: FeatureStoreCore) -> None:
    result = german.online.get_online_features(
        [{"applicant_id": 10_000_001}, {"applicant_id": 2}], feature_service="credit_risk_v1"
    )
    assert {v.status for v in result.values[0]} == {ValueStatus.MISSING}
    assert all(v.value is None and v.event_timestamp is None for v in result.values[0])
    assert {v.status for v in result.values[1]} == {ValueStatus.PRESENT}


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ({"applicant_id": "1"}, "applicant_id"),
        ({"applicant_id": 1.5}, "applicant_id"),
        ({"applicant_id": True}, "applicant_id"),
        ({}, "applicant_id"),
        ({"applicant_id": 1, "customer_id": 2}, "customer_id"),
    ],
)
def test_bad_join_keys_are_invalid_argument_naming_the_key(
    german: FeatureStoreCore, row: dict, key: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        german.online.get_online_features([row], feature_service="credit_risk_v1")
    assert info.value.field == key
    assert key in str(info.value)
    assert info.value.grpc_status_code().name == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"feature_service": "credit_risk_v9"}, "credit_risk_v9"),
        ({"features": ["loan_request:no_such_feature"]}, "loan_request:no_such_feature"),
        ({"features": ["no_such_view:credit_amount"]}, "no_such_view"),
    ],
)
def test_unknown_names_are_not_found_naming_them(german: FeatureStoreCore, kwargs: dict, name: str) -> None:
    with pytest.raises(NotFound) as info:
        german.online.get_online_features([{"applicant_id": 1}], **kwargs)
    assert name in str(info.value)
    assert info.value.grpc_status_code().name == "NOT_FOUND"


def test_labels_never_reach_the_online_store(german: FeatureStoreCore) -> None:
    with pytest.raises(FailedPrecondition, match="credit_label"):
        german.online.get_online_features([{"applicant_id": 1}], features=["credit_label:creditability"])
    with pytest.raises(FailedPrecondition):
        german.online.get_online_features([{"applicant_id": 1}], feature_service="credit_risk_labels_v1")
    with pytest.raises(FailedPrecondition):
        german.writes.materialize(datetime(2022, 1, 1, tzinfo=UTC), datetime.now(UTC), views=["credit_label"])

    # Feast itself, bypassing the core: nothing was ever written for the label view (SQLite has
    # no table for it at all; Redis has no value)
    def raw_read() -> dict:
        return german.store.get_online_features(
            features=["credit_label:creditability"], entity_rows=[{"applicant_id": i} for i in range(1, 11)]
        ).to_dict()

    if german.settings.profile == "embedded":
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            raw_read()
    else:
        assert raw_read()["creditability"] == [None] * 10
    assert "credit_label" not in german.catalogue.describe_feature_service("credit_risk_v1").feature_views


def test_monthly_installment_with_and_without_request_override(german: FeatureStoreCore) -> None:
    rows = [{"applicant_id": 1}, {"applicant_id": 1}, {"applicant_id": 1}, {"applicant_id": 10_000_002}]
    overrides = [
        None,
        {"credit_amount": 6000},
        {"credit_amount": 6000, "duration_in_month": 24},
        {"credit_amount": 1200, "duration_in_month": 12},
    ]
    result = german.online.get_online_features(
        rows, request_values=overrides, feature_service="credit_risk_v1"
    )
    j = [s.feature for s in result.features].index("monthly_installment")
    got = [row[j].value for row in result.values]
    assert got == pytest.approx([1169 / 6, 6000 / 6, 6000 / 24, 100.0])
    # the stored credit_amount is still reported as stored
    k = [s.feature for s in result.features].index("credit_amount")
    assert result.values[1][k].value == 1169
    # without any request values at all (Feast alone would raise RequestDataNotFoundInEntityRowsException)
    alone = german.online.get_online_features(
        [{"applicant_id": 1}], features=["loan_affordability:monthly_installment"]
    )
    assert alone.values[0][0].value == pytest.approx(1169 / 6)
    assert alone.values[0][0].status == ValueStatus.PRESENT
    missing = german.online.get_online_features(
        [{"applicant_id": 10_000_003}], feature_service="credit_risk_v1"
    )
    assert missing.values[0][j].status == ValueStatus.MISSING
    with pytest.raises(InvalidArgument, match="credit_amount"):
        german.online.get_online_features(
            [{"applicant_id": 1}],
            request_values=[{"credit_amount": "lots"}],
            feature_service="credit_risk_v1",
        )
    with pytest.raises(InvalidArgument, match="interest_rate"):
        german.online.get_online_features(
            [{"applicant_id": 1}], request_values=[{"interest_rate": 3}], feature_service="credit_risk_v1"
        )


def test_nulls_survive_materialization(handmade: FeatureStoreCore) -> None:
    """Null single values, and columns null in every row of the batch, come back as NULL_VALUE."""
    result = handmade.online.get_online_features(
        [{"applicant_id": 201}, {"applicant_id": 202}],
        features=[
            "loan_request:credit_amount",
            "loan_request:duration_in_month",
            "loan_request:purpose",
            "loan_request:other_debtors_or_guarantors",
            "loan_request:installment_rate_in_percentage_of_disposable_income",
            "loan_affordability:monthly_installment",
        ],
    )
    by_name = [{s.feature: v for s, v in zip(result.features, row, strict=True)} for row in result.values]
    first, second = by_name
    assert first["credit_amount"].status == ValueStatus.NULL_VALUE
    assert first["credit_amount"].value is None
    assert first["duration_in_month"].value == 12
    assert type(first["duration_in_month"].value) is int
    assert first["purpose"].status == ValueStatus.NULL_VALUE
    assert second["credit_amount"].value == 3000
    assert second["duration_in_month"].status == ValueStatus.NULL_VALUE
    assert second["purpose"].value == "car"
    for row in by_name:
        assert row["other_debtors_or_guarantors"].status == ValueStatus.NULL_VALUE
        assert row["installment_rate_in_percentage_of_disposable_income"].status == ValueStatus.NULL_VALUE
        assert row["monthly_installment"].value is None
        assert row["credit_amount"].event_timestamp is not None


def test_value_older_than_ttl_is_outside_ttl(handmade: FeatureStoreCore) -> None:
    result = handmade.online.get_online_features(
        [{"applicant_id": 105}], features=["loan_request:credit_amount"]
    )
    value = result.values[0][0]
    assert value.status == ValueStatus.OUTSIDE_TTL
    assert value.value == 800


def test_columnar_result_and_bulk_response_match_cell_by_cell(
    handmade: FeatureStoreCore, german: FeatureStoreCore
) -> None:
    """Columns, rows and the gRPC response agree with one another and with a per-cell build.

    Every status in one batch (PRESENT, NULL_VALUE, MISSING, OUTSIDE_TTL, on-demand MISSING), full
    and short names, and a 100-row batch of the German data with unknown applicants mixed in.
    """
    from feature_service import convert

    mixed = handmade.online.get_online_features(
        [{"applicant_id": i} for i in (201, 105, 999_999, 202, 101, 105)],
        features=[
            "loan_request:credit_amount",
            "loan_request:purpose",
            "loan_request:duration_in_month",
            "loan_affordability:monthly_installment",
        ],
    )
    statuses = {v.status for row in mixed.values for v in row}
    assert statuses == set(ValueStatus)
    batch = german.online.get_online_features(
        [{"applicant_id": i} for i in [*range(1, 60), *range(10_000_100, 10_000_110), *range(900, 931)]],
        request_values=[{"credit_amount": 500} if i % 7 == 0 else None for i in range(100)],
        feature_service="credit_risk_v1",
    )
    for result in (mixed, batch):
        for i, row in enumerate(result.values):
            for column, value in zip(result.columns, row, strict=True):
                assert (column.values[i], column.statuses[i], column.timestamps[i]) == (
                    value.value,
                    value.status,
                    value.event_timestamp,
                )
        for full in (False, True):
            bulk = convert.online_response(result, full)
            reference = convert.online_response_per_cell(result, full)
            assert bulk == reference
            wire = bulk.SerializeToString(deterministic=True)
            assert wire == reference.SerializeToString(deterministic=True)


def test_concurrent_reads_from_many_threads_all_succeed(german: FeatureStoreCore) -> None:
    """The servicer runs the core in worker threads: concurrent reads must not break the online store
    (Feast's SQLite store shares one connection across threads; the core serializes its use)."""
    from concurrent.futures import ThreadPoolExecutor

    def read(i: int) -> int:
        rows = [{"applicant_id": 1 + (i + k) % 1000} for k in range(5)]
        result = german.online.get_online_features(rows, feature_service="credit_risk_v1")
        return sum(v.status == ValueStatus.PRESENT for row in result.values for v in row)

    with ThreadPoolExecutor(max_workers=8) as pool:
        present = list(pool.map(read, range(200)))
    assert present == [5 * 19] * 200


def _feast_reference(
    core: FeatureStoreCore, rows: list[int], features: list[str], requests: list, service: str | None = None
) -> list:
    """Feast's own ``FeatureStore.get_online_features`` for the same rows: value and event time per cell."""
    columns: dict[str, list] = {"applicant_id": rows}
    for alias, field in core.layout.request_fields.items():
        columns[field] = [(r or {}).get(alias) for r in requests]
    selection = core.store.get_feature_service(service) if service else features
    response = core.store.get_online_features(
        features=selection, entity_rows=columns, full_feature_names=False
    ).proto
    names = list(response.metadata.feature_names.val)
    out = []
    for ref in features:
        vector = response.results[names.index(ref.split(":")[1])]
        cells = []
        for value, ts in zip(vector.values, vector.event_timestamps, strict=True):
            kind = value.WhichOneof("val")
            plain = None if kind in (None, "null_val") else getattr(value, kind)
            if isinstance(plain, float) and plain != plain:
                plain = None
            stamp = ts.seconds + ts.nanos / 1e9
            cells.append((plain, datetime.fromtimestamp(stamp, UTC) if stamp else None))
        out.append(cells)
    return out


def test_online_read_below_get_online_features_matches_feasts_own_answer(
    handmade: FeatureStoreCore, german: FeatureStoreCore
) -> None:
    """The core reads the online store directly (feature_service.online): every value, and every
    stored event time, equals Feast's own ``get_online_features`` on the same rows, for every
    status (present, null, unknown entity, outside TTL), on-demand outputs with and without
    request overrides, and a 100-row German batch with unknown applicants mixed in."""
    cases = [
        (
            handmade,
            [201, 105, 999_999, 202, 101, 105],
            [
                "loan_request:credit_amount",
                "loan_request:purpose",
                "loan_request:duration_in_month",
                "loan_request:other_debtors_or_guarantors",
                "loan_affordability:monthly_installment",
            ],
            [None, {"duration_in_month": 4}, {"credit_amount": 100}, None, None, None],
        ),
        (
            german,
            [*range(1, 60), *range(10_000_100, 10_000_110), *range(900, 931)],
            [
                f"{s.view}:{s.feature}"
                for s in german.online.get_online_features([], feature_service="credit_risk_v1").features
            ],
            [{"credit_amount": 500} if i % 7 == 0 else None for i in range(100)],
        ),
    ]
    for core, rows, features, requests in cases:
        entity_rows = [{"applicant_id": i} for i in rows]
        ours = core.online.get_online_features(entity_rows, request_values=requests, features=features)
        reference = _feast_reference(core, rows, features, requests)
        if core is german:  # the feature service itself, on both sides
            by_service = core.online.get_online_features(
                entity_rows, request_values=requests, feature_service="credit_risk_v1"
            )
            assert by_service.columns == ours.columns
            assert reference == _feast_reference(core, rows, features, requests, service="credit_risk_v1")
        for spec, column, cells in zip(ours.features, ours.columns, reference, strict=True):
            assert column.values == [v for v, _ in cells], spec.name
            if spec.view != "loan_affordability":  # on-demand outputs carry no stored event time in Feast
                stamped = [
                    ts if status != ValueStatus.MISSING else None
                    for ts, status in zip(column.timestamps, column.statuses, strict=True)
                ]
                assert stamped == [ts for _, ts in cells], spec.name


async def test_async_read_equals_the_blocking_read(
    handmade: FeatureStoreCore, german: FeatureStoreCore
) -> None:
    """``get_online_features_async`` (the servicer's path for small reads) gives the same columns as
    ``get_online_features`` for every status and with request overrides, on both profiles."""
    cases = [
        (
            handmade,
            [201, 105, 999_999, 202, 101],
            {
                "features": [
                    "loan_request:credit_amount",
                    "loan_request:purpose",
                    "loan_affordability:monthly_installment",
                ]
            },
            [None, {"duration_in_month": 4}, {"credit_amount": 100}, None, None],
        ),
        (
            german,
            [1, 2, 10_000_100, 3],
            {"feature_service": "credit_risk_v1"},
            [None, {"credit_amount": 500}, None, None],
        ),
    ]
    for core, ids, selection, requests in cases:
        rows = [{"applicant_id": i} for i in ids]
        blocking = core.online.get_online_features(rows, request_values=requests, **selection)
        non_blocking = await core.online.get_online_features_async(rows, request_values=requests, **selection)
        assert non_blocking == blocking


async def test_async_read_on_redis_needs_no_worker_thread(
    german: FeatureStoreCore, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the selection is resolved, the Redis read runs on the event loop (no thread hop per
    call); SQLite, which has no non-blocking read, still reads in a worker thread."""
    import asyncio as aio

    import feature_service.online_read as read_module

    hops: list[object] = []
    real_to_thread = aio.to_thread

    async def counting(func, *args, **kwargs):
        hops.append(func)
        return await real_to_thread(func, *args, **kwargs)

    await german.online.get_online_features_async([{"applicant_id": 1}], feature_service="credit_risk_v1")
    monkeypatch.setattr(read_module.asyncio, "to_thread", counting)
    for i in range(1, 6):
        result = await german.online.get_online_features_async(
            [{"applicant_id": i}], feature_service="credit_risk_v1"
        )
        assert result.columns[0].statuses == [ValueStatus.PRESENT]
    assert len(hops) == (0 if profile == "real" else 5)


async def test_redis_that_never_answers_is_unavailable_within_the_socket_timeout(
    german: FeatureStoreCore, profile: str
) -> None:
    """A Redis that accepts connections and never answers: the read fails as Unavailable after the
    configured socket timeout (no redis-py retries with backoff), and the event loop keeps running
    meanwhile (a ticker advances); the blocking read fails the same way."""
    import asyncio as aio
    import socket
    import time

    from feature_service.errors import Unavailable

    if profile != "real":
        return  # SQLite has no server to hang; the real profile runs in the same session
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        settings = german.settings.model_copy(
            update={"redis_url": f"redis://127.0.0.1:{port}/0", "redis_socket_timeout_s": 0.3}
        )
        hung = FeatureStoreCore(settings)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await aio.sleep(0.01)
                ticks += 1

        task = aio.create_task(ticker())
        began = time.monotonic()
        with pytest.raises(Unavailable, match="online store unavailable"):
            await hung.online.get_online_features_async(
                [{"applicant_id": 1}], feature_service="credit_risk_v1"
            )
        waited = time.monotonic() - began
        task.cancel()
        began = time.monotonic()
        with pytest.raises(Unavailable, match="online store unavailable"):
            hung.online.get_online_features([{"applicant_id": 1}], feature_service="credit_risk_v1")
        waited_blocking = time.monotonic() - began
    finally:
        silent.close()
    assert 0.25 <= waited < 3, waited
    assert 0.25 <= waited_blocking < 3, waited_blocking
    assert ticks >= 10, ticks  # the loop was not blocked while the read waited


def test_async_read_works_from_one_event_loop_after_another(german: FeatureStoreCore) -> None:
    """redis.asyncio connections belong to the loop that opened them: the core keeps one client per
    event loop, so a second loop (a restarted server, another test) reads as well as the first."""
    import asyncio as aio

    async def read() -> list:
        result = await german.online.get_online_features_async(
            [{"applicant_id": 3}], feature_service="credit_risk_v1"
        )
        return result.columns[0].values

    first = aio.run(read())
    second = aio.run(read())
    assert first == second
    assert first[0] is not None
    if german.online._async_reader.available:  # the first loop's client was dropped with its loop
        assert len(german.online._async_reader._clients) == 1


def test_on_demand_feature_alone_is_stamped_by_its_inputs_and_missing_for_unknown_applicants(
    german: FeatureStoreCore,
) -> None:
    """Requested without its source view, the on-demand value is still computed from the stored
    inputs (read even when not requested), stamped with their event time, and MISSING for an
    applicant no input view holds."""
    both = german.online.get_online_features(
        [{"applicant_id": 1}],
        features=["loan_request:credit_amount", "loan_affordability:monthly_installment"],
    )
    alone = german.online.get_online_features(
        [{"applicant_id": 1}, {"applicant_id": 10_000_123}],
        features=["loan_affordability:monthly_installment"],
    )
    (column,) = alone.columns
    assert column.values[0] == both.columns[1].values[0]
    assert column.timestamps[0] == both.columns[0].timestamps[0] is not None
    assert column.statuses == [ValueStatus.PRESENT, ValueStatus.MISSING]
    assert column.values[1] is None


def test_row_without_a_feature_added_later_is_missing_for_that_feature(handmade: FeatureStoreCore) -> None:
    """A stored row that lacks a feature (the view gained it after the row was written, not yet
    re-materialized) gives MISSING for that feature, not a null."""
    from feature_service import online

    plan = handmade.plans.get(None, ["loan_request:credit_amount", "loan_request:purpose"], online=True)
    rows = online.read_rows(handmade.store, plan.reads, online.entity_keys("applicant_id", [202]))
    ts, values = rows["loan_request"][0]
    assert values is not None
    rows["loan_request"][0] = (ts, {k: v for k, v in values.items() if k != "purpose"})
    result = handmade.online._assemble(plan, [202], rows, {"applicant_id": [202]})
    amount, purpose = result.columns
    assert amount.statuses == [ValueStatus.PRESENT]
    assert purpose.statuses == [ValueStatus.MISSING]
    assert purpose.values == [None]


def test_on_demand_views_this_read_cannot_serve_are_refused_by_name() -> None:
    from types import SimpleNamespace

    from feature_service import online

    assert (
        online.unsupported(SimpleNamespace(mode="python", singleton=False, write_to_online_store=False))
        is None
    )
    assert "pandas" in online.unsupported(SimpleNamespace(mode="pandas", singleton=False))
    assert "singleton" in online.unsupported(SimpleNamespace(mode="python", singleton=True))
    assert "write_to_online_store" in online.unsupported(
        SimpleNamespace(mode="python", singleton=False, write_to_online_store=True)
    )


async def test_aclose_closes_the_loops_redis_connections(german: FeatureStoreCore) -> None:
    """At shutdown the core closes its event-loop client; a later read opens a new one."""
    import asyncio as aio

    loop = aio.get_running_loop()
    await german.online.get_online_features_async([{"applicant_id": 2}], feature_service="credit_risk_v1")
    reader = german.online._async_reader
    had = reader._clients.get(loop)
    await german.aclose()
    assert loop not in reader._clients
    again = await german.online.get_online_features_async(
        [{"applicant_id": 2}], feature_service="credit_risk_v1"
    )
    assert again.columns[0].statuses == [ValueStatus.PRESENT]
    if had is not None:  # Redis: a new client, not the closed one
        assert reader._clients[loop] is not had

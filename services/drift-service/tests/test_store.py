"""The event store on both profiles (SQLite; PostgreSQL behind the ``real`` marker)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from conftest import T0
from drift_service.domain import (
    DatasetRef,
    DriftReport,
    GroundTruthLabel,
    PolicyKind,
    PredictionEvent,
    ReportStatus,
    ServingMode,
    TriggerEvent,
    TriggerReason,
    Window,
    now_utc,
)
from drift_service.store import Store, metadata


def event(
    event_id: str, *, applicant: int = 1, minutes: int = 0, version: int = 1, **kw: object
) -> PredictionEvent:
    return PredictionEvent(
        event_id=event_id,
        applicant_id=applicant,
        features={"credit_amount": 1000 + minutes, "purpose": "car (new)", "age_in_years": None},
        probability_of_default=0.2,
        model_name="credit-risk",
        model_version=version,
        event_time=T0 + timedelta(minutes=minutes),
        **kw,  # type: ignore[arg-type]
    )


def everything(minutes: int = 10_000) -> Window:
    return Window("credit-risk", T0 - timedelta(days=1), T0 + timedelta(minutes=minutes))


def test_redelivered_event_is_stored_once(store: Store) -> None:
    assert store.insert_predictions([event("a"), event("b"), event("a")], now_utc()) == (2, 1)
    assert store.insert_predictions([event("a", minutes=5)], now_utc()) == (0, 1)
    frame = store.window_frame(everything(), 1)
    assert len(frame) == 2
    assert sorted(frame["credit_amount"]) == [1000, 1000]  # the first write wins


def test_restart_loses_nothing(store_factory: Callable[[], Store]) -> None:
    first = store_factory()
    first.insert_predictions([event("a"), event("b", minutes=1)], now_utc())
    first.upsert_labels([GroundTruthLabel(label=1, observed_time=now_utc(), event_id="a")], now_utc())
    report = DriftReport(
        id="r1",
        window=everything(),
        model_version=1,
        status=ReportStatus.OK,
        reference=DatasetRef("file:///ref.parquet", "abc"),
        reference_row_count=5,
        current_row_count=2,
    )
    first.save_drift_report(report)
    trigger = TriggerEvent(
        id="t1",
        trigger_time=now_utc(),
        window=everything(),
        model_name="credit-risk",
        model_version=1,
        reasons=[TriggerReason(PolicyKind.PSI, 0.4, 0.25, "PSI", "credit_amount")],
        drift_report_ids=["r1"],
    )
    first.save_trigger_event(trigger)
    first.close()  # no flush call anywhere: every call committed before returning

    second = store_factory()  # a new store object on the same file / schema
    assert len(second.window_frame(everything(), 1)) == 2
    labelled = second.labelled_frame(everything(), 1)
    assert labelled.set_index("event_id")["label"].to_dict()["a"] == 1
    loaded = second.get_drift_report("r1")
    assert loaded is not None
    assert loaded.reference.digest == "abc"
    assert loaded.window == report.window
    got = second.get_trigger_event("t1")
    assert got is not None
    assert got.reasons[0].feature == "credit_amount"
    assert got.reasons[0].kind is PolicyKind.PSI


def test_label_joined_by_event_id_now_or_later(store: Store) -> None:
    store.insert_predictions([event("a")], now_utc())
    assert store.upsert_labels(
        [
            GroundTruthLabel(label=0, observed_time=now_utc(), event_id="a"),
            GroundTruthLabel(label=1, observed_time=now_utc(), event_id="later"),
        ],
        now_utc(),
    ) == (1, 1)
    store.insert_predictions([event("later", minutes=3)], now_utc())  # the prediction arrives after
    labels = store.labelled_frame(everything(), 1).set_index("event_id")["label"].to_dict()
    assert labels == {"a": 0, "later": 1}


def test_label_sent_again_replaces_the_earlier(store: Store) -> None:
    store.insert_predictions([event("a")], now_utc())
    store.upsert_labels([GroundTruthLabel(label=0, observed_time=now_utc(), event_id="a")], now_utc())
    store.upsert_labels([GroundTruthLabel(label=1, observed_time=now_utc(), event_id="a")], now_utc())
    assert store.labelled_frame(everything(), 1)["label"].tolist() == [1]


def test_label_joined_by_applicant_and_time(store: Store) -> None:
    store.insert_predictions(
        [
            event("old", applicant=7, minutes=0),
            event("new", applicant=7, minutes=10),
            event(
                "shadow", applicant=7, minutes=10, mode=ServingMode.SHADOW, version=2, primary_event_id="new"
            ),
            event("future", applicant=7, minutes=30),
            event("other", applicant=8, minutes=10),
        ],
        now_utc(),
    )
    # application time = event time of "new": the latest returned prediction at or before it
    joined = store.upsert_labels(
        [
            GroundTruthLabel(
                label=1, observed_time=now_utc(), applicant_id=7, application_time=T0 + timedelta(minutes=10)
            )
        ],
        now_utc(),
    )
    assert joined == (1, 0)
    labels = store.labelled_frame(everything(), 1).set_index("event_id")["label"]
    assert labels["new"] == 1
    assert labels.drop("new").isna().all()
    # the shadow prediction of version 2 takes the label of its primary prediction
    assert store.labelled_frame(everything(), 2).set_index("event_id")["label"]["shadow"] == 1


def test_applicant_label_before_its_prediction_is_joined_later(store: Store) -> None:
    at = T0 + timedelta(minutes=5)
    assert store.upsert_labels(
        [GroundTruthLabel(label=1, observed_time=now_utc(), applicant_id=9, application_time=at)], now_utc()
    ) == (0, 1)
    store.insert_predictions([event("p", applicant=9, minutes=5)], now_utc())
    assert store.labelled_frame(everything(), 1)["label"].tolist() == [1]


def test_window_per_version(store: Store) -> None:
    # champion swap at minute 50: version 1 before, version 2 after
    store.insert_predictions([event(f"v1-{i}", minutes=i) for i in range(50)], now_utc())
    store.insert_predictions([event(f"v2-{i}", minutes=50 + i, version=2) for i in range(30)], now_utc())
    straddling = Window("credit-risk", T0 + timedelta(minutes=40), T0 + timedelta(minutes=60))
    assert store.window_versions(straddling) == [1, 2]
    assert len(store.window_frame(straddling, 1)) == 10  # minutes 40..49
    assert len(store.window_frame(straddling, 2)) == 10  # minutes 50..59, end exclusive
    only_v2 = Window("credit-risk", straddling.start, straddling.end, model_version=2)
    assert store.window_versions(only_v2) == [2]
    assert store.model_known("credit-risk", 2)
    assert not store.model_known("credit-risk", 3)


def _report(i: int) -> DriftReport:
    return DriftReport(
        id=f"r{i}",
        window=everything(),
        model_version=1 + i % 2,
        status=ReportStatus.OK,
        reference=DatasetRef("x"),
        reference_row_count=1,
        current_row_count=1,
    )


def test_report_listing_newest_first_with_pages(store: Store) -> None:
    for i in range(5):
        store.save_drift_report(_report(i))
    page, last = store.list_drift_reports(limit=2)
    assert [r.id for r in page] == ["r4", "r3"]
    assert last is not None
    # a report stored between two page calls does not repeat an item (keyset paging)
    store.save_drift_report(_report(5))
    page, last = store.list_drift_reports(before=last, limit=2)
    assert [r.id for r in page] == ["r2", "r1"]
    page, last = store.list_drift_reports(before=last, limit=2)
    assert ([r.id for r in page], last) == (["r0"], None)
    assert [r.id for r in store.list_drift_reports(model_version=2)[0]] == ["r5", "r3", "r1"]
    far = T0 + timedelta(days=400)
    assert store.list_drift_reports(start=far, end=far + timedelta(days=1))[0] == []


def test_ping(store: Store) -> None:
    assert store.ping()


def test_migrations_build_the_declared_tables(store: Store) -> None:
    # The tables are declared twice (store.metadata for the queries, migrations/ as frozen history).
    assert store.schema_differences(metadata) == []


def test_wrong_database_or_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        Store("mysql+pymysql://u@localhost/drift")
    with pytest.raises(ValueError, match="schema must match"):
        Store("postgresql+psycopg://u@localhost/drift", "Drift-Schema")

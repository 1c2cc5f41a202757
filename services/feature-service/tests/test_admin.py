"""Push, materialization, listing and readiness."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from feature_service.core import FeatureStoreCore
from feature_service.domain import PushTarget, ValueStatus
from feature_service.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable


def _demographics(applicant_id: int, age: int | None, at: datetime) -> dict:
    return {
        "applicant_id": applicant_id,
        "age_in_years": age,
        "number_of_people_being_liable_to_provide_maintenance_for": None,
        "event_timestamp": at,
    }


def test_push_online_offline_and_both(handmade: FeatureStoreCore) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    handmade.writes.push(
        "demographics_push", [_demographics(301, 41, now), _demographics(302, None, now)], to="online"
    )
    online = handmade.online.get_online_features(
        [{"applicant_id": 301}, {"applicant_id": 302}],
        features=[
            "demographics:age_in_years",
            "demographics:number_of_people_being_liable_to_provide_maintenance_for",
        ],
    )
    assert [v.value for v in online.values[0]] == [41, None]
    assert [v.status for v in online.values[1]] == [ValueStatus.NULL_VALUE, ValueStatus.NULL_VALUE]
    assert online.values[0][0].event_timestamp == now
    # offline only: the online value does not change, the point-in-time join sees it
    later = now + timedelta(seconds=1)
    handmade.writes.push("demographics_push", [_demographics(301, 42, later)], to=PushTarget.OFFLINE)
    assert (
        handmade.online.get_online_features([{"applicant_id": 301}], features=["demographics:age_in_years"])
        .values[0][0]
        .value
        == 41
    )
    entity = pa.table(
        {
            "applicant_id": pa.array([301, 301], pa.int64()),
            "event_timestamp": pa.array(
                [now + timedelta(milliseconds=500), later + timedelta(seconds=1)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    out = pa.Table.from_batches(
        list(handmade.historical.get_historical_features(entity, features=["demographics:age_in_years"]))
    )
    assert out.column("age_in_years").to_pylist() == [None, 42]  # 41 was pushed online only
    handmade.writes.push("demographics_push", pa.Table.from_pylist([_demographics(303, 50, now)]), to="both")
    assert (
        handmade.online.get_online_features([{"applicant_id": 303}], features=["demographics:age_in_years"])
        .values[0][0]
        .value
        == 50
    )
    # labels arrive later: offline only
    handmade.writes.push(
        "credit_label_push", [{"applicant_id": 303, "creditability": 1, "event_timestamp": now}], to="offline"
    )
    with pytest.raises(FailedPrecondition):
        handmade.writes.push(
            "credit_label_push", [{"applicant_id": 303, "creditability": 1, "event_timestamp": now}]
        )


def test_push_bad_input(handmade: FeatureStoreCore) -> None:
    now = datetime.now(UTC)
    with pytest.raises(NotFound, match="nope_push"):
        handmade.writes.push("nope_push", [_demographics(310, 1, now)])
    row = _demographics(310, 1, now)
    del row["age_in_years"]
    with pytest.raises(InvalidArgument, match="age_in_years"):
        handmade.writes.push("demographics_push", [row])
    with pytest.raises(InvalidArgument):
        handmade.writes.push("demographics_push", [_demographics(310, "old", now)])  # type: ignore[arg-type]


def test_materialize_incremental_picks_up_new_offline_rows(handmade: FeatureStoreCore) -> None:
    # Incremental runs cover (last run's end, end] in event time: a row stamped before the last
    # run (the fixture's) would need a windowed materialize(); this one is stamped after it.
    at = datetime.now(UTC)
    handmade.writes.push(
        "employment_and_residence_push",
        [
            {
                "applicant_id": 320,
                "present_employment_since": "unemployed",
                "job": "unskilled - resident",
                "present_residence_since": 2,
                "housing": "rent",
                "telephone": "none",
                "event_timestamp": at,
            }
        ],
        to="offline",
    )
    handmade.writes.materialize_incremental(at + timedelta(seconds=1), views=["employment_and_residence"])
    got = handmade.online.get_online_features(
        [{"applicant_id": 320}], features=["employment_and_residence:housing"]
    )
    assert got.values[0][0].value == "rent"
    with pytest.raises(NotFound):
        handmade.writes.materialize_incremental(datetime.now(UTC), views=["nope"])


def test_list_and_describe(german: FeatureStoreCore) -> None:
    services = {s.name: s for s in german.catalogue.list_feature_services()}
    assert set(services) == {"credit_risk_v1", "credit_risk_fairness_v1", "credit_risk_labels_v1"}
    model = {f.feature for f in services["credit_risk_v1"].features}
    assert "personal_status_and_sex" not in model
    assert "foreign_worker" not in model
    assert "creditability" not in model
    assert "monthly_installment" in model
    assert len(model) == 19
    assert {f.feature for f in services["credit_risk_fairness_v1"].features} == {
        "personal_status_and_sex",
        "foreign_worker",
    }
    views = {v.name: v for v in german.catalogue.list_feature_views()}
    assert views["credit_label"].online is False
    assert views["credit_label"].ttl is None
    assert views["loan_request"].push_source == "loan_request_push"
    assert views["loan_affordability"].kind == "on_demand"
    assert set(views["loan_affordability"].request_fields) == {
        "requested_credit_amount",
        "requested_duration_in_month",
    }
    assert german.catalogue.describe_feature_view("demographics").features[0].value_type == "INT64"
    with pytest.raises(NotFound, match="nope"):
        german.catalogue.describe_feature_view("nope")
    with pytest.raises(NotFound, match="nope_v1"):
        german.catalogue.describe_feature_service("nope_v1")


async def test_readiness(german: FeatureStoreCore, settings_factory) -> None:
    await german.ready()
    # the probe's online read takes the online store's guard, as every read and write does
    held = threading.Lock()
    german.online_guard = held
    held.acquire()
    try:
        with pytest.raises(Unavailable, match="did not answer within"):
            await german.ready(timeout_s=0.5)  # waits for the guard a reader holds
    finally:
        held.release()
    await german.ready()
    never_applied = FeatureStoreCore(settings_factory("unapplied"))
    try:
        with pytest.raises(Unavailable):
            await never_applied.ready(timeout_s=30)
    finally:
        never_applied.teardown()


def test_feature_store_yaml_for_the_cli(german: FeatureStoreCore) -> None:
    import yaml

    path = german.write_feature_store_yaml()
    config = yaml.safe_load(Path(path).read_text())
    assert config["project"] == german.settings.project
    expected = {"embedded": ("sqlite", "duckdb", "file"), "real": ("redis", "postgres", "sql")}
    assert (
        config["online_store"]["type"],
        config["offline_store"]["type"],
        config["registry"]["registry_type"],
    ) == expected[german.settings.profile]
    if german.settings.profile == "real":
        assert config["offline_store"]["sslmode"] == "disable"

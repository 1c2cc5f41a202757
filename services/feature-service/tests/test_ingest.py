"""Ingestion: schema validation, deterministic ids and times, idempotent writes to the offline store."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import GERMAN_CSV, german_layout, german_product
from feature_service.ingest import IngestError, derive, ingest, read_rows

PRODUCT, LAYOUT = german_product(), german_layout()


def read_applicants(path: Path) -> pd.DataFrame:
    return read_rows(path, PRODUCT, LAYOUT)


#: sha256 of "id|application time|credit_amount|creditability|label time" for applicants 1..5, seed 42.
CHECKSUM_SEED_42 = "da71d4f2ef6a9943040574a4679196e5461a63d937c45e3d63fab5b4e03d16d3"


def _checksum(tables: dict[str, pa.Table]) -> str:
    loans = tables["loan_request"].slice(0, 5).to_pylist()
    labels = tables["credit_label"].slice(0, 5).to_pylist()
    text = "\n".join(
        f"{r['applicant_id']}|{r['event_timestamp'].isoformat()}|{r['credit_amount']}|"
        f"{lab['creditability']}|{lab['event_timestamp'].isoformat()}"
        for r, lab in zip(loans, labels, strict=True)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def test_derivation_is_deterministic_and_seeded() -> None:
    frame = read_applicants(GERMAN_CSV)
    first = derive(frame, PRODUCT, LAYOUT)  # [ingest].seed = 42, [label].maturity_days = 365
    second = derive(frame, PRODUCT, LAYOUT, 42)
    other = derive(frame, PRODUCT, LAYOUT, 7)
    assert _checksum(first) == _checksum(second) == CHECKSUM_SEED_42
    assert _checksum(other) != CHECKSUM_SEED_42
    loans = first["loan_request"]
    assert loans.column("applicant_id").to_pylist() == list(range(1, 1001))
    times = loans.column("event_timestamp").to_pylist()
    assert min(times) >= datetime(2023, 1, 1, tzinfo=UTC)
    assert max(times) < datetime(2025, 1, 1, tzinfo=UTC)
    labels = first["credit_label"]
    assert sum(labels.column("creditability").to_pylist()) == 300  # bad = 1, 300 bad applicants
    assert all(
        lt - at == timedelta(days=365)
        for lt, at in zip(labels.column("event_timestamp").to_pylist(), times, strict=True)
    )


@pytest.mark.parametrize(
    ("drop", "add", "named"),
    [
        ("purpose", None, "purpose"),
        (None, "customer_name", "customer_name"),
    ],
)
def test_schema_errors_name_the_column(tmp_path: Path, drop: str | None, add: str | None, named: str) -> None:
    frame = pd.read_csv(GERMAN_CSV, nrows=5)
    if drop:
        frame = frame.drop(columns=[drop])
    if add:
        frame[add] = "x"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(IngestError, match=named):
        read_applicants(path)


def test_bad_values_are_named(tmp_path: Path) -> None:
    frame = pd.read_csv(GERMAN_CSV, nrows=3, dtype=str)
    frame.loc[1, "age_in_years"] = "old"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(IngestError, match=r"age_in_years.*row 2"):
        read_applicants(tmp_path / "bad.csv")
    frame = pd.read_csv(GERMAN_CSV, nrows=3, dtype=str)
    frame.loc[0, "creditability"] = "maybe"
    frame.to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(IngestError, match="creditability"):
        read_applicants(tmp_path / "bad2.csv")


def test_offline_store_holds_the_derived_rows_and_reingest_never_duplicates(german) -> None:
    """The offline store answers with the seeded ids/times; re-ingesting replaces, never duplicates."""
    entity = pa.table(
        {
            "applicant_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "event_timestamp": pa.array([datetime(2030, 1, 1)] * 5, pa.timestamp("us")),
        }
    )

    def read() -> pa.Table:
        return pa.Table.from_batches(
            list(
                german.historical.get_historical_features(
                    entity, features=["loan_request:credit_amount", "credit_label:creditability"]
                )
            )
        )

    before = read()
    assert before.column("credit_amount").to_pylist() == [1169, 5951, 2096, 7882, 4870]
    assert before.column("creditability").to_pylist() == [0, 1, 0, 0, 1]
    ingest(GERMAN_CSV, german.settings, apply=False)
    after = read()
    assert after.equals(before)
    assert _offline_rows(german.settings, "applicant_loan_request") == 1000
    assert _offline_rows(german.settings, "applicant_credit_label") == 1000


def _offline_rows(settings, table: str) -> int:
    if settings.profile == "real":
        import psycopg

        with psycopg.connect(settings.postgres_conninfo()) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{settings.offline_schema}"."{table}"').fetchone()
            assert row is not None
            return int(row[0])
    import pyarrow.parquet as pq

    return pq.read_metadata(settings.resolved_data_dir / "offline" / f"{table}.parquet").num_rows


def test_cli_reports_schema_errors_and_ingests(tmp_path: Path, monkeypatch, capsys) -> None:
    from feature_service.ingest import main

    monkeypatch.setenv("FEATURE_SERVICE_DATA_DIR", str(tmp_path / "store"))
    pd.read_csv(GERMAN_CSV, nrows=2).drop(columns=["job"]).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["--csv", str(tmp_path / "bad.csv"), "--no-apply"]) == 2
    assert "job" in capsys.readouterr().err
    assert main(["--csv", str(GERMAN_CSV), "--no-apply", "--seed", "42"]) == 0
    assert "ingested 1000 rows of product german_credit" in capsys.readouterr().out
    assert (tmp_path / "store" / "offline" / "applicant_credit_label.parquet").exists()


def test_settings_from_environment(monkeypatch) -> None:
    from feature_service.settings import FeatureServiceSettings

    monkeypatch.setenv("FEATURE_SERVICE_PROFILE", "real")
    monkeypatch.setenv(
        "FEATURE_SERVICE_POSTGRES_DSN", "postgresql://alice:pw@db.example:6543/features?sslmode=require"
    )
    monkeypatch.setenv("FEATURE_SERVICE_REDIS_URL", "redis://cache.example:6380/2")
    settings = FeatureServiceSettings()
    params = settings.postgres_params()
    assert (params["host"], params["port"], params["database"], params["user"]) == (
        "db.example",
        6543,
        "features",
        "alice",
    )
    assert params["sslmode"] == "require"
    connection = settings.redis_connection_string()
    assert connection == "cache.example:6380,db=2,socket_timeout=2.0,socket_connect_timeout=2.0,retry=null"
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string(connection)  # Feast's own parser
    assert nodes == [{"host": "cache.example", "port": "6380"}]
    assert params == {"db": 2, "socket_timeout": 2.0, "socket_connect_timeout": 2.0, "retry": None}
    assert settings.for_project("credit_risk").offline_schema == "feast_credit_risk"
    assert settings.resolved_data_dir.parts[-3:] == (".run", "real", "feature-store")
    with pytest.raises(ValueError, match="project"):
        FeatureServiceSettings(project="Bad-Name")


def test_a_bad_file_exits_2_naming_columns_types_and_rows_and_writes_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from feature_service.ingest import main

    monkeypatch.setenv("FEATURE_SERVICE_DATA_DIR", str(tmp_path / "store"))
    frame = pd.read_csv(GERMAN_CSV, nrows=12, dtype=str)
    frame.loc[[0, 2, 3, 5, 7, 9, 11], "duration_in_month"] = "long"
    frame.loc[4, "creditability"] = "maybe"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["--csv", str(tmp_path / "bad.csv"), "--no-apply"]) == 2
    err = capsys.readouterr().err
    assert "column 'duration_in_month' (expected an integer within int64): 7 bad value(s)" in err
    assert "row 1: 'long', row 3: 'long', row 4: 'long', row 6: 'long', row 8: 'long'" in err
    assert "row 10" not in err  # the first 5 bad rows only
    assert "column 'creditability' (expected one of ['bad', 'good']): 1 bad value(s); row 5: 'maybe'" in err
    assert not list((tmp_path / "store").rglob("*.parquet"))  # validated whole before any write


def test_missing_and_extra_columns_are_named_together(tmp_path: Path) -> None:
    frame = pd.read_csv(GERMAN_CSV, nrows=2).drop(columns=["job", "housing"])
    frame["shoe_size"] = 42
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        IngestError,
        match=r"missing column\(s\) \['housing', 'job'\]|missing column\(s\) \['job', 'housing'\]",
    ) as exc:
        read_applicants(tmp_path / "bad.csv")
    assert "unexpected column(s) ['shoe_size']" in str(exc.value)

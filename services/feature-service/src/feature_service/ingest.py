"""Ingestion of the German credit data (or any file of its schema) into the offline store.

Deterministic derivation (issue 3, default scheme):

* ``applicant_id`` = int64 row number from 1, in file order;
* application time drawn with ``numpy.random.default_rng(seed)`` uniformly over
  [2023-01-01, 2025-01-01) UTC, whole seconds; it is the event and created time of every
  attribute row;
* label ``creditability``: bad = 1 (the positive class), good = 0; known ``label_delay_days``
  (365) after the application: that is its event and created time, in the label table, which also
  carries the application time as ``application_timestamp`` (for ``LabelledEntities``).

Re-running with the same input and seed replaces the same rows, never duplicates them. Then the
Feast repository is applied.

CLI::

    python -m feature_service.ingest --csv data/german_credit.csv [--seed 42] [--no-apply]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feature_service.offline import TIMESTAMP_TYPE, offline_writer
from feature_service.schema import (
    ALL_VIEWS,
    APPLICATION_TIMESTAMP,
    ATTRIBUTE_COLUMNS,
    CREDIT_LABEL,
    CSV_COLUMNS,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    INT_ATTRIBUTES,
    LABEL,
    ViewSpec,
)
from feature_service.settings import FeatureServiceSettings

APPLICATION_START = datetime(2023, 1, 1, tzinfo=UTC)
APPLICATION_END = datetime(2025, 1, 1, tzinfo=UTC)  # exclusive: the window is 2023-01-01..2024-12-31
LABEL_CODES = {"bad": 1, "good": 0}


class IngestError(ValueError):
    """The input file does not have the German credit schema; the message names the column(s)."""


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion wrote.

    Attributes:
        rows: applicants ingested.
        tables: rows per feature view table.
        first_application / last_application: range of the drawn application times.
    """

    rows: int
    tables: dict[str, int]
    first_application: datetime
    last_application: datetime


def read_applicants(path: Path) -> pd.DataFrame:
    """Read and validate a file of the German credit schema (CSV, or Parquet by suffix).

    Returns:
        The 21 columns in file order; integer attributes as nullable ``Int64``, categoricals as
        strings, the label as Int64 (bad = 1, good = 0; empty = null).

    Raises:
        IngestError: missing or extra columns (named), a non-integer value in an integer column,
            or a label other than good / bad.
    """
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        frame = frame.astype({c: "string" for c in frame.columns if c not in INT_ATTRIBUTES})
    else:
        frame = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
    columns = list(frame.columns)
    missing = [c for c in CSV_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in CSV_COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise IngestError(f"{path}: " + "; ".join(parts))
    out = pd.DataFrame(index=frame.index)
    for column in ATTRIBUTE_COLUMNS:
        if column in INT_ATTRIBUTES:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column].notna() & (numbers.isna() | (numbers % 1 != 0))
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
                raise IngestError(
                    f"{path}: column '{column}' row {row}: {frame[column].iloc[row - 1]!r} is not an integer"
                )
            out[column] = numbers.astype("Int64")
        else:
            out[column] = frame[column].astype("string")
    labels = frame[LABEL].str.strip().str.lower()
    unknown = labels.notna() & ~labels.isin(list(LABEL_CODES))
    if unknown.any():
        raise IngestError(
            f"{path}: column '{LABEL}' must be 'good' or 'bad', found {labels[unknown].iloc[0]!r}"
        )
    out[LABEL] = labels.map(LABEL_CODES, na_action="ignore").astype("Int64")
    return out.reset_index(drop=True)


def application_times(n: int, seed: int) -> pd.Series:
    """``n`` application times, uniform over [2023-01-01, 2025-01-01) UTC in whole seconds, seeded."""
    span = int((APPLICATION_END - APPLICATION_START).total_seconds())
    offsets = np.random.default_rng(seed).integers(0, span, size=n, dtype=np.int64)
    return pd.Series(
        pd.Timestamp(APPLICATION_START) + pd.to_timedelta(offsets, unit="s"), name=EVENT_TIMESTAMP
    )


def derive(frame: pd.DataFrame, seed: int, label_delay: timedelta) -> dict[str, pa.Table]:
    """Derive ids and times and split ``frame`` into one Arrow table per feature view."""
    n = len(frame)
    ids = pd.Series(np.arange(1, n + 1, dtype=np.int64), name=ENTITY_KEY)
    applied = application_times(n, seed)
    tables: dict[str, pa.Table] = {}
    for view in ALL_VIEWS:
        at = applied + label_delay if view is CREDIT_LABEL else applied
        extras = {APPLICATION_TIMESTAMP: _utc_array(applied)} if view is CREDIT_LABEL else {}
        tables[view.name] = _view_table(view, ids, frame, at, extras)
    return tables


def _utc_array(times: pd.Series) -> pa.Array:
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return pa.array(naive, pa.timestamp("us")).cast(TIMESTAMP_TYPE)


def _view_table(
    view: ViewSpec, ids: pd.Series, frame: pd.DataFrame, at: pd.Series, extras: dict[str, pa.Array]
) -> pa.Table:
    kinds = {"int": pa.int64(), "string": pa.string()}
    arrays = [pa.array(ids.to_numpy(), pa.int64())]
    for name, kind in view.features:
        arrays.append(pa.Array.from_pandas(frame[name], type=kinds[kind]))
    arrays += [extras[name] for name, _ in view.extras]
    ts = _utc_array(at)
    arrays += [ts, ts]
    return pa.Table.from_arrays(arrays, names=view.columns)


def ingest(path: Path, settings: FeatureServiceSettings, *, apply: bool = True) -> IngestResult:
    """Load ``path`` into the configured offline store (replacing earlier rows) and apply the repo.

    Args:
        path: CSV (or Parquet) file of the German credit schema.
        settings: the service settings (profile, stores, seed, label delay).
        apply: also apply the Feast repository (registry + online store tables).

    Returns:
        What was written.

    Raises:
        IngestError: the file does not have the expected schema.
    """
    frame = read_applicants(path)
    tables = derive(frame, settings.seed, timedelta(days=settings.label_delay_days))
    writer = offline_writer(settings)
    for view in ALL_VIEWS:
        writer.replace(view, tables[view.name])
    if apply:
        from feature_service.core import FeatureStoreCore

        FeatureStoreCore(settings).apply()
    applied = tables[ALL_VIEWS[0].name].column(EVENT_TIMESTAMP)
    return IngestResult(
        rows=len(frame),
        tables={name: t.num_rows for name, t in tables.items()},
        first_application=pc.min(applied).as_py(),
        last_application=pc.max(applied).as_py(),
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m feature_service.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--csv", type=Path, required=True, help="file of the German credit schema")
    parser.add_argument("--seed", type=int, default=None, help="seed of the application times (default 42)")
    parser.add_argument("--profile", choices=["embedded", "real"], default=None)
    parser.add_argument("--no-apply", action="store_true", help="write the offline store only")
    parser.add_argument(
        "--write-yaml", action="store_true", help="also write feature_store.yaml for the feast CLI"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.profile is not None:
        overrides["profile"] = args.profile
    settings = FeatureServiceSettings(**overrides)  # type: ignore[arg-type]
    try:
        result = ingest(args.csv, settings, apply=not args.no_apply)
    except (IngestError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write_yaml:
        from feature_service.sources import write_feature_store_yaml

        print(f"wrote {write_feature_store_yaml(settings)}")
    print(
        f"ingested {result.rows} applicants ({settings.profile} profile, project {settings.project}, "
        f"seed {settings.seed}); applications {result.first_application:%Y-%m-%d}.."
        f"{result.last_application:%Y-%m-%d}; tables {result.tables}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

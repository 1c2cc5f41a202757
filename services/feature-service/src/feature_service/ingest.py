"""Ingestion of a product's raw file (CSV, or Parquet by suffix) into the offline store.

The product's ``[ingest]`` section says how (``creditrisk_products.IngestSection``):

* the file holds one column per feature of every feature view (same names), the label source
  column, and, when named, the entity key and application time columns; nothing else;
* the entity key: the file's column, or ``row_number``: int64 row number from 1, in file order;
* the application time: the file's column (ISO 8601; naive = UTC), or drawn with
  ``numpy.random.default_rng(seed)`` uniformly over ``[start, end)`` UTC in whole seconds
  (``[ingest.application_time_drawn]``); it is the event and created time of every feature row;
* the label: ``label_codes`` maps the raw value (stripped, case-insensitive) to 1 (the positive
  class) or 0, or the file holds 1 / 0 already; empty = unknown. It is known
  ``[label].maturity_days`` after the application: that is its event and created time in the label
  table, which also carries the application time (``[label].application_time_column``).

The whole file is validated before anything is written: a bad file writes nothing. Re-running with
the same input and seed replaces the same rows, never duplicates them. Then the Feast repository is
applied.

CLI::

    python -m feature_service.ingest --csv <file> [--product NAME] [--seed N] [--no-apply]
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
from creditrisk_products import Product, ProductError, UnknownProduct

from feature_service.offline import ARROW_KINDS, TIMESTAMP_TYPE, offline_writer
from feature_service.schema import EVENT_TIMESTAMP, Kind, ProductLayout, ViewSpec
from feature_service.settings import FeatureServiceSettings

ROW_NUMBER = "row_number"
#: Bad rows named per column in an error.
MAX_BAD_ROWS = 5


class IngestError(ValueError):
    """The input file does not fit the product; the message names every column at fault."""


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion wrote.

    Attributes:
        rows: entities ingested.
        tables: rows per feature view table.
        first_application / last_application: range of the application times.
    """

    rows: int
    tables: dict[str, int]
    first_application: datetime
    last_application: datetime


def expected_columns(product: Product, layout: ProductLayout) -> list[str]:
    """The file's columns: key and time (when named), every view's features, the label source."""
    ing = product.ingest
    columns: dict[str, None] = {}
    if ing.entity_key != ROW_NUMBER:
        columns[ing.entity_key] = None
    if ing.application_time:
        columns[ing.application_time] = None
    for view in layout.views:
        for name in view.feature_names:
            if not (view is layout.label_view and name == layout.label_column):
                columns[name] = None
    columns[ing.label_source or layout.label_column] = None
    return list(columns)


#: Application times accepted (pandas' nanosecond range is 1677-09-21..2262-04-11; a label's time
#: adds up to 100 years of maturity).
TIME_FLOOR = datetime(1900, 1, 1, tzinfo=UTC)
TIME_CEILING = datetime(2150, 1, 1, tzinfo=UTC)


def _bad(column: str, what: str, frame: pd.DataFrame, mask: pd.Series) -> str:
    rows = np.flatnonzero(mask.to_numpy())[:MAX_BAD_ROWS]
    shown = ", ".join(f"row {i + 1}: {frame[column].iloc[i]!r}" for i in rows)
    return f"column '{column}' ({what}): {int(mask.sum())} bad value(s); {shown}"


def _instant(value: object) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive = UTC); None if null or not ISO 8601."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse(
    frame: pd.DataFrame, column: str, kind: Kind, problems: list[str], required: bool = False
) -> pd.Series:
    raw = frame[column]
    if kind in ("int", "float"):
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & numbers.isna()
        if kind == "int":
            # exact decimal text only: a float64 parse of a 20-digit value would wrap silently
            digits = raw.str.strip().str.fullmatch(r"[+-]?\d{1,19}(\.0*)?").fillna(False).astype(bool)
            ints = pd.Series(
                [int(v.strip().split(".")[0]) if ok else None for v, ok in zip(raw, digits, strict=True)],
                index=raw.index,
                dtype=object,
            )
            fits = ints.map(lambda v: v is not None and -(2**63) <= v < 2**63)
            bad = raw.notna() & ~fits
            out = pd.array([v if ok else None for v, ok in zip(ints, fits, strict=True)], dtype="Int64")
            out = pd.Series(out, index=raw.index)
        else:
            bad |= raw.notna() & ~np.isfinite(numbers.fillna(0.0))
            out = numbers.where(~bad).astype("Float64")
    elif kind == "bool":
        lowered = raw.str.strip().str.lower()
        mapped = lowered.map({"true": True, "false": False, "1": True, "0": False}, na_action="ignore")
        bad = raw.notna() & mapped.isna()
        out = mapped.astype("boolean")
    elif kind == "timestamp":
        # each value with its own offset (one format inferred for the column would read a naive
        # value after one with an offset in that offset)
        parsed = [_instant(v) for v in raw.astype(object).where(raw.notna(), None)]
        parsed = [p if p is not None and TIME_FLOOR <= p < TIME_CEILING else None for p in parsed]
        bad = raw.notna() & pd.Series([p is None for p in parsed], index=raw.index)
        out = pd.Series(pd.to_datetime([p for p in parsed], utc=True), index=raw.index)
    else:
        bad = pd.Series(False, index=raw.index)
        out = raw.astype("string")
    if required and kind == "string":
        blank = raw.notna() & (raw.str.strip() == "")
        if blank.any():
            problems.append(_bad(column, "required, not blank", frame, blank))
    words = {
        "int": "an integer within int64",
        "float": "a finite number",
        "bool": "true/false",
        "timestamp": f"an ISO 8601 time in [{TIME_FLOOR:%Y-%m-%d}, {TIME_CEILING:%Y-%m-%d})",
    }
    if bad.any():
        problems.append(_bad(column, f"expected {words.get(kind, kind)}", frame, bad))
    if required and raw.isna().any():
        problems.append(_bad(column, "required", frame, raw.isna()))
    return out


def read_rows(path: Path, product: Product, layout: ProductLayout) -> pd.DataFrame:
    """Read and validate a product's raw file (CSV, or Parquet by suffix), every row at once.

    Returns:
        One column per feature (typed: ``Int64``, ``Float64``, ``boolean``, ``string``), the label
        (``Int64`` 1 / 0, null = unknown) under the label column's name, the entity key under the
        join key's name when the file holds it, and the application time (UTC) under the label
        view's application time column when the file holds it.

    Raises:
        IngestError: missing or extra columns (named), or bad values: each column with its expected
            type and its first bad rows (1-based, up to 5).
        FileNotFoundError: no such file.
    """
    if path.is_dir():
        raise IngestError(f"{path}: a folder, not a file")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            frame = frame.astype({c: "string" for c in frame.columns})
        else:
            frame = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""], encoding="utf-8")
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError, OSError, pa.ArrowException) as exc:
        # pandas' EmptyDataError and ParserError are ValueErrors
        raise IngestError(
            f"{path}: not a readable {'Parquet' if path.suffix == '.parquet' else 'UTF-8 CSV'} "
            f"file: {type(exc).__name__}: {exc}"
        ) from None
    if frame.empty:
        raise IngestError(f"{path} (product {product.name}): no rows (nothing written)")
    expected = expected_columns(product, layout)
    columns = list(frame.columns)
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise IngestError(f"{path} (product {product.name}, {product.file}): " + "; ".join(parts))
    problems: list[str] = []
    out = pd.DataFrame(index=frame.index)
    ing = product.ingest
    if ing.entity_key != ROW_NUMBER:
        out[layout.entity_key] = _parse(frame, ing.entity_key, layout.entity_kind, problems, required=True)
    if ing.application_time:
        out[layout.application_time_column] = _parse(
            frame, ing.application_time, "timestamp", problems, required=True
        )
    for view in layout.views:
        for name, kind in view.features:
            if not (view is layout.label_view and name == layout.label_column):
                out[name] = _parse(frame, name, kind, problems)
    source = ing.label_source or layout.label_column
    raw = frame[source].str.strip().str.lower()
    if ing.label_codes:
        codes = {k.strip().lower(): v for k, v in ing.label_codes.items()}
        unknown = raw.notna() & ~raw.isin(list(codes))
        if unknown.any():
            problems.append(_bad(source, f"expected one of {sorted(codes)}", frame, unknown))
        out[layout.label_column] = raw.map(codes, na_action="ignore").astype("Int64")
    else:
        unknown = raw.notna() & ~raw.isin(["0", "1"])
        if unknown.any():
            problems.append(
                _bad(source, "expected 0 or 1; map text values with [ingest].label_codes", frame, unknown)
            )
        out[layout.label_column] = pd.to_numeric(raw.where(~unknown), errors="coerce").astype("Int64")
    problems += _repeated_keys(out, layout)
    if problems:
        raise IngestError(f"{path} (product {product.name}): " + "\n  ".join(problems))
    return out.reset_index(drop=True)


def _repeated_keys(out: pd.DataFrame, layout: ProductLayout) -> list[str]:
    """A key given twice at the same application time (or twice at all, when times are drawn) would
    make two rows for one application, of which a point-in-time join keeps either: refused."""
    key = layout.entity_key
    if key not in out.columns:
        return []
    by = [key, layout.application_time_column] if layout.application_time_column in out.columns else [key]
    repeated = out.duplicated(subset=by, keep=False)
    if not repeated.any():
        return []
    rows = [str(int(i) + 1) for i in np.flatnonzero(repeated.to_numpy())[:5]]
    what = "key and application time" if len(by) == 2 else "key (application times are drawn)"
    return [f"{int(repeated.sum())} row(s) repeat a {what}: rows {', '.join(rows)}"]


def application_times(n: int, seed: int, start: datetime, end: datetime) -> pd.Series:
    """``n`` application times, uniform over ``[start, end)`` UTC in whole seconds, seeded."""
    span = int((end - start).total_seconds())
    offsets = np.random.default_rng(seed).integers(0, span, size=n, dtype=np.int64)
    return pd.Series(pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s"), name=EVENT_TIMESTAMP)


def _window(product: Product) -> tuple[datetime, datetime]:
    drawn = product.ingest.application_time_drawn
    assert drawn is not None
    return (
        datetime(drawn.start.year, drawn.start.month, drawn.start.day, tzinfo=UTC),
        datetime(drawn.end.year, drawn.end.month, drawn.end.day, tzinfo=UTC),
    )


def derive(
    frame: pd.DataFrame, product: Product, layout: ProductLayout, seed: int | None = None
) -> dict[str, pa.Table]:
    """Keys and times of :func:`read_rows`' frame, split into one Arrow table per feature view.

    Args:
        frame: the validated rows.
        product / layout: the product and its layout.
        seed: seed of drawn application times (default ``[ingest].seed``).
    """
    n = len(frame)
    key = layout.entity_key
    ids = frame[key] if key in frame.columns else pd.Series(np.arange(1, n + 1, dtype=np.int64), name=key)
    app_col = layout.application_time_column
    if app_col in frame.columns:
        applied = pd.Series(frame[app_col].dt.tz_convert("UTC").dt.floor("us"), name=EVENT_TIMESTAMP)
    else:
        start, end = _window(product)
        applied = application_times(n, product.ingest.seed if seed is None else seed, start, end)
    label_at = applied + timedelta(days=product.label.maturity_days)
    tables: dict[str, pa.Table] = {}
    known = frame[layout.label_column].notna().to_numpy()
    for view in layout.views:
        if view is layout.label_view:
            # An unknown outcome is no label row: a label row says the outcome was known then.
            tables[view.name] = _view_table(
                view,
                ids[known].reset_index(drop=True),
                frame[known].reset_index(drop=True),
                label_at[known].reset_index(drop=True),
                {app_col: _utc_array(applied[known].reset_index(drop=True))},
            )
        else:
            tables[view.name] = _view_table(view, ids, frame, applied, {})
    return tables


def _utc_array(times: pd.Series) -> pa.Array:
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return pa.array(naive, pa.timestamp("us")).cast(TIMESTAMP_TYPE)


def _view_table(
    view: ViewSpec, ids: pd.Series, frame: pd.DataFrame, at: pd.Series, extras: dict[str, pa.Array]
) -> pa.Table:
    arrays = [pa.Array.from_pandas(ids, type=ARROW_KINDS[view.key_kind])]
    for name, kind in view.features:
        arrays.append(pa.Array.from_pandas(frame[name], type=ARROW_KINDS[kind]))
    arrays += [extras[name] for name, _ in view.extras]
    ts = _utc_array(at)
    arrays += [ts, ts]
    return pa.Table.from_arrays(arrays, names=view.columns)


def ingest(
    path: Path,
    settings: FeatureServiceSettings,
    *,
    apply: bool = True,
    product: Product | None = None,
    seed: int | None = None,
) -> IngestResult:
    """Load ``path`` into the configured offline store (replacing earlier rows) and apply the repo.

    Args:
        path: CSV (or Parquet) file of the product's raw schema.
        settings: the service settings (profile, stores).
        apply: also apply the Feast repository (registry + online store tables).
        product: the product; default the only one of ``settings.catalog()``.
        seed: seed of drawn application times (default ``[ingest].seed``).

    Returns:
        What was written.

    Raises:
        IngestError: the file does not fit the product (nothing written).
        ProductError: the product is invalid.
    """
    from feature_service.core import FeatureStoreCore

    # the core parses the product's repository once; its layout and project serve the ingest too
    core = FeatureStoreCore(settings, product or settings.catalog().get())
    product, layout, settings = core.product, core.layout, core.settings
    frame = read_rows(path, product, layout)
    tables = derive(frame, product, layout, seed)
    writer = offline_writer(settings)
    for view in layout.views:
        writer.replace(view, tables[view.name])
    if apply:
        core.apply()
    # every non-label view has a row per application, stamped with its time
    first = next(v for v in layout.views if v is not layout.label_view)
    applied = tables[first.name].column(EVENT_TIMESTAMP)
    return IngestResult(
        rows=len(frame),
        tables={name: t.num_rows for name, t in tables.items()},
        first_application=pc.min(applied).as_py(),
        last_application=pc.max(applied).as_py(),
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2: bad file or product, nothing written)."""
    parser = argparse.ArgumentParser(
        prog="python -m feature_service.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--csv", type=Path, required=True, help="the product's raw file (CSV or .parquet)")
    parser.add_argument("--product", default="", help="the product (default: the only one configured)")
    parser.add_argument("--seed", type=int, default=None, help="seed of drawn application times")
    parser.add_argument("--profile", choices=["embedded", "real"], default=None)
    parser.add_argument("--no-apply", action="store_true", help="write the offline store only")
    parser.add_argument(
        "--write-yaml", action="store_true", help="also write feature_store.yaml for the feast CLI"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.profile is not None:
        overrides["profile"] = args.profile
    settings = FeatureServiceSettings.load_or_exit(**overrides)
    try:
        product = settings.catalog().get(args.product)
        result = ingest(args.csv, settings, apply=not args.no_apply, product=product, seed=args.seed)
    except (IngestError, ProductError, UnknownProduct, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = settings.for_project(product.product.feast_project)
    if args.write_yaml:
        from feature_service.sources import write_feature_store_yaml

        print(f"wrote {write_feature_store_yaml(settings)}")
    seed = product.ingest.seed if args.seed is None else args.seed
    times = f"seed {seed}" if product.ingest.application_time_drawn else "times from the file"
    print(
        f"ingested {result.rows} rows of product {product.name} ({settings.profile} profile, project "
        f"{settings.feast_project}, {times}); applications {result.first_application:%Y-%m-%d}.."
        f"{result.last_application:%Y-%m-%d}; tables {result.tables}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Writers of the offline tables: Parquet files (embedded) or PostgreSQL tables via COPY (real).

Ingestion replaces a table (idempotent: re-running never duplicates); pushes append. Feast 0.67's
PostgreSQL offline store has no ``offline_write_batch``, so both operations go through COPY here;
on the embedded profile the Parquet file is rewritten atomically (write to a temporary file, then
``os.replace``). COPY, not ``pandas.to_sql``, which is far slower (docs/design.md, "Measured facts").
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import ClassVar, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feature_service.schema import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ViewSpec
from feature_service.settings import FeatureServiceSettings

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
#: Arrow type of each column kind.
ARROW_KINDS: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": TIMESTAMP_TYPE,
}


def arrow_schema(view: ViewSpec) -> pa.Schema:
    """Arrow schema of ``view``'s offline table: the key (int64 or string), typed features, UTC timestamps."""
    kinds = ARROW_KINDS
    return pa.schema(
        [pa.field(view.key, kinds[view.key_kind], nullable=False)]
        + [pa.field(name, kinds[kind]) for name, kind in view.features]
        + [pa.field(name, kinds[kind]) for name, kind in view.extras]
        + [
            pa.field(EVENT_TIMESTAMP, TIMESTAMP_TYPE, nullable=False),
            pa.field(CREATED_TIMESTAMP, TIMESTAMP_TYPE),
        ]
    )


def conform(view: ViewSpec, table: pa.Table) -> pa.Table:
    """Select and cast ``table`` to ``view``'s offline schema (timestamps converted to UTC).

    Extra columns (``view.extras``) that are absent become nulls.

    Raises:
        ValueError: a column is missing (named in the message) or cannot be cast.
    """
    schema = arrow_schema(view)
    for name, _ in view.extras:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"rows for feature view '{view.name}' lack column(s) {missing}")
    columns = []
    for f in schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
        columns.append(col.cast(f.type))
    return pa.Table.from_arrays(columns, schema=schema)


class OfflineWriter(Protocol):
    """Writes rows of a feature view's offline table."""

    def replace(self, view: ViewSpec, table: pa.Table) -> None:
        """Replace every row of ``view``'s table with ``table``."""
        ...

    def append(self, view: ViewSpec, table: pa.Table) -> None:
        """Append ``table`` to ``view``'s table."""
        ...

    def drop_all(self) -> None:
        """Remove every table this writer owns (tests, teardown)."""
        ...


class ParquetWriter:
    """One Parquet file per view under ``offline_dir``."""

    def __init__(self, offline_dir: Path) -> None:
        self.offline_dir = offline_dir

    def path(self, view: ViewSpec) -> Path:
        """Parquet file of ``view``."""
        return self.offline_dir / f"{view.table}.parquet"

    def _write(self, view: ViewSpec, table: pa.Table) -> None:
        self.offline_dir.mkdir(parents=True, exist_ok=True)
        target = self.path(view)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)

    def replace(self, view: ViewSpec, table: pa.Table) -> None:
        self._write(view, conform(view, table))

    def append(self, view: ViewSpec, table: pa.Table) -> None:
        new = conform(view, table)
        target = self.path(view)
        if target.exists():
            new = pa.concat_tables([pq.read_table(target, schema=arrow_schema(view)), new])
        self._write(view, new)

    def drop_all(self) -> None:
        if self.offline_dir.exists():
            for file in self.offline_dir.glob("*.parquet"):
                file.unlink()


class PostgresWriter:
    """One table per view in the offline schema, loaded with COPY (CSV) through psycopg 3."""

    _SQL_TYPES: ClassVar[dict[str, str]] = {
        "int": "bigint",
        "float": "double precision",
        "bool": "boolean",
        "string": "text",
        "timestamp": "timestamptz",
    }

    def __init__(self, conninfo: str, schema: str) -> None:
        self.conninfo = conninfo
        self.schema = schema

    def _ddl(self, view: ViewSpec) -> str:
        cols = [f'"{view.key}" {self._SQL_TYPES[view.key_kind]} NOT NULL']
        cols += [f'"{name}" {self._SQL_TYPES[kind]}' for name, kind in (*view.features, *view.extras)]
        cols += [f'"{EVENT_TIMESTAMP}" timestamptz NOT NULL', f'"{CREATED_TIMESTAMP}" timestamptz']
        table = f'"{self.schema}"."{view.table}"'
        return (
            f'CREATE SCHEMA IF NOT EXISTS "{self.schema}";'
            f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)});"
            f'CREATE INDEX IF NOT EXISTS "{view.table}_key_ts" ON {table} '
            f'("{view.key}", "{EVENT_TIMESTAMP}")'
        )

    def _copy(self, view: ViewSpec, table: pa.Table, truncate: bool) -> None:
        import psycopg

        data = conform(view, table)
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
        columns = ", ".join(f'"{c}"' for c in view.columns)
        with psycopg.connect(self.conninfo) as conn:
            conn.execute(self._ddl(view))
            if truncate:
                conn.execute(f'TRUNCATE "{self.schema}"."{view.table}"')
            with (
                conn.cursor() as cur,
                cur.copy(
                    f'COPY "{self.schema}"."{view.table}" ({columns}) '
                    "FROM STDIN WITH (FORMAT csv, HEADER true)"
                ) as copy,
            ):
                copy.write(buffer.getvalue())
            # one transaction: readers never see the truncated-but-empty table

    def replace(self, view: ViewSpec, table: pa.Table) -> None:
        self._copy(view, table, truncate=True)

    def append(self, view: ViewSpec, table: pa.Table) -> None:
        self._copy(view, table, truncate=False)

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def offline_writer(settings: FeatureServiceSettings) -> ParquetWriter | PostgresWriter:
    """The offline writer of the configured profile."""
    if settings.profile == "real":
        return PostgresWriter(settings.postgres_conninfo(), settings.offline_schema)
    return ParquetWriter(settings.resolved_data_dir / "offline")

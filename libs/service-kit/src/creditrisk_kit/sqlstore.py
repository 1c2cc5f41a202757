"""One SQL store base (extra ``sql``): SQLAlchemy 2 Core over SQLite or PostgreSQL, alembic.

What the platform's SQL stores (the drift-service's event store, the registry-gateway's audit
store) share; each store subclasses :class:`SqlStore` and keeps its tables and queries.

* **Engine**: ``sqlite:///path`` (embedded profile; the folder is created) or
  ``postgresql+psycopg://...`` (real profile, ``pool_pre_ping``); any other backend raises
  ``ValueError``.
* **SQLite durability**: every connection runs ``journal_mode=WAL``, ``synchronous=FULL`` and
  ``busy_timeout``. With FULL the WAL is fsynced at every commit, so a committed write survives a
  process crash *and* a power loss / OS crash; ``NORMAL`` survives a process crash but may lose the
  last commits on power loss (SQLite documentation, "PRAGMA synchronous" and "Write-Ahead
  Logging"). The cost is one fsync per transaction. PostgreSQL commits are durable with its
  defaults (``fsync=on``, ``synchronous_commit=on``).
* **PostgreSQL schema**: with ``schema``, every table (and alembic's version table) lives in that
  schema through the connection's ``search_path``, so parallel test sessions each get their own;
  :meth:`SqlStore.migrate` creates it, :meth:`SqlStore.drop_schema` drops it.
* **Migrations**: :meth:`SqlStore.migrate` runs ``alembic upgrade head`` (one process at a time
  per database: an advisory lock on PostgreSQL, a file lock beside a SQLite file) on the store's own
  connection (the store's ``migrations`` folder); that folder's ``env.py`` is the one call
  :func:`run_migrations`.
* **Readiness**: :meth:`SqlStore.ping` (``SELECT 1``).
* **Schema check**: :meth:`SqlStore.schema_differences`, the store's declared tables against what
  its migrations built (for tests).

Times are stored as naive UTC timestamps (:func:`naive_utc`).
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

MIGRATION_LOCK_KEY = 0x63725F6D6967  # "cr_mig"
"""PostgreSQL advisory lock key held while a store migrates (one migration at a time per database)."""
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A PostgreSQL schema name the stores accept (an unquoted identifier, 63 bytes at most)."""


def check_database_url(url: str) -> str:
    """``url`` when it is a SQLAlchemy URL of a backend :class:`SqlStore` takes (for settings
    validators: a bad URL is then a configuration error naming the variable, not a traceback at
    start).

    Raises:
        ValueError: not a SQLAlchemy URL, or another backend than sqlite / postgresql.
    """
    try:
        backend = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise ValueError("not a SQLAlchemy URL (sqlite:///path or postgresql+psycopg://...)") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return url


def naive_utc(value: datetime) -> datetime:
    """``value`` as a naive UTC datetime (a naive one is taken to be UTC already)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def next_in_sequence(conn: Connection, column: sa.Column[Any]) -> int:
    """``max(column) + 1`` (1 on an empty table), read in ``conn``'s transaction.

    Unique only when the writers are serialized (a store's write lock, or a unique constraint on
    the column that makes the loser's insert fail).
    """
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(column), 0))).scalar_one()) + 1


class SqlStore:
    """Engine, migrations, readiness and clean-up of one SQL store.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://...``.
        schema: PostgreSQL schema of every table (created by :meth:`migrate`); ignored for SQLite.
        migrations: the store's alembic folder (``env.py``, ``versions/``).
        busy_timeout_s: SQLite: how long a connection waits for another writer's lock, seconds.

    Attributes:
        dialect: ``"sqlite"`` or ``"postgresql"``.
        engine: the SQLAlchemy engine.
        insert: the dialect's ``insert`` (with ``on_conflict_do_nothing`` / ``on_conflict_do_update``).

    Raises:
        ValueError: another backend, or a schema name not matching :data:`SCHEMA_NAME`.
    """

    def __init__(
        self, url: str, schema: str | None = None, *, migrations: Path, busy_timeout_s: float = 30.0
    ) -> None:
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self.schema = schema if self.dialect == "postgresql" else None
        if self.schema is not None and not SCHEMA_NAME.match(self.schema):
            raise ValueError(f"schema must match {SCHEMA_NAME.pattern}")
        self.migrations = migrations
        self.busy_timeout_s = busy_timeout_s
        self.engine = self._engine()
        self.insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert

    def _engine(self) -> Engine:
        if self.dialect == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": self.busy_timeout_s}
            )
            busy_ms = round(self.busy_timeout_s * 1000)

            @sa_event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                cur.close()

            return engine
        connect_args = {"options": f"-csearch_path={self.schema}"} if self.schema else {}
        return sa.create_engine(self.url, connect_args=connect_args, pool_pre_ping=True)

    def migrate(self) -> None:
        """Create the schema (PostgreSQL) and apply the alembic migrations up to head.

        One migration at a time per database, so that two processes starting at once (two
        replicas, a restart racing the old process) do not both create the tables ("table ...
        already exists"): a PostgreSQL advisory lock for the transaction, an exclusive file lock
        beside a SQLite file.
        """
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        with self._migration_lock():
            if self.schema:
                with self.engine.begin() as conn:
                    self._lock_migrations(conn)
                    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            with self.engine.begin() as conn:
                self._lock_migrations(conn)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")

    def _lock_migrations(self, conn: Connection) -> None:
        """PostgreSQL: hold the migration advisory lock until ``conn``'s transaction ends."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """SQLite file: an exclusive ``flock`` on ``<file>.migrate-lock`` while migrating."""
        database = self.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ping(self) -> bool:
        """True when the database answers ``SELECT 1`` (the readiness check)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT 1")).scalar() == 1

    def schema_differences(self, metadata: sa.MetaData) -> list[Any]:
        """What alembic's autogenerate comparison finds between the migrated database and
        ``metadata`` (tables, columns, types, nullability, indexes, unique constraints), as
        alembic's diff tuples; ``[]`` when the migrations build exactly the declared tables.

        A store declares its tables twice, in its metadata (what the queries use) and in its
        migrations (frozen history): a test of this keeps the two from drifting apart.
        """
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))

    def drop_schema(self) -> None:
        """Drop the PostgreSQL schema with everything in it (tests clean up with it); no-op on SQLite."""
        if self.schema:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


def run_migrations() -> None:
    """The whole ``env.py`` of a store's alembic folder: always online, on the connection
    :meth:`SqlStore.migrate` passes in ``config.attributes["connection"]``, in batch mode (SQLite
    alters tables by copying them).

    Raises:
        RuntimeError: alembic was run some other way (e.g. the ``alembic`` command line).
    """
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the migrations through the store's migrate() (creditrisk_kit.sqlstore)")
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()

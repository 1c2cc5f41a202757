"""The SQL store base: engine and SQLite pragmas, alembic at start, ping, the PostgreSQL schema.

The PostgreSQL tests (marker ``real``) use the ``postgres_dsn`` fixture of ``creditrisk-testing``,
which fails, never skips, when PostgreSQL is down; each test gets its own schema, dropped at the end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from creditrisk_kit.sqlstore import SqlStore, naive_utc, next_in_sequence
from creditrisk_testing import sqlstores
from creditrisk_testing.sqlstores import SQL_PROFILES

MIGRATIONS = Path(__file__).parent / "sql_migrations"


def _items(metadata: sa.MetaData, *more: sa.Column[object]) -> sa.Table:
    """The table the test migrations build (``more`` columns added)."""
    return sa.Table(
        "items",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        *more,
    )


items = _items(sa.MetaData())
T0 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def _make(url: str, schema: str | None) -> SqlStore:
    return SqlStore(url, schema, migrations=MIGRATIONS, busy_timeout_s=2.5)


@pytest.fixture(params=SQL_PROFILES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SqlStore]]:
    """Makes migrated stores on one database (same file / schema): a second call is a restart."""
    with sqlstores.store_factory(request, tmp_path, _make, prefix="kit") as make:
        yield make


def _add(store: SqlStore, name: str, note: str = "") -> int:
    """Insert ``name`` once (a repeat is ignored); the sequence it got, or 0 when it was a repeat."""
    with store.engine.begin() as conn:
        seq = next_in_sequence(conn, items.c.seq)
        stmt = (
            store.insert(items)
            .values(name=name, seq=seq, created=naive_utc(T0), note=note)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(items.c.seq)
        )
        return int(conn.execute(stmt).scalar() or 0)


def test_migrate_applies_every_revision_and_a_restart_keeps_the_data(
    store_factory: Callable[[], SqlStore],
) -> None:
    store = store_factory()
    assert store.ping() is True
    assert _add(store, "a", note="first") == 1
    assert _add(store, "b") == 2
    assert _add(store, "a") == 0  # ON CONFLICT DO NOTHING on both dialects
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    restarted = store_factory()  # migrate() again: nothing to do, nothing lost
    with restarted.engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.name, items.c.seq, items.c.note).order_by(items.c.seq)).all()
        assert conn.execute(sa.select(items.c.created)).scalars().all() == [naive_utc(T0)] * 2
    assert [tuple(r) for r in rows] == [("a", 1, "first"), ("b", 2, "")]
    assert _add(restarted, "c") == 3


def test_schema_differences_name_what_the_migrations_did_not_build(
    store_factory: Callable[[], SqlStore],
) -> None:
    store = store_factory()
    assert store.schema_differences(items.metadata) == []
    declared = sa.MetaData()
    _items(declared, sa.Column("owner", sa.String(64)))
    sa.Table("extra", declared, sa.Column("id", sa.Integer, primary_key=True))
    found = store.schema_differences(declared)
    assert sorted((d[0], d[3].name) if d[0] == "add_column" else (d[0], d[1].name) for d in found) == [
        ("add_column", "owner"),
        ("add_table", "extra"),
    ]


def test_sqlite_engine_is_durable_and_waits_for_a_busy_writer(tmp_path: Path) -> None:
    path = tmp_path / "made" / "here" / "kit.db"
    store = SqlStore(f"sqlite:///{path}", "ignored_on_sqlite", migrations=MIGRATIONS, busy_timeout_s=2.5)
    try:
        assert store.dialect == "sqlite"
        assert store.schema is None
        assert path.parent.is_dir()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
        store.migrate()
        assert store.ping() is True
        store.drop_schema()  # nothing to drop on SQLite: the data stays
        assert _add(store, "kept") == 1
    finally:
        store.close()


def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'kit.db'}", migrations=MIGRATIONS, busy_timeout_s=10)
    store.migrate()
    holding = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            holding.set()
            release.wait(5)
            conn.exec_driver_sql("COMMIT")

    writer = threading.Thread(target=hold_the_write_lock)
    writer.start()
    try:
        assert holding.wait(5)
        threading.Timer(0.3, release.set).start()
        assert _add(store, "after the lock") == 1  # waited (busy_timeout), did not raise "locked"
    finally:
        release.set()
        writer.join()
        store.close()


def test_migrations_run_only_through_migrate(tmp_path: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'cli.db'}")
    with pytest.raises(RuntimeError, match=r"migrate\(\)"):
        command.upgrade(config, "head")


@pytest.mark.parametrize(
    ("url", "schema", "message"),
    [
        ("mysql+pymysql://u@localhost/db", None, "unsupported database 'mysql'"),
        ("postgresql+psycopg://u@localhost/db", "Bad-Schema", "schema must match"),
        ("postgresql+psycopg://u@localhost/db", 'x"; DROP SCHEMA public', "schema must match"),
        ("postgresql+psycopg://u@localhost/db", "a" * 64, "schema must match"),
    ],
)
def test_a_wrong_database_or_schema_is_refused(url: str, schema: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SqlStore(url, schema, migrations=MIGRATIONS)


def test_naive_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert naive_utc(datetime(2026, 1, 1, 12, tzinfo=plus_two)) == datetime(2026, 1, 1, 10)
    assert naive_utc(datetime(2026, 1, 1, 12, tzinfo=UTC)) == datetime(2026, 1, 1, 12)
    assert naive_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12)  # naive: UTC already


@pytest.mark.real
def test_postgresql_tables_live_in_the_store_schema_and_drop_schema_removes_them(postgres_dsn: str) -> None:
    url = sqlstores.sqlalchemy_url(postgres_dsn)
    schema = f"kit_test_{uuid.uuid4().hex[:12]}"
    store = SqlStore(url, schema, migrations=MIGRATIONS)
    other = SqlStore(url, f"kit_test_{uuid.uuid4().hex[:12]}", migrations=MIGRATIONS)
    try:
        assert store.dialect == "postgresql"
        store.migrate()
        other.migrate()
        _add(store, "only in the first schema")
        with store.engine.connect() as conn:
            tables = set(
                conn.execute(
                    sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                    {"s": schema},
                ).scalars()
            )
        assert tables == {"items", "alembic_version"}
        with other.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(items)).scalar() == 0
        store.drop_schema()
        with other.engine.connect() as conn:
            gone = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).scalar()
        assert gone == 0
    finally:
        store.drop_schema()
        other.drop_schema()
        store.close()
        other.close()


def test_check_database_url_for_settings_validators() -> None:
    from creditrisk_kit.sqlstore import check_database_url

    assert check_database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert check_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ValueError, match="not a SQLAlchemy URL"):
        check_database_url("not a url")
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        check_database_url("mysql://u:p@h/db")


@pytest.mark.parametrize("profile", SQL_PROFILES)
def test_stores_starting_at_once_migrate_one_at_a_time(
    profile: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Two replicas (or a restart racing the old process) on one fresh database: without a lock
    # both created the tables and one failed with "table items already exists".
    stores: list[SqlStore] = []
    failures: list[str] = []
    for round_ in range(6):
        if profile == "sqlite":
            url, schema = f"sqlite:///{tmp_path / f'race-{round_}.db'}", None
        else:
            url = sqlstores.sqlalchemy_url(request.getfixturevalue("postgres_dsn"))
            schema = f"kit_race_{uuid.uuid4().hex[:10]}"
        racers = [_make(url, schema) for _ in range(4)]
        stores += racers
        barrier = threading.Barrier(len(racers))

        def migrate(store: SqlStore, barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                store.migrate()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

        threads = [threading.Thread(target=migrate, args=(s, barrier)) for s in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    try:
        assert failures == []
        assert stores[-1].schema_differences(items.metadata) == []
    finally:
        for store in stores:
            store.drop_schema()
            store.close()

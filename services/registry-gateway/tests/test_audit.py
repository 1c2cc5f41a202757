"""The audit store on both profiles (SQLite; PostgreSQL behind the ``real`` marker), without MLflow.

The PostgreSQL store uses :mod:`creditrisk_testing.sqlstores` over the ``postgres_dsn`` fixture,
which fails, never skips, when PostgreSQL is down; every test gets its own schema, dropped at the
end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from creditrisk_testing import sqlstores
from creditrisk_testing.sqlstores import SQL_PROFILES
from registry_gateway import audit as au


@pytest.fixture(params=SQL_PROFILES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], au.AuditStore]]:
    """Makes migrated stores on one database (same file / schema): each one is another 'process'."""
    with sqlstores.store_factory(request, tmp_path, au.AuditStore, prefix="rg_audit") as make:
        yield make


def record(action: int, model: str = "credit-risk", **kw: object) -> au.NewRecord:
    return au.NewRecord(actor="alice", role=2, action=action, model_name=model, **kw)  # type: ignore[arg-type]


def test_migrations_build_the_declared_table(store_factory: Callable[[], au.AuditStore]) -> None:
    store = store_factory()
    assert store.ping()
    assert store.schema_differences(au.metadata) == []


def test_sequences_survive_a_restart(store_factory: Callable[[], au.AuditStore]) -> None:
    store = store_factory()
    registered = store.append_now(record(au.REGISTER, to_version=1))
    promoted = store.append_now(record(au.PROMOTE, alias="champion", to_version=1, figures={"auc": 0.8}))
    moved = store.append_now(record(au.SET_ALIAS, alias="challenger", to_version=1))
    assert [r.seq for r in (registered, promoted, moved)] == [1, 2, 3]
    assert [r.alias_seq for r in (registered, promoted, moved)] == [None, 1, 2]
    restarted = store_factory()
    assert restarted.last_alias_seq() == 2
    rollback = restarted.append_now(record(au.ROLLBACK, alias="champion", from_version=1, to_version=1))
    assert (rollback.seq, rollback.alias_seq) == (4, 3)
    assert [r.seq for r in restarted.alias_changes_after(1)] == [3, 4]
    history = restarted.alias_history("credit-risk", "champion")
    assert [(r.action, r.figures) for r in history] == [(au.PROMOTE, {"auc": 0.8}), (au.ROLLBACK, {})]
    assert history[0].time.tzinfo is UTC


def test_listing_newest_first_by_sequence_with_filters(store_factory: Callable[[], au.AuditStore]) -> None:
    store = store_factory()
    for i in range(5):
        store.append_now(record(au.REGISTER, model=f"m{i % 2}", to_version=i + 1))
    page, last = store.list(au.AuditFilter(), None, 2)
    assert ([r.seq for r in page], last) == ([5, 4], 4)
    # a record appended between two page calls does not shift the next page (keyset paging)
    store.append_now(record(au.REGISTER, model="m9", to_version=9))
    page, last = store.list(au.AuditFilter(), 4, 2)
    assert ([r.seq for r in page], last) == ([3, 2], 2)
    page, last = store.list(au.AuditFilter(), 2, 2)
    assert ([r.seq for r in page], last) == ([1], None)
    assert [r.seq for r in store.list(au.AuditFilter(model_name="m1"), None, 10)[0]] == [4, 2]
    assert store.list(au.AuditFilter(actions=[au.PROMOTE]), None, 10)[0] == []
    now = datetime.now(UTC)
    assert len(store.list(au.AuditFilter(start=now - timedelta(minutes=5)), None, 10)[0]) == 6
    assert store.list(au.AuditFilter(end=now - timedelta(minutes=5)), None, 10)[0] == []


def test_two_processes_writing_at_once_get_distinct_sequences(
    store_factory: Callable[[], au.AuditStore],
) -> None:
    stores = [store_factory(), store_factory()]  # two engines: the database lock serializes them
    errors: list[BaseException] = []

    def write(store: au.AuditStore) -> None:
        try:
            for _ in range(15):
                store.append_now(record(au.SET_ALIAS, alias="champion", to_version=1))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed, _ = stores[0].list(au.AuditFilter(), None, 100)
    assert sorted(r.seq for r in listed) == list(range(1, 61))
    assert sorted(r.alias_seq for r in listed if r.alias_seq is not None) == list(range(1, 61))

"""SQL stores (``creditrisk_kit.sqlstore.SqlStore`` and its subclasses) on both profiles in tests.

Use :data:`SQL_PROFILES` as a fixture's ``params`` and :func:`store_factory` inside it::

    @pytest.fixture(params=SQL_PROFILES)
    def store_factory(request, tmp_path):
        with sqlstores.store_factory(request, tmp_path, Store, prefix="drift") as make:
            yield make

``sqlite`` is a file in ``tmp_path``; ``postgresql`` (marker ``real``) a fresh schema
``<prefix>_test_<random>`` in the ``postgres_dsn`` database (which fails, never skips, when
PostgreSQL is down), dropped at the end, so parallel runs do not collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest

SQL_PROFILES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.real)]
"""Fixture parameters: the embedded profile's SQLite and the real profile's PostgreSQL."""


class MigratedStore(Protocol):
    """What :func:`store_factory` calls on a store."""

    def migrate(self) -> None: ...
    def drop_schema(self) -> None: ...
    def close(self) -> None: ...


def sqlalchemy_url(dsn: str) -> str:
    """A ``postgresql://`` DSN as the SQLAlchemy URL of psycopg 3 (``postgresql+psycopg://``)."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


@contextmanager
def store_factory[S: MigratedStore](
    request: pytest.FixtureRequest, tmp_path: Path, make: Callable[[str, str | None], S], *, prefix: str
) -> Iterator[Callable[[], S]]:
    """A factory of migrated stores on one database (same file / schema) for ``request.param``
    (``"sqlite"`` or ``"postgresql"``): a second call is a restart, or a second process.

    Args:
        request: the fixture's request (its ``param`` one of :data:`SQL_PROFILES`).
        tmp_path: where the SQLite file goes (``<prefix>.db``).
        make: the store's constructor, ``make(url, schema)``.
        prefix: names the file and the PostgreSQL schema.

    On exit the schema is dropped (PostgreSQL) and every store closed.
    """
    made: list[S] = []
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / f'{prefix}.db'}", None
    else:
        url = sqlalchemy_url(request.getfixturevalue("postgres_dsn"))
        schema = f"{prefix}_test_{uuid.uuid4().hex[:12]}"

    def factory() -> S:
        store = make(url, schema)
        store.migrate()
        made.append(store)
        return store

    try:
        yield factory
    finally:
        if made and schema:
            made[-1].drop_schema()
        for store in made:
            store.close()

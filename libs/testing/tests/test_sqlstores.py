"""The SQL store helpers: DSNs as SQLAlchemy URLs, stores made, migrated and cleaned up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from creditrisk_testing import sqlstores


@pytest.mark.parametrize(
    ("dsn", "url"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        ("postgres://u:p@db/x?sslmode=disable", "postgresql+psycopg://u:p@db/x?sslmode=disable"),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg://u@db/x"),
    ],
)
def test_sqlalchemy_url(dsn: str, url: str) -> None:
    assert sqlstores.sqlalchemy_url(dsn) == url


class _Store:
    """Records what the factory does with it."""

    log: list[str]

    def __init__(self, url: str, schema: str | None) -> None:
        self.url, self.schema = url, schema

    def migrate(self) -> None:
        self.log.append(f"migrate {self.schema}")

    def drop_schema(self) -> None:
        self.log.append(f"drop {self.schema}")

    def close(self) -> None:
        self.log.append("close")


@pytest.fixture(params=sqlstores.SQL_PROFILES)
def profile(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def test_stores_share_one_database_and_are_cleaned_up(profile: pytest.FixtureRequest, tmp_path: Path) -> None:
    log: list[str] = []
    _Store.log = log
    make: Callable[[str, str | None], _Store] = _Store
    with sqlstores.store_factory(profile, tmp_path, make, prefix="lib") as factory:
        first, second = factory(), factory()
        assert (first.url, first.schema) == (second.url, second.schema)
    if profile.param == "sqlite":  # type: ignore[attr-defined]
        assert first.url == f"sqlite:///{tmp_path / 'lib.db'}"
        assert first.schema is None
        assert log == ["migrate None", "migrate None", "close", "close"]
    else:
        assert first.url.startswith("postgresql+psycopg://")
        assert first.schema is not None
        assert first.schema.startswith("lib_test_")
        schema = first.schema
        assert log == [f"migrate {schema}", f"migrate {schema}", f"drop {schema}", "close", "close"]

"""Per-profile Feast configuration: the batch source class, the ``RepoConfig`` and ``feature_store.yaml``.

Feast needs a different source class per offline store (``FileSource`` for DuckDB over Parquet,
``PostgreSQLSource`` for PostgreSQL); :func:`source_factory` picks it from the settings, so the
product's feature views are written once (:mod:`feature_service.repo` re-points them).

| profile  | offline store              | online store | registry            |
| -------- | -------------------------- | ------------ | ------------------- |
| embedded | DuckDB over Parquet files  | SQLite       | file                |
| real     | PostgreSQL (tables, COPY)  | Redis        | SQL (PostgreSQL)    |

Feast's ``file`` (dask) offline store is deliberately not used: it drops entity rows whose feature
rows are all in their future or outside the TTL instead of returning nulls (docs/design.md, "Measured facts").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from feature_service.schema import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ViewSpec
from feature_service.settings import FeatureServiceSettings

if TYPE_CHECKING:
    from feast import RepoConfig
    from feast.data_source import DataSource


class SourceFactory(Protocol):
    """Builds the batch source of a feature view for one offline store."""

    def batch_source(self, view: ViewSpec, name: str) -> DataSource:
        """The batch source of ``view``'s offline table, named ``name``."""
        ...


class ParquetSourceFactory:
    """``FileSource`` over one Parquet file per view, read by Feast's DuckDB offline store."""

    def __init__(self, offline_dir: Path) -> None:
        self.offline_dir = offline_dir

    def path(self, view: ViewSpec) -> Path:
        """Parquet file of ``view``."""
        return self.offline_dir / f"{view.table}.parquet"

    def batch_source(self, view: ViewSpec, name: str) -> DataSource:
        from feast import FileSource
        from feast.data_format import ParquetFormat

        return FileSource(
            name=name,
            path=str(self.path(view)),
            file_format=ParquetFormat(),
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
            description=view.description,
        )


class PostgresSourceFactory:
    """``PostgreSQLSource`` over one table per view in the offline schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def table(self, view: ViewSpec) -> str:
        """Schema-qualified table of ``view``."""
        return f"{self.schema}.{view.table}"

    def batch_source(self, view: ViewSpec, name: str) -> DataSource:
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=name,
            table=self.table(view),
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
            description=view.description,
        )


def source_factory(settings: FeatureServiceSettings) -> ParquetSourceFactory | PostgresSourceFactory:
    """The source factory of the configured profile (``settings``' project resolved)."""
    if settings.profile == "real":
        return PostgresSourceFactory(settings.offline_schema)
    return ParquetSourceFactory(settings.resolved_data_dir / "offline")


#: ``batch_engine`` type of :class:`feature_service.materialization.FastMaterializationEngine`.
FAST_ENGINE_TYPE = "feature_service.materialization.FastMaterializationEngine"


def engine_config(kind: str, batch_rows: int) -> str | dict[str, Any]:
    """The ``batch_engine`` entry: ``fast`` (:mod:`feature_service.materialization`) or ``feast``."""
    if kind == "feast":
        return "local"
    return {"type": FAST_ENGINE_TYPE, "batch_rows": batch_rows}


def repo_config_dict(settings: FeatureServiceSettings) -> dict[str, Any]:
    """The Feast repository configuration as plain data (the content of ``feature_store.yaml``)."""
    data_dir = settings.resolved_data_dir
    config: dict[str, Any] = {
        "project": settings.feast_project,
        "provider": "local",
        "entity_key_serialization_version": 3,
        # Feast's own engine ("local") or ours (feature_service.materialization), by configuration
        "batch_engine": engine_config(settings.materialization_engine, settings.materialization_batch_rows),
    }
    if settings.profile == "real":
        pg = settings.postgres_params()
        config["registry"] = {
            "registry_type": "sql",
            "path": settings.postgres_sqlalchemy_url(),
            "cache_ttl_seconds": settings.registry_cache_ttl_seconds,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        }
        config["online_store"] = {"type": "redis", "connection_string": settings.redis_connection_string()}
        config["offline_store"] = {
            "type": "postgres",
            "host": str(pg["host"]),
            "port": int(pg["port"]),
            "database": str(pg["database"]),
            "db_schema": settings.offline_schema,
            "user": str(pg["user"]),
            "password": str(pg["password"]),
            # Feast's default is "require", which fails against a local server without TLS.
            "sslmode": str(pg["sslmode"]),
        }
    else:
        config["registry"] = {
            "registry_type": "file",
            "path": str(data_dir / "registry.db"),
            "cache_ttl_seconds": settings.registry_cache_ttl_seconds,
        }
        config["online_store"] = {"type": "sqlite", "path": str(data_dir / "online_store.db")}
        config["offline_store"] = {"type": "duckdb"}
    return config


def repo_config(settings: FeatureServiceSettings) -> RepoConfig:
    """A Feast ``RepoConfig`` built from the settings (no hand-edited ``feature_store.yaml``)."""
    from feast import RepoConfig

    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return RepoConfig(repo_path=data_dir, **repo_config_dict(settings))


def write_feature_store_yaml(settings: FeatureServiceSettings, path: Path | None = None) -> Path:
    """Write ``feature_store.yaml`` for ``feast`` CLI users (e.g. ``feast serve``).

    Args:
        settings: the service settings.
        path: where to write; default ``<data_dir>/feature_store.yaml``.

    Returns:
        The path written. It holds the PostgreSQL password in clear text if one is configured.
    """
    import yaml

    target = path or settings.resolved_data_dir / "feature_store.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(repo_config_dict(settings), sort_keys=False))
    return target

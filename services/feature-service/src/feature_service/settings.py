"""Typed settings of the feature-service, read from ``FEATURE_SERVICE_*`` environment variables.

The profile (docs/design.md, "Profiles") is configuration, not a code branch:

* ``embedded``: DuckDB offline store over Parquet files, SQLite online store, file registry, all
  under ``data_dir`` (default ``<repo>/.run/embedded/feature-store``).
* ``real``: PostgreSQL offline store (tables in ``postgres_schema``) and SQL registry, Redis
  online store.

It subclasses the shared kit's ``creditrisk_kit.settings.ServiceSettings`` (host, port, grace
period, message size, health-check interval, log level; ``load_or_exit()`` for entrypoints).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from creditrisk_kit.settings import ServiceSettings
from creditrisk_products import ProductSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

Profile = Literal["embedded", "real"]

_PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def repo_root() -> Path:
    """The monorepo root: the nearest parent holding both ``services/`` and ``libs/``, else the cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "services").is_dir() and (parent / "libs").is_dir():
            return parent
    return Path.cwd()


class FeatureServiceSettings(ServiceSettings, ProductSettings):
    """Settings of the feature-service (env prefix ``FEATURE_SERVICE_``).

    Attributes:
        port: gRPC port (default 50051; every service sets its own: tests/test_defaults.py).
        profile: ``embedded`` or ``real``.
        products_dir / products: the product served (``FEATURE_SERVICE_PRODUCTS_DIR``,
            ``FEATURE_SERVICE_PRODUCTS``; :class:`creditrisk_products.ProductSettings`): its Feast
            repository and ``product.toml`` define the views, the entity and the ingestion.
        project: override of the product's Feast project (``[product].feast_project``); unset: the
            product's. The project also names the Redis key space (Feast prefixes keys with it), the
            PostgreSQL schema of the offline tables (``feast_<project>``) and the SQL registry's
            rows: set it to keep a checkout's demo or a test apart on shared servers.
        data_dir: embedded profile's folder for Parquet files, the SQLite online store and the file
            registry; default ``<repo>/.run/<profile>/feature-store``.
        redis_url: real profile's online store, ``redis://host:port/db``.
        redis_socket_timeout_s: seconds a Redis connect or reply may take before the read fails
            (redis-py's ``socket_connect_timeout`` / ``socket_timeout``, passed in Feast's connection
            string); without it a Redis that stops answering would hold a read forever. The
            connection string also turns off redis-py 7's default retries (3, with a 1-10 s
            exponential backoff: 8-11 s measured against a Redis that never answers, even with a
            0.3 s socket timeout): a failed read fails the call at once as UNAVAILABLE, and the
            caller, which owns the deadline, decides whether to retry.
        postgres_dsn: real profile's PostgreSQL as one libpq DSN/URL; when set it overrides the
            ``postgres_host`` / ``_port`` / ``_db`` / ``_user`` / ``_password`` fields.
        postgres_schema: schema of the offline tables; default ``feast_<project>``.
        feature_ttl_days: override of the TTL (days) of the feature views that have one; unset: the
            repository's TTLs. Offline, the point-in-time join ignores rows older than the TTL;
            online, a value older than it is reported OUTSIDE_TTL.
        history_chunk_rows: rows per record batch of the point-in-time dataset, and the default
            upper bound of rows per ``GetHistoricalFeatures`` chunk (the message size bounds it too).
        max_online_entity_rows: most entity rows one ``GetOnlineFeatures`` call may ask for.
        filter_by_created_timestamp: point-in-time joins ignore rows created after the entity row's
            timestamp (late corrections); Feast's default (False) leaks them
            (docs/design.md, "Measured facts").
        registry_cache_ttl_seconds: how long the online path trusts its cached registry.
        materialization_engine: ``fast`` (default: :mod:`feature_service.materialization`, Feast's
            read plan with a vectorized conversion and batched Redis writer, tested equal to Feast's)
            or ``feast`` (Feast's own ``local`` engine, the fallback).
        materialization_batch_rows: entities per Redis pipeline / ``online_write_batch`` call of the
            fast engine.
    """

    model_config = SettingsConfigDict(env_prefix="FEATURE_SERVICE_", extra="ignore", validate_default=True)

    port: int = Field(default=50051, ge=0, le=65535)
    profile: Profile = "embedded"
    project: str | None = None
    data_dir: Path | None = None

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)

    postgres_dsn: str | None = None
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_db: str = "postgres"
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_sslmode: str = "disable"
    postgres_schema: str | None = None

    feature_ttl_days: int | None = Field(default=None, gt=0)
    history_chunk_rows: int = Field(default=65_536, gt=0)
    max_online_entity_rows: int = Field(default=1000, gt=0)
    filter_by_created_timestamp: bool = True
    registry_cache_ttl_seconds: int = Field(default=60, ge=0)
    materialization_engine: Literal["fast", "feast"] = "fast"
    materialization_batch_rows: int = Field(default=10_000, gt=0)

    @field_validator("project")
    @classmethod
    def _valid_project(cls, value: str | None) -> str | None:
        if value is not None and not _PROJECT_NAME.match(value):
            raise ValueError("project must match ^[a-z][a-z0-9_]{0,47}$ (it names a schema and key space)")
        return value

    @property
    def feature_ttl(self) -> timedelta | None:
        """The TTL override of the feature views, or None (the repository's TTLs)."""
        return None if self.feature_ttl_days is None else timedelta(days=self.feature_ttl_days)

    def for_project(self, feast_project: str) -> FeatureServiceSettings:
        """These settings with ``project`` set: the override if given, else ``feast_project`` (the
        product's). Every store-facing use (``offline_schema``, the ``RepoConfig``) needs it set."""
        if self.project:
            return self
        return self.model_copy(update={"project": feast_project})

    @property
    def feast_project(self) -> str:
        """The Feast project in effect.

        Raises:
            ValueError: neither set nor resolved with :meth:`for_project`.
        """
        if not self.project:
            raise ValueError("no Feast project: resolve the settings with for_project(product project)")
        return self.project

    @property
    def resolved_data_dir(self) -> Path:
        """Folder of the embedded stores (and of the generated ``feature_store.yaml``)."""
        if self.data_dir is not None:
            return self.data_dir.resolve()
        return repo_root() / ".run" / self.profile / "feature-store"

    @property
    def offline_schema(self) -> str:
        """PostgreSQL schema of the offline tables (real profile; the project must be resolved)."""
        return self.postgres_schema or f"feast_{self.feast_project}"

    def postgres_params(self) -> dict[str, str | int]:
        """Connection parameters: host, port, database, user, password, sslmode."""
        params: dict[str, str | int] = {
            "host": self.postgres_host,
            "port": self.postgres_port,
            "database": self.postgres_db,
            "user": self.postgres_user,
            "password": self.postgres_password.get_secret_value(),
            "sslmode": self.postgres_sslmode,
        }
        if self.postgres_dsn:
            from psycopg.conninfo import conninfo_to_dict

            parsed = conninfo_to_dict(self.postgres_dsn)
            for src, dst in (
                ("host", "host"),
                ("dbname", "database"),
                ("user", "user"),
                ("password", "password"),
                ("sslmode", "sslmode"),
            ):
                if parsed.get(src):
                    params[dst] = str(parsed[src])
            if parsed.get("port"):
                params["port"] = int(str(parsed["port"]))
        return params

    def postgres_conninfo(self) -> str:
        """A libpq conninfo string for psycopg."""
        from psycopg.conninfo import make_conninfo

        p = self.postgres_params()
        return make_conninfo(
            host=str(p["host"]),
            port=int(p["port"]),
            dbname=str(p["database"]),
            user=str(p["user"]),
            password=str(p["password"]),
            sslmode=str(p["sslmode"]),
        )

    def postgres_sqlalchemy_url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the SQL registry."""
        from sqlalchemy.engine import URL

        p = self.postgres_params()
        url = URL.create(
            "postgresql+psycopg",
            username=str(p["user"]),
            password=str(p["password"]) or None,
            host=str(p["host"]),
            port=int(p["port"]),
            database=str(p["database"]),
            query={"sslmode": str(p["sslmode"])},
        )
        return url.render_as_string(hide_password=False)

    def redis_connection_string(self) -> str:
        """Feast's Redis connection string, ``host:port,db=N[,password=...][,ssl=true],socket_timeout=S,
        socket_connect_timeout=S,retry=null`` (Feast parses each value as JSON: the timeouts arrive
        as floats, ``retry`` as None: no retry, see ``redis_socket_timeout_s``)."""
        url = urlsplit(self.redis_url)
        parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"]
        db = (url.path or "/0").lstrip("/") or "0"
        parts.append(f"db={db}")
        if url.password:
            parts.append(f"password={url.password}")
        if url.scheme == "rediss":
            parts.append("ssl=true")
        parts.append(f"socket_timeout={self.redis_socket_timeout_s}")
        parts.append(f"socket_connect_timeout={self.redis_socket_timeout_s}")
        parts.append("retry=null")
        return ",".join(parts)

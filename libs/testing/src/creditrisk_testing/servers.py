"""Reachability checks of the real profile's servers (Redis, PostgreSQL)."""

from __future__ import annotations

import psycopg
import redis

#: Defaults match the CI machine and `.ci/run` (README, "Profiles"); override with the variables.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class RealServerUnavailable(RuntimeError):
    """A server of the real profile did not answer; the message says which, where and how to start it."""


def require_redis(url: str, timeout_s: float = 3.0) -> str:
    """Check that Redis answers PING at ``url``.

    Args:
        url: a ``redis://`` URL.
        timeout_s: connect and read timeout in seconds.

    Returns:
        ``url`` unchanged.

    Raises:
        RealServerUnavailable: Redis refused, timed out or answered wrongly.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        if client.ping() is not True:
            raise RealServerUnavailable(f"Redis at {url} did not answer PING")
    except redis.RedisError as exc:
        raise RealServerUnavailable(
            f"Redis at {url} is unreachable ({_one_line(exc)}); "
            "start it (see .ci/run) or set CREDITRISK_REDIS_URL"
        ) from exc
    finally:
        client.close()
    return url


def require_postgres(dsn: str, timeout_s: float = 3.0) -> str:
    """Check that PostgreSQL answers ``SELECT 1`` at ``dsn``.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        timeout_s: connect timeout in seconds (libpq rounds it up to whole seconds).

    Returns:
        ``dsn`` unchanged.

    Raises:
        RealServerUnavailable: the server refused, timed out or the query failed.
    """
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))) as conn:
            row = conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        raise RealServerUnavailable(
            f"PostgreSQL at {dsn} is unreachable ({_one_line(exc)}); "
            "start it (see .ci/run) or set CREDITRISK_POSTGRES_DSN"
        ) from exc
    if row != (1,):
        raise RealServerUnavailable(f"PostgreSQL at {dsn} answered {row!r} to SELECT 1")
    return dsn

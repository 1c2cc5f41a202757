"""pytest plugin shared by the platform's test suites (installed as a ``pytest11`` entry point).

Fixtures:
    redis_url: URL of the real profile's Redis, checked with a PING round trip.
    postgres_dsn: libpq DSN of the real profile's PostgreSQL, checked with ``SELECT 1``.

Modules:
    sqlstores: SQL stores on both profiles (a SQLite file; a fresh PostgreSQL schema, dropped).

Tests that need a real server FAIL (``pytest.fail``), never skip, when it cannot be reached, so a
CI run without the servers cannot pass by skipping the tests that matter.
"""

from creditrisk_testing.servers import RealServerUnavailable, require_postgres, require_redis

__all__ = ["RealServerUnavailable", "require_postgres", "require_redis"]

"""The real profile's servers: reachable on CI, and a missing one fails the test instead of skipping it."""

from __future__ import annotations

import socket
import uuid

import psycopg
import pytest
import redis

pytest_plugins = ["pytester"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.real
def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"creditrisk-test:{uuid.uuid4()}"
    try:
        client.hset(key, mapping={"credit_amount": 1169})
        assert client.hget(key, "credit_amount") == b"1169"
    finally:
        client.delete(key)
        client.close()


@pytest.mark.real
def test_postgres_round_trip(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TEMP TABLE probe (applicant_id bigint, credit_amount double precision)")
        conn.execute("INSERT INTO probe VALUES (1, 1169.0)")
        assert conn.execute("SELECT credit_amount FROM probe WHERE applicant_id = 1").fetchone() == (1169.0,)


@pytest.mark.parametrize(
    ("fixture", "variable", "url"),
    [
        ("redis_url", "CREDITRISK_REDIS_URL", "redis://127.0.0.1:{port}/0"),
        ("postgres_dsn", "CREDITRISK_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:{port}/test"),
    ],
)
def test_unreachable_server_fails_never_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fixture: str, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url.format(port=_closed_port()))
    pytester.makepyfile(f"def test_needs_server({fixture}):\n    assert {fixture}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*is unreachable*start it (see .ci/run)*"])
    assert "skipped" not in result.stdout.str()

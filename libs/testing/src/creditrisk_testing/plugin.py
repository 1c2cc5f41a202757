"""The pytest side: session fixtures for the real profile's servers that fail, never skip; each
test starts with the whole budget of the kit's refusal log (an earlier test's refusals do not
suppress the lines a later one looks for)."""

from __future__ import annotations

import os
import sys

import pytest

from creditrisk_testing.servers import (
    DEFAULT_POSTGRES_DSN,
    DEFAULT_REDIS_URL,
    RealServerUnavailable,
    require_postgres,
    require_redis,
)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis (``CREDITRISK_REDIS_URL``, default ``redis://127.0.0.1:6379/0``)."""
    try:
        return require_redis(os.environ.get("CREDITRISK_REDIS_URL", DEFAULT_REDIS_URL))
    except RealServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of a reachable PostgreSQL (``CREDITRISK_POSTGRES_DSN``, default database ``test``)."""
    try:
        return require_postgres(os.environ.get("CREDITRISK_POSTGRES_DSN", DEFAULT_POSTGRES_DSN))
    except RealServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(autouse=True)
def _fresh_refusal_log_budget() -> None:
    """The kit's refusal-log throttle reset before each test (:mod:`creditrisk_kit.log_throttle`),
    when the kit's authentication is loaded at all (the plugin imports nothing of the kit)."""
    authenticator = sys.modules.get("creditrisk_kit.auth.authenticator")
    if authenticator is not None:
        authenticator.REFUSAL_LOG_THROTTLE.reset()

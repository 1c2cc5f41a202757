"""In-process gRPC servers on port 0 for the clients' tests (the service kit's runner: health,
the error interceptor that turns the test doubles' ServiceErrors into statuses)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from creditrisk_kit import ServiceRunner, ServiceSettings

Serve = Callable[[str, Callable[[Any], None]], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(service_name, register)`` -> the port; every server stops at teardown."""
    runners: list[ServiceRunner] = []

    async def start(service_name: str, register: Callable[[Any], None]) -> int:
        runner = ServiceRunner(
            ServiceSettings(host="127.0.0.1", port=0, health_check_interval_s=0.2, grace_period_s=1),
            service_names=[service_name],
            register=register,
            instrument=False,
        )
        runners.append(runner)
        return await runner.start()

    yield start
    for runner in runners:
        await runner.stop()

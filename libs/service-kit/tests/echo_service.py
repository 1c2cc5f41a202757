"""A whole service run by ``run_service`` in a subprocess (test_kit_service.py).

``python echo_service.py``: settings ``ECHO_*``; Echo with a ``slow`` method (0.5 s) and ``echo``;
ready while the file ``ECHO_READY_FILE`` exists; an ASGI app on ``ECHO_HTTP_PORT`` answering
``ok``; the stop callback and three shutdown hooks (the second raises) append a line each to
``ECHO_EVENTS_FILE``, as does the ASGI app on its first request and the HTTP server's stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
from creditrisk_kit import Service, ServiceSettings, ServiceSpec, run_service
from creditrisk_kit.http import UvicornServer
from google.protobuf.wrappers_pb2 import StringValue
from kit_support import SERVICE, handlers, unary_unary
from pydantic_settings import SettingsConfigDict


class EchoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECHO_")

    http_port: int = 0
    events_file: Path
    ready_file: Path


async def build(settings: EchoSettings) -> Service:
    def event(line: str) -> None:
        with settings.events_file.open("a") as out:
            out.write(line + "\n")

    async def slow(request: StringValue, context: Any) -> StringValue:
        await asyncio.sleep(0.5)
        event(f"slow {request.value} done")
        return StringValue(value="done " + request.value)

    async def echo(request: StringValue, context: Any) -> StringValue:
        return request

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handlers(slow=unary_unary(slow), echo=unary_unary(echo)),))

    async def ready() -> bool:
        return settings.ready_file.exists()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    @contextlib.asynccontextmanager
    async def http() -> AsyncIterator[None]:
        async with UvicornServer(
            app, host=settings.host, port=settings.http_port, grace_period_s=settings.grace_period_s
        ):
            event("http started")
            yield
        event("http stopped")

    def hook(name: str, fail: bool = False) -> Any:
        async def run() -> None:
            event(name)
            if fail:
                raise RuntimeError(f"{name} failed")

        return run

    return Service(
        service_names=[SERVICE],
        register=register,
        readiness_checks={"ready file": ready},
        shutdown_hooks=[hook("hook 1"), hook("hook 2", fail=True), hook("hook 3")],
        http_server=http(),
        on_stop=lambda: event("stop requested"),
    )


SPEC = ServiceSpec("echo-service", EchoSettings, build)

if __name__ == "__main__":
    run_service(SPEC)

"""Helpers of the kit's tests: in-process servers on port 0 and a generic test service.

No contracts package: the test service is a ``grpc.method_handlers_generic_handler`` speaking
``google.protobuf.StringValue``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
import grpc.aio
from creditrisk_kit import ReadinessCheck, ServiceRunner, ServiceSettings
from google.protobuf.wrappers_pb2 import StringValue

SERVICE = "creditrisk.test.v1.Echo"

_SER = {"request_deserializer": StringValue.FromString, "response_serializer": StringValue.SerializeToString}
_CLIENT = {
    "request_serializer": StringValue.SerializeToString,
    "response_deserializer": StringValue.FromString,
}


def settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "grace_period_s": 2.0,
        "health_check_interval_s": 0.05,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def handlers(**methods: grpc.RpcMethodHandler) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def unary_unary(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(fn, **_SER)


def unary_stream(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(fn, **_SER)


def stream_unary(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.stream_unary_rpc_method_handler(fn, **_SER)


def stream_stream(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.stream_stream_rpc_method_handler(fn, **_SER)


def method(channel: Any, kind: str, name: str) -> Any:
    """A multicallable of the test service on ``channel`` (sync or aio)."""
    return getattr(channel, kind)(f"/{SERVICE}/{name}", **_CLIENT)


@contextlib.asynccontextmanager
async def running(
    generic: grpc.GenericRpcHandler | None = None,
    *,
    checks: Mapping[str, ReadinessCheck] | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[ServiceRunner]:
    """A started ServiceRunner serving ``generic``; always stopped at the end."""

    def register(server: grpc.aio.Server) -> None:
        if generic is not None:
            server.add_generic_rpc_handlers((generic,))

    runner = ServiceRunner(
        settings(**settings_overrides), service_names=[SERVICE], register=register, readiness_checks=checks
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()

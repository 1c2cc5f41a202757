"""Channels: default deadline, explicit timeout wins, gRPC's own retries on UNAVAILABLE only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import grpc.aio
import pytest
from creditrisk_kit import (
    DEFAULT_MAX_MESSAGE_BYTES,
    InvalidArgument,
    RetryPolicy,
    Unavailable,
    aio_channel,
    channel_options,
    insecure_channel,
    wait_until_serving_sync,
)
from google.protobuf.wrappers_pb2 import StringValue
from kit_support import handlers, method, running, unary_stream, unary_unary

FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


def slow_service(delay_s: float) -> grpc.GenericRpcHandler:
    async def slow(request: StringValue, context: Any) -> StringValue:
        await asyncio.sleep(delay_s)
        return request

    async def slow_stream(request: StringValue, context: Any) -> Any:
        await asyncio.sleep(delay_s)
        yield request

    return handlers(slow=unary_unary(slow), slow_stream=unary_stream(slow_stream))


def test_channel_options() -> None:
    options = dict(channel_options(retry=FAST_RETRY))
    assert options["grpc.max_send_message_length"] == DEFAULT_MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert options["grpc.max_receive_message_length"] == DEFAULT_MAX_MESSAGE_BYTES
    assert options["grpc.enable_retries"] == 1
    policy = json.loads(options["grpc.service_config"])["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert policy["maxAttempts"] == 4
    assert dict(channel_options(retry=None))["grpc.enable_retries"] == 0
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=9)


async def test_default_deadline_applies_when_caller_sets_none() -> None:
    async with running(slow_service(1.0)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=0.1)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "slow")(StringValue(value="x"))
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in method(channel, "unary_stream", "slow_stream")(StringValue(value="x")):
                    pass
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await channel.close()


async def test_explicit_timeout_wins_over_default() -> None:
    async with running(slow_service(0.3)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=0.05)
        try:
            response = await method(channel, "unary_unary", "slow")(StringValue(value="x"), timeout=3)
            assert response.value == "x"
        finally:
            await channel.close()


async def test_sync_channel_default_deadline_and_explicit_timeout() -> None:
    async with running(slow_service(0.3)) as runner:
        target = f"127.0.0.1:{runner.port}"

        def calls() -> tuple[grpc.StatusCode, str]:
            with insecure_channel(target, default_timeout_s=0.05) as channel:
                wait_until_serving_sync(channel, timeout_s=3)
                slow = method(channel, "unary_unary", "slow")
                try:
                    slow(StringValue(value="x"))
                except grpc.RpcError as error:
                    code = error.code()
                else:
                    raise AssertionError("no deadline applied")
                return code, slow(StringValue(value="y"), timeout=3).value

        assert await asyncio.to_thread(calls) == (grpc.StatusCode.DEADLINE_EXCEEDED, "y")


def flaky_service(attempts: list[str], failures: int, error: Exception) -> grpc.GenericRpcHandler:
    async def flaky(request: StringValue, context: Any) -> StringValue:
        attempts.append(request.value)
        if len(attempts) <= failures:
            raise error
        return StringValue(value=f"ok after {len(attempts)}")

    return handlers(flaky=unary_unary(flaky))


async def test_unavailable_is_retried_by_grpc() -> None:
    attempts: list[str] = []
    async with running(flaky_service(attempts, 2, Unavailable("warming up"))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=FAST_RETRY)
        try:
            response = await method(channel, "unary_unary", "flaky")(StringValue(value="x"))
        finally:
            await channel.close()
    assert response.value == "ok after 3"
    assert attempts == ["x", "x", "x"]


async def test_sync_channel_retries_unavailable_too() -> None:
    attempts: list[str] = []
    async with running(flaky_service(attempts, 2, Unavailable("warming up"))) as runner:
        target = f"127.0.0.1:{runner.port}"

        def call() -> str:
            with insecure_channel(target, retry=FAST_RETRY) as channel:
                return str(method(channel, "unary_unary", "flaky")(StringValue(value="s")).value)

        assert await asyncio.to_thread(call) == "ok after 3"
    assert len(attempts) == 3


async def test_invalid_argument_is_not_retried() -> None:
    attempts: list[str] = []
    async with running(flaky_service(attempts, 5, InvalidArgument("amount", "negative"))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=FAST_RETRY)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "flaky")(StringValue(value="x"))
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(attempts) == 1


async def test_retries_give_up_after_max_attempts() -> None:
    attempts: list[str] = []
    async with running(flaky_service(attempts, 10, Unavailable("down"))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=FAST_RETRY)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "flaky")(StringValue(value="x"))
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(attempts) == FAST_RETRY.max_attempts

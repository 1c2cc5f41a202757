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
from kit_support import handlers, method, running, stream_stream, stream_unary, unary_stream, unary_unary

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


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retryable_status_codes": ()}, "retryable_status_codes"),
        ({"retryable_status_codes": ("UNAVAILABEL",)}, "retryable_status_codes"),
        ({"retryable_status_codes": ("OK",)}, "retryable_status_codes"),
        ({"retryable_status_codes": "UNAVAILABLE"}, "retryable_status_codes"),
        ({"initial_backoff_s": float("inf"), "max_backoff_s": float("inf")}, "initial_backoff_s"),
        ({"max_backoff_s": float("nan")}, "max_backoff_s"),
        ({"initial_backoff_s": 0}, "initial_backoff_s"),
        ({"initial_backoff_s": -1}, "initial_backoff_s"),
        ({"initial_backoff_s": 1e-12, "max_backoff_s": 1e-12}, "initial_backoff_s"),
        ({"backoff_multiplier": 0}, "backoff_multiplier"),
        ({"backoff_multiplier": float("inf")}, "backoff_multiplier"),
        ({"initial_backoff_s": 3.0, "max_backoff_s": 2.0}, "max_backoff_s"),
        ({"max_attempts": 1}, "max_attempts"),
        ({"max_attempts": 6}, "max_attempts"),
        ({"max_attempts": 3.0}, "max_attempts"),
    ],
)
def test_bad_retry_policy_fails_at_construction_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**kwargs)


def test_retry_policy_normalizes_codes_and_formats_durations() -> None:
    policy = RetryPolicy(
        retryable_status_codes=("unavailable", grpc.StatusCode.RESOURCE_EXHAUSTED, "UNAVAILABLE"),
        initial_backoff_s=0.001,
        max_backoff_s=2,
    )
    assert policy.retryable_status_codes == ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    config = json.loads(policy.service_config())["methodConfig"][0]["retryPolicy"]
    assert (config["initialBackoff"], config["maxBackoff"]) == ("0.001000000s", "2s")
    assert config["retryableStatusCodes"] == ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]


async def test_valid_policy_with_tiny_backoff_makes_a_working_channel() -> None:
    async with running(slow_service(0)) as runner:
        policy = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001, max_attempts=5)
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=policy)
        try:
            assert (await method(channel, "unary_unary", "slow")(StringValue(value="x"))).value == "x"
        finally:
            await channel.close()


def long_streams(duration_s: float) -> grpc.GenericRpcHandler:
    """Streams that last ``duration_s`` (a response every 0.1 s), and a unary-response twin."""

    async def watch(request: StringValue, context: Any) -> Any:
        for i in range(round(duration_s / 0.1)):
            await asyncio.sleep(0.1)
            yield StringValue(value=str(i))

    async def chat(requests: Any, context: Any) -> Any:
        async for request in requests:
            yield request
        await asyncio.sleep(duration_s)
        yield StringValue(value="end")

    async def upload(requests: Any, context: Any) -> StringValue:
        async for _ in requests:
            pass
        await asyncio.sleep(duration_s)
        return StringValue(value="stored")

    return handlers(watch=unary_stream(watch), chat=stream_stream(chat), upload=stream_unary(upload))


async def test_default_deadline_applies_to_unary_response_calls_only() -> None:
    async with running(slow_service(0.6)) as runner, running(long_streams(0.6)) as streams:
        channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=0.2)
        streaming = aio_channel(f"127.0.0.1:{streams.port}", default_timeout_s=0.2)
        try:
            # unary-unary and stream-unary: the default deadline applies.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "slow")(StringValue(value="x"))
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(streaming, "stream_unary", "upload")(iter([StringValue(value="a")]))
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # Response streams outlive the default deadline (WatchAliases, Health/Watch...).
            watched = [r.value async for r in method(streaming, "unary_stream", "watch")(StringValue())]
            assert len(watched) == 6
            chat = method(streaming, "stream_stream", "chat")(iter([StringValue(value="hi")]))
            assert [r.value async for r in chat] == ["hi", "end"]
            # ... unless the caller bounds them.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in method(streaming, "unary_stream", "watch")(StringValue(), timeout=0.2):
                    pass
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await channel.close()
            await streaming.close()


async def test_sync_channel_streams_get_no_default_deadline() -> None:
    async with running(long_streams(0.5)) as runner:
        target = f"127.0.0.1:{runner.port}"

        def calls() -> tuple[int, grpc.StatusCode]:
            with insecure_channel(target, default_timeout_s=0.2) as channel:
                count = len(list(method(channel, "unary_stream", "watch")(StringValue())))
                try:
                    method(channel, "stream_unary", "upload")(iter([StringValue(value="a")]))
                except grpc.RpcError as error:
                    return count, error.code()
                raise AssertionError("no default deadline on stream-unary")

        assert await asyncio.to_thread(calls) == (5, grpc.StatusCode.DEADLINE_EXCEEDED)


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

"""ServiceRunner: health transitions (Check, Watch, List), reflection, message limits, NOT_SERVING then
drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import grpc
import grpc.aio
import pytest
from creditrisk_kit import LIVENESS_SERVICE, ServiceRunner, aio_channel, wait_until_serving
from creditrisk_kit.health import HEALTH_LIST_REQUEST, HEALTH_LIST_RESPONSE, LIST_METHOD, MAX_LISTED_SERVICES
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kit_support import SERVICE, handlers, method, running, unary_unary

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def status(channel: grpc.aio.Channel, service: str = "") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2
    )
    return int(response.status)


async def eventually(
    channel: grpc.aio.Channel, expected: int, service: str = "", within_s: float = 3
) -> None:
    deadline = time.monotonic() + within_s
    while (current := await status(channel, service)) != expected:
        assert time.monotonic() < deadline, f"health of {service!r} stayed {current}, expected {expected}"
        await asyncio.sleep(0.02)


async def test_health_follows_readiness_checks() -> None:
    backend = {"answers": False}

    async def backend_answers() -> bool:
        if backend["answers"] is None:
            raise ConnectionError("connection refused")
        return backend["answers"]

    async with running(checks={"online store": backend_answers}) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            # NOT_SERVING until the backend answers, for the server as a whole and each service.
            await asyncio.sleep(0.15)  # several check rounds
            assert await status(channel) == NOT_SERVING
            assert await status(channel, SERVICE) == NOT_SERVING
            assert await status(channel, LIVENESS_SERVICE) == SERVING
            assert not runner.ready

            backend["answers"] = True
            await wait_until_serving(channel, timeout_s=3)
            await eventually(channel, SERVING, SERVICE)
            assert runner.ready

            backend["answers"] = None  # the check starts failing (raises)
            await eventually(channel, NOT_SERVING)
            await eventually(channel, NOT_SERVING, SERVICE)
            assert await status(channel, LIVENESS_SERVICE) == SERVING

            backend["answers"] = True
            await eventually(channel, SERVING)
        finally:
            await channel.close()


async def test_slow_check_counts_as_failing() -> None:
    async def hangs() -> None:
        await asyncio.sleep(10)

    async with running(checks={"slow": hangs}, health_check_interval_s=0.05) as runner:
        assert await runner.check_readiness() is False


async def test_no_checks_means_serving_and_wait_until_serving_times_out_otherwise() -> None:
    async with running() as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            await wait_until_serving(channel, timeout_s=3)
        finally:
            await channel.close()

    async def never() -> bool:
        return False

    async with running(checks={"never": never}) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            with pytest.raises(TimeoutError, match="NOT_SERVING"):
                await wait_until_serving(channel, timeout_s=0.3)
        finally:
            await channel.close()


async def test_reflection_lists_services() -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with running() as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        try:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            names: list[str] = []
            async for response in stub.ServerReflectionInfo(iter([request])):
                names += [s.name for s in response.list_services_response.service]
        finally:
            await channel.close()
    assert {SERVICE, "grpc.health.v1.Health"} <= set(names)


async def test_message_limit_from_settings() -> None:
    async def echo(request: StringValue, context: Any) -> StringValue:
        return request

    async with running(handlers(echo=unary_unary(echo)), max_message_bytes=1024) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            ok = await method(channel, "unary_unary", "echo")(StringValue(value="x" * 100))
            assert ok.value == "x" * 100
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "echo")(StringValue(value="x" * 4096))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            await channel.close()


async def test_health_goes_not_serving_before_the_drain_starts() -> None:
    async with running() as runner:
        assert runner.server is not None
        channel = aio_channel(f"127.0.0.1:{runner.port}")
        await wait_until_serving(channel, timeout_s=3)
        await channel.close()
        seen_at_stop: dict[str, int] = {}
        real_stop = runner.server.stop

        async def spy_stop(grace: float | None) -> None:
            for name in ("", SERVICE, LIVENESS_SERVICE):
                response = await runner.health.Check(health_pb2.HealthCheckRequest(service=name), None)
                seen_at_stop[name] = response.status
            await real_stop(grace)

        runner.server.stop = spy_stop  # type: ignore[method-assign]
        runner.handle_signal(signal.SIGTERM)
        await asyncio.wait_for(runner.wait_for_termination(), 5)
    assert seen_at_stop == {"": NOT_SERVING, SERVICE: NOT_SERVING, LIVENESS_SERVICE: NOT_SERVING}


async def test_sigterm_drains_in_flight_call_refuses_new_ones_then_runs_hooks() -> None:
    entered = asyncio.Event()
    finished: list[str] = []

    async def slow(request: StringValue, context: Any) -> StringValue:
        entered.set()
        await asyncio.sleep(0.5)
        finished.append(request.value)
        return StringValue(value="done " + request.value)

    async def echo(request: StringValue, context: Any) -> StringValue:
        return request

    hook_saw: list[list[str]] = []

    async def hook() -> None:
        hook_saw.append(list(finished))

    from kit_support import settings as make_settings

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handlers(slow=unary_unary(slow), echo=unary_unary(echo)),))

    grace_s = 3.0
    runner = ServiceRunner(
        make_settings(grace_period_s=grace_s),
        service_names=[SERVICE],
        register=register,
        shutdown_hooks=[hook],
    )
    port = await runner.start()
    channel = aio_channel(f"127.0.0.1:{port}", retry=None)
    fresh = aio_channel(f"127.0.0.1:{port}", retry=None)
    runner.install_signal_handlers()
    try:
        in_flight = asyncio.ensure_future(method(channel, "unary_unary", "slow")(StringValue(value="a")))
        await asyncio.wait_for(entered.wait(), 5)
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: runner.handle_signal
        for _ in range(400):  # the loop runs the signal handler soon
            if runner.stopping:
                break
            await asyncio.sleep(0.005)
        assert runner.stopping
        await asyncio.sleep(0.05)  # let server.stop() begin
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await method(fresh, "unary_unary", "echo")(StringValue(value="b"), timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        response = await in_flight
        assert response.value == "done a"
        await asyncio.wait_for(runner.wait_for_termination(), grace_s + 1)
        assert time.monotonic() - started < grace_s
    finally:
        runner.remove_signal_handlers()
        await runner.stop()
        await channel.close()
        await fresh.close()
    assert hook_saw == [["a"]]  # the hook ran once, after the in-flight call finished


async def test_grace_period_cancels_calls_that_outlive_it() -> None:
    entered = asyncio.Event()

    async def forever(request: StringValue, context: Any) -> StringValue:
        entered.set()
        await asyncio.sleep(30)
        return request

    async with running(handlers(forever=unary_unary(forever)), grace_period_s=0.2) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            call = asyncio.ensure_future(method(channel, "unary_unary", "forever")(StringValue(value="x")))
            await asyncio.wait_for(entered.wait(), 5)
            started = time.monotonic()
            await runner.stop()
            assert time.monotonic() - started < 1.5
            with pytest.raises(grpc.aio.AioRpcError):
                await call
        finally:
            await channel.close()


async def test_port_already_taken_fails_to_start() -> None:
    async with running() as first:
        from kit_support import settings as make_settings

        second = ServiceRunner(
            make_settings(port=first.port), service_names=[SERVICE], register=lambda server: None
        )
        with pytest.raises(RuntimeError, match="bind"):
            await second.start()


async def test_open_health_watch_does_not_hold_the_drain() -> None:
    grace_s = 5.0
    async with running(grace_period_s=grace_s) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            await wait_until_serving(channel, timeout_s=3)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            unknown = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="no.such.Service")
            )
            assert (await watch.read()).status == SERVING
            assert (await unknown.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            started = time.monotonic()
            await runner.stop()
            assert time.monotonic() - started < 1.0  # not the 5 s grace period
            # The watcher saw NOT_SERVING, then its stream ended normally.
            rest = [response.status async for response in watch]
            assert rest == [NOT_SERVING]
            assert await watch.code() == grpc.StatusCode.OK
            assert [r.status async for r in unknown] == []
            assert await unknown.code() == grpc.StatusCode.OK
        finally:
            await channel.close()


async def test_health_watch_follows_status_changes() -> None:
    async with running() as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            await wait_until_serving(channel, timeout_s=3)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="x.Y"))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            await runner.health.set("x.Y", SERVING)
            assert (await watch.read()).status == SERVING
            await runner.health.set("x.Y", NOT_SERVING)
            assert (await watch.read()).status == NOT_SERVING
            watch.cancel()
        finally:
            await channel.close()


async def _list(channel: grpc.aio.Channel) -> dict[str, int]:
    """``Health/List`` with the kit's message classes (the generated ones when installed)."""
    list_call = channel.unary_unary(
        LIST_METHOD,
        request_serializer=HEALTH_LIST_REQUEST.SerializeToString,
        response_deserializer=HEALTH_LIST_RESPONSE.FromString,
    )
    response = await list_call(HEALTH_LIST_REQUEST(), timeout=2)
    return {name: int(value.status) for name, value in response.statuses.items()}


async def test_health_list_answers_every_name_and_its_status() -> None:
    backend = {"answers": False}

    async def backend_answers() -> bool:
        return backend["answers"]

    async with running(checks={"store": backend_answers}) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            await asyncio.sleep(0.15)  # several check rounds, all failing
            assert await _list(channel) == {"": NOT_SERVING, SERVICE: NOT_SERVING, LIVENESS_SERVICE: SERVING}
            backend["answers"] = True
            await wait_until_serving(channel, timeout_s=3)
            await eventually(channel, SERVING, SERVICE)
            assert await _list(channel) == {"": SERVING, SERVICE: SERVING, LIVENESS_SERVICE: SERVING}
            await runner.health.enter_graceful_shutdown()
            assert set((await _list(channel)).values()) == {NOT_SERVING}
        finally:
            await channel.close()


async def test_health_list_beyond_the_limit_is_resource_exhausted() -> None:
    async with running() as runner:
        for index in range(MAX_LISTED_SERVICES):
            await runner.health.set(f"extra-{index}", SERVING)
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _list(channel)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"more than the {MAX_LISTED_SERVICES}" in (refused.value.details() or "")
        finally:
            await channel.close()

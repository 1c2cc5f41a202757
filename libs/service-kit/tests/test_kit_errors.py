"""ErrorInterceptor: every domain exception -> its code, message and rich details, all RPC kinds."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from creditrisk_kit import (
    MAX_DETAIL_TEXT_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    MAX_VIOLATIONS,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    aio_channel,
)
from google.protobuf.wrappers_pb2 import StringValue
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kit_support import handlers, method, running, stream_stream, stream_unary, unary_stream, unary_unary

CASES: list[tuple[ServiceError, grpc.StatusCode, int, str, type | None]] = [
    (
        InvalidArgument("applicant.age", "must be >= 18"),
        grpc.StatusCode.INVALID_ARGUMENT,
        422,
        "applicant.age",
        error_details_pb2.BadRequest,
    ),
    (
        NotFound("registered model", "credit-risk"),
        grpc.StatusCode.NOT_FOUND,
        404,
        "credit-risk",
        error_details_pb2.ResourceInfo,
    ),
    (
        FailedPrecondition(
            "promotion gate failed", [PreconditionViolation("PROMOTION_GATE", "credit-risk/7", "AUC below")]
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        400,
        "promotion gate",
        error_details_pb2.PreconditionFailure,
    ),
    (Unauthenticated(), grpc.StatusCode.UNAUTHENTICATED, 401, "credentials", None),
    (PermissionDenied("not an admin"), grpc.StatusCode.PERMISSION_DENIED, 403, "not an admin", None),
    (
        ResourceExhausted("queue full", retry_after_s=1.5),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        429,
        "queue full",
        error_details_pb2.RetryInfo,
    ),
    (Unavailable("online store down"), grpc.StatusCode.UNAVAILABLE, 503, "online store", None),
    (DeadlineExceeded("feature lookup"), grpc.StatusCode.DEADLINE_EXCEEDED, 504, "feature lookup", None),
]

KINDS = ["unary_unary", "unary_stream", "stream_unary", "stream_stream"]


def raising_service(exc: BaseException) -> grpc.GenericRpcHandler:
    async def uu(request: StringValue, context: Any) -> StringValue:
        raise exc

    async def us(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
        yield StringValue(value="first")
        raise exc

    async def su(requests: AsyncIterator[StringValue], context: Any) -> StringValue:
        async for _ in requests:
            pass
        raise exc

    async def ss(requests: AsyncIterator[StringValue], context: Any) -> AsyncIterator[StringValue]:
        async for request in requests:
            yield request
        raise exc

    return handlers(
        unary_unary=unary_unary(uu),
        unary_stream=unary_stream(us),
        stream_unary=stream_unary(su),
        stream_stream=stream_stream(ss),
    )


async def call(channel: grpc.aio.Channel, kind: str) -> tuple[list[str], grpc.aio.AioRpcError]:
    """Call method ``kind``; returns the responses received before the error, and the error."""
    received: list[str] = []
    multicallable = method(channel, kind, kind)
    try:
        if kind == "unary_unary":
            await multicallable(StringValue(value="x"))
        elif kind == "unary_stream":
            async for response in multicallable(StringValue(value="x")):
                received.append(response.value)
        elif kind == "stream_unary":
            await multicallable(iter([StringValue(value="a"), StringValue(value="b")]))
        else:
            async for response in multicallable(iter([StringValue(value="a")])):
                received.append(response.value)
    except grpc.aio.AioRpcError as error:
        return received, error
    raise AssertionError(f"{kind} did not fail")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("exc", "code", "http", "named", "detail_type"), CASES, ids=lambda v: type(v).__name__
)
async def test_domain_error_maps_to_status_with_details(
    kind: str, exc: ServiceError, code: grpc.StatusCode, http: int, named: str, detail_type: type | None
) -> None:
    assert exc.grpc_status_code() == code
    assert exc.http_status_code() == http
    async with running(raising_service(exc)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            received, error = await call(channel, kind)
        finally:
            await channel.close()
    assert error.code() == code
    assert named in error.details()
    if kind in ("unary_stream", "stream_stream"):
        assert received == ["first"] if kind == "unary_stream" else received == ["a"]
    # grpcio-status decodes the rich status; from_call checks code and message agree with it.
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.code == code.value[0]
    assert status.message == error.details()
    if detail_type is None:
        assert list(status.details) == []
    else:
        assert len(status.details) == 1
        detail = detail_type()
        assert status.details[0].Unpack(detail)
        if isinstance(detail, error_details_pb2.BadRequest):
            assert [v.field for v in detail.field_violations] == ["applicant.age"]
        if isinstance(detail, error_details_pb2.ResourceInfo):
            assert (detail.resource_type, detail.resource_name) == ("registered model", "credit-risk")
        if isinstance(detail, error_details_pb2.RetryInfo):
            assert detail.retry_delay.ToNanoseconds() == 1_500_000_000


def test_invalid_argument_with_several_fields() -> None:
    exc = InvalidArgument.from_violations([FieldViolation("a", "missing"), FieldViolation("b.c", "negative")])
    assert "'a'" in exc.message
    assert "1 more" in exc.message
    detail = error_details_pb2.BadRequest()
    assert exc.to_rpc_status().details[0].Unpack(detail)
    assert [(v.field, v.description) for v in detail.field_violations] == [
        ("a", "missing"),
        ("b.c", "negative"),
    ]
    with pytest.raises(ValueError, match="at least one"):
        InvalidArgument.from_violations([])


@pytest.mark.parametrize("kind", KINDS)
async def test_unexpected_exception_is_internal_with_generic_message_and_logged_traceback(
    kind: str, caplog: pytest.LogCaptureFixture, spans: Any
) -> None:
    secret = "database password is hunter2"
    caplog.set_level(logging.ERROR, logger="creditrisk_kit.interceptors")
    async with running(raising_service(RuntimeError(secret))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            _, error = await call(channel, kind)
        finally:
            await channel.close()
    assert error.code() == grpc.StatusCode.INTERNAL
    assert secret not in error.details()
    match = re.fullmatch(r"internal error; see server log, trace id ([0-9a-f]{32})", error.details())
    assert match, error.details()
    records = [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError
    assert f"/{kind}" in records[0].getMessage()
    assert "Traceback" in caplog.text
    assert secret in caplog.text
    # The trace id in the message is the server span's.
    server_spans = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert any(format(s.context.trace_id, "032x") == match.group(1) for s in server_spans)


async def test_context_abort_passes_through(caplog: pytest.LogCaptureFixture) -> None:
    async def uu(request: StringValue, context: Any) -> StringValue:
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, "model version 3 exists")
        raise AssertionError("unreachable")

    async def us(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
        yield StringValue(value="one")
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "page 9 of 3")

    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    async with running(handlers(uu=unary_unary(uu), us=unary_stream(us))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "uu")(StringValue(value="x"))
            assert (info.value.code(), info.value.details()) == (
                grpc.StatusCode.ALREADY_EXISTS,
                "model version 3 exists",
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in method(channel, "unary_stream", "us")(StringValue(value="x")):
                    pass
            assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        finally:
            await channel.close()
    assert not [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]


async def test_client_cancellation_propagates_to_handler_and_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered = asyncio.Event()
    handler_cancelled = asyncio.Event()

    async def slow(request: StringValue, context: Any) -> StringValue:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return request

    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    async with running(handlers(slow=unary_unary(slow))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            pending = method(channel, "unary_unary", "slow")(StringValue(value="x"))
            await asyncio.wait_for(entered.wait(), 5)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            await asyncio.wait_for(handler_cancelled.wait(), 5)
        finally:
            await channel.close()
    assert not [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]


async def test_stray_cancelled_error_while_call_is_live_becomes_cancelled() -> None:
    async def stray(request: StringValue, context: Any) -> StringValue:
        inner = asyncio.get_running_loop().create_future()
        inner.cancel()
        await inner  # raises CancelledError, but this task was not asked to cancel
        return request

    async with running(handlers(stray=unary_unary(stray))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "stray")(StringValue(value="x"), timeout=5)
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.CANCELLED


# ------------------------------------------------------------------- size caps of the error details


async def unary_error(exc: BaseException) -> grpc.aio.AioRpcError:
    async with running(raising_service(exc)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            _, error = await call(channel, "unary_unary")
        finally:
            await channel.close()
    return error


def trailer_bytes(error: grpc.aio.AioRpcError) -> int:
    return sum(len(k) + len(v) for k, v in (error.trailing_metadata() or ()))


async def test_300_violations_reach_the_client_capped_and_decodable() -> None:
    violations = [FieldViolation(f"rows[{i}].applicant.income", "must be >= 0") for i in range(300)]
    error = await unary_error(InvalidArgument.from_violations(violations))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rows[0].applicant.income" in error.details()
    assert "299 more" in error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    entries = [(v.field, v.description) for v in detail.field_violations]
    assert len(entries) == MAX_VIOLATIONS + 1
    assert entries[0] == ("rows[0].applicant.income", "must be >= 0")
    assert entries[MAX_VIOLATIONS - 1][0] == f"rows[{MAX_VIOLATIONS - 1}].applicant.income"
    assert entries[-1] == ("...", f"({300 - MAX_VIOLATIONS} more)")
    assert trailer_bytes(error) < 8 * 1024


@pytest.mark.parametrize(
    "exc",
    [
        FailedPrecondition("x" * 20_000),
        InvalidArgument("applicant.notes", "y" * 20_000),
        FailedPrecondition("é" * 10_000, [PreconditionViolation("T", "s" * 5000, "d" * 5000)] * 80),
        InvalidArgument.from_violations([FieldViolation("f" * 300, "r" * 20_000)] * 60),
        NotFound("model", "m" * 20_000, description="d" * 20_000),
    ],
    ids=["message", "reason", "non-ascii-message-and-long-violations", "long-violations", "not-found"],
)
async def test_huge_message_or_details_reach_the_client_truncated(exc: ServiceError) -> None:
    error = await unary_error(exc)
    assert error.code() == exc.grpc_status_code()
    assert len(error.details().encode()) <= MAX_MESSAGE_BYTES
    assert error.details().endswith("... (truncated)")
    status = rpc_status.from_call(error)  # decodable, and agrees with code and message
    assert status is not None
    assert status.ByteSize() <= MAX_STATUS_BYTES
    assert len(status.details) == len(exc.details())
    assert trailer_bytes(error) < 8 * 1024


def test_details_bigger_than_the_cap_are_dropped_keeping_code_and_message() -> None:
    class Chatty(FailedPrecondition):
        def details(self) -> list[Any]:
            return [error_details_pb2.DebugInfo(detail="z" * 10_000)]

    status = Chatty("too much").to_rpc_status()
    assert (status.code, status.message, list(status.details)) == (9, "too much", [])


def test_to_rpc_status_uses_grpc_status_code() -> None:
    class Throttled(ServiceError):
        def grpc_status_code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

    assert Throttled("slow down").to_rpc_status().code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


# ---------------------------------------------------------------------------- holes in the mapping


async def assert_internal_and_logged(
    exc: BaseException, caplog: pytest.LogCaptureFixture, leaked: str, logged_type: type
) -> None:
    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    error = await unary_error(exc)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert leaked not in error.details()
    assert re.fullmatch(r"internal error; see server log, trace id [0-9a-f]{32}", error.details())
    [record] = [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is logged_type


async def test_bare_service_error_is_internal_with_generic_message(caplog: pytest.LogCaptureFixture) -> None:
    await assert_internal_and_logged(ServiceError("db row 42 of alice"), caplog, "alice", ServiceError)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
async def test_system_exit_in_a_handler_is_internal_and_the_server_keeps_serving(
    exc_type: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="creditrisk_kit.interceptors")
    state = {"raised": False}

    async def once(request: StringValue, context: Any) -> StringValue:
        if not state["raised"]:
            state["raised"] = True
            raise exc_type("bye")
        return request

    async with running(handlers(once=unary_unary(once))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "once")(StringValue(value="x"))
            assert info.value.code() == grpc.StatusCode.INTERNAL
            response = await method(channel, "unary_unary", "once")(StringValue(value="still here"))
            assert response.value == "still here"
        finally:
            await channel.close()
    [record] = [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]
    assert record.exc_info is not None
    assert record.exc_info[0] is exc_type


async def fail_in_task_group(*excs: BaseException) -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    async with asyncio.TaskGroup() as group:
        for exc in excs:
            group.create_task(fail(exc))


def task_group_service(*excs: BaseException) -> grpc.GenericRpcHandler:
    async def uu(request: StringValue, context: Any) -> StringValue:
        await fail_in_task_group(*excs)
        return request

    async def us(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
        yield StringValue(value="first")
        await fail_in_task_group(*excs)

    return handlers(unary_unary=unary_unary(uu), unary_stream=unary_stream(us))


@pytest.mark.parametrize("kind", ["unary_unary", "unary_stream"])
@pytest.mark.parametrize(
    ("excs", "code", "named"),
    [
        (
            (NotFound("feature view", "fv1"), NotFound("feature view", "fv2")),
            grpc.StatusCode.NOT_FOUND,
            "fv1",
        ),
        ((RuntimeError("boom"), NotFound("feature view", "fv1")), grpc.StatusCode.NOT_FOUND, "fv1"),
        (
            (InvalidArgument("a", "missing"), Unavailable("store down")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'a'",
        ),
        ((RuntimeError("boom"), ValueError("bad")), grpc.StatusCode.INTERNAL, "internal error"),
    ],
    ids=["same-code", "unexpected-and-domain", "first-domain", "no-domain"],
)
async def test_exception_group_maps_to_its_first_domain_error(
    kind: str,
    excs: tuple[BaseException, ...],
    code: grpc.StatusCode,
    named: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    async with running(task_group_service(*excs)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            _, error = await call(channel, kind)
        finally:
            await channel.close()
    assert error.code() == code
    assert named in error.details()
    assert "boom" not in error.details()
    if code != grpc.StatusCode.INTERNAL:
        assert rpc_status.from_call(error) is not None
    # An unexpected leaf is always logged with its traceback, even when a domain error decides.
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert bool(errors) == any(isinstance(e, RuntimeError) for e in excs)


def downstream_service(downstream_target: str, timeout: float | None) -> grpc.GenericRpcHandler:
    async def uu(request: StringValue, context: Any) -> StringValue:
        channel = aio_channel(downstream_target, retry=None)
        try:
            response: StringValue = await method(channel, "unary_unary", "unary_unary")(
                request, timeout=timeout
            )
            return response
        finally:
            await channel.close()

    async def timeout_error(request: StringValue, context: Any) -> StringValue:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
        return request

    return handlers(unary_unary=unary_unary(uu), timeout_error=unary_unary(timeout_error))


@pytest.mark.parametrize(
    ("downstream_error", "call_timeout_s", "code"),
    [
        (Unavailable("online store down, applicant 4711"), None, grpc.StatusCode.UNAVAILABLE),
        (RuntimeError("applicant 4711"), 0.05, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
    ids=["unavailable", "deadline"],
)
async def test_downstream_unavailable_or_deadline_propagates_as_retryable_code(
    downstream_error: BaseException, call_timeout_s: float | None, code: grpc.StatusCode
) -> None:
    async def slow_then_fail(request: StringValue, context: Any) -> StringValue:
        if call_timeout_s is not None:
            await asyncio.sleep(1)
        raise downstream_error

    async with (
        running(handlers(unary_unary=unary_unary(slow_then_fail))) as downstream,
        running(downstream_service(f"127.0.0.1:{downstream.port}", call_timeout_s)) as upstream,
    ):
        channel = aio_channel(f"127.0.0.1:{upstream.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "unary_unary")(StringValue(value="x"))
        finally:
            await channel.close()
    assert info.value.code() == code
    assert "4711" not in info.value.details()
    assert info.value.details().startswith("a dependency ")


async def test_builtin_timeout_error_is_deadline_exceeded() -> None:
    async with running(downstream_service("127.0.0.1:1", None)) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "timeout_error")(StringValue(value="x"))
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_domain_error_is_logged_at_info_with_code_method_and_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    exc = InvalidArgument.from_violations(
        [FieldViolation("applicant.age", "must be >= 18"), FieldViolation("amount", "< 0")]
    )
    await unary_error(exc)
    [record] = [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "INVALID_ARGUMENT" in text
    assert "/unary_unary" in text
    assert "applicant.age" in text
    assert "amount" in text
    assert record.grpc_code == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    assert record.fields == ["applicant.age", "amount"]  # type: ignore[attr-defined]
    assert record.rpc_method.endswith("/unary_unary")  # type: ignore[attr-defined]


async def test_the_log_line_of_a_refusal_is_bounded_like_the_status(caplog: pytest.LogCaptureFixture) -> None:
    # A field path may hold a client's column name: one of a megabyte, 60 bad rows, once made a
    # 100 MB log record (message and extra) while the status itself was capped.
    name = "c" * 1_000_000

    async def refuse(request: StringValue, context: Any) -> StringValue:
        raise InvalidArgument.from_violations([FieldViolation(f"{name}[{i}]", "bad") for i in range(60)])

    caplog.set_level(logging.INFO, logger="creditrisk_kit.interceptors")
    async with running(handlers(refuse=unary_unary(refuse))) as runner:
        channel = aio_channel(f"127.0.0.1:{runner.port}", retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(channel, "unary_unary", "refuse")(StringValue(value="x"), timeout=5)
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (record,) = [r for r in caplog.records if r.name == "creditrisk_kit.interceptors"]
    assert len(record.getMessage()) < 32_000
    assert len(record.fields) == MAX_VIOLATIONS + 1
    assert record.fields[-1] == "..."
    assert all(len(f.encode()) <= MAX_DETAIL_TEXT_BYTES for f in record.fields)

"""The one server interceptor of the kit: exceptions -> gRPC status with rich details.

Behaviour, for all four RPC kinds (streaming handlers are async generators):

* A domain error (a :class:`~creditrisk_kit.errors.ServiceError` whose ``grpc_status_code()`` is
  not INTERNAL) -> that code and its message, with its ``google.rpc.Status`` (error details,
  capped in size, see :mod:`creditrisk_kit.errors`) in the ``grpc-status-details-bin`` trailer,
  the grpcio-status encoding (``rpc_status.to_status``). Logged at INFO with the code, the RPC
  method and the field names (``rpc_method``, ``grpc_code``, ``fields`` extras).
* The bare ``ServiceError`` (or a subclass mapping to INTERNAL) is not a domain error: it is
  handled as an unexpected exception (below); its message never reaches the caller.
* A downstream call failing with UNAVAILABLE or DEADLINE_EXCEEDED (``grpc.RpcError``, sync or
  ``grpc.aio.AioRpcError``) -> the same code, with a generic message
  (:data:`DEPENDENCY_MESSAGE`; the downstream's own message may carry data and is only logged),
  so that the caller may retry. The builtin ``TimeoutError`` -> DEADLINE_EXCEEDED. Logged at
  WARNING. Other downstream codes are our bug: INTERNAL.
* An ``ExceptionGroup`` (``asyncio.TaskGroup``): its leaves are looked at, depth first. If one or
  more are domain errors, the first domain error decides (so when all leaves are domain errors of
  one code, that code); else the first downstream UNAVAILABLE / DEADLINE_EXCEEDED / timeout leaf
  decides; else INTERNAL. Leaves that are unexpected exceptions are logged at ERROR with the
  traceback in every case.
* ``context.abort(...)`` in a handler (``grpc.aio.AbortError``) passes through untouched.
* ``asyncio.CancelledError`` because the call was cancelled (client gone, deadline passed, server
  stopping) is re-raised, never swallowed; a stray ``CancelledError`` from an inner awaitable while
  the call is still live becomes CANCELLED.
* Anything else, ``SystemExit`` and ``KeyboardInterrupt`` raised by a handler included (they must
  not stop the server) -> INTERNAL with a generic message (``"internal error; see server log,
  trace id <32 hex>"``) and a full server-side log entry with the traceback.

Server-side this runs inside the OpenTelemetry server span (the instrumentation's interceptor is
the outermost), so the trace id in the message and in the log entry is the call's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import grpc.aio
from grpc_status import rpc_status
from opentelemetry import trace

from .errors import ServiceError

_LOGGER = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; see server log, trace id {trace_id}"
"""Template of the message an unexpected exception becomes (the caller learns nothing else)."""

DEPENDENCY_MESSAGE = "a dependency {what}; trace id {trace_id}"
"""Template of the message of a downstream UNAVAILABLE / DEADLINE_EXCEEDED (retryable)."""

_RETRYABLE_DOWNSTREAM = {
    grpc.StatusCode.UNAVAILABLE: "is unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "did not answer in time",
}


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def is_domain_error(exc: BaseException) -> bool:
    """True for a :class:`ServiceError` that maps to a code other than INTERNAL."""
    return isinstance(exc, ServiceError) and exc.grpc_status_code() != grpc.StatusCode.INTERNAL


def _downstream_code(exc: BaseException) -> grpc.StatusCode | None:
    """UNAVAILABLE / DEADLINE_EXCEEDED for a retryable downstream failure or a timeout, else None."""
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        try:
            code = exc.code()
        except Exception:  # pragma: no cover - a broken RpcError subclass
            return None
        if code in _RETRYABLE_DOWNSTREAM:
            return code
    return None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


@dataclass(frozen=True)
class _Mapped:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...] = ()


def _map(exc: BaseException, method: str) -> _Mapped:
    """The status ``exc`` maps to (see the module docstring); logs it."""
    leaves = list(_leaves(exc))
    grouped = isinstance(exc, BaseExceptionGroup)
    domain = next((leaf for leaf in leaves if is_domain_error(leaf)), None)
    downstream = next((leaf for leaf in leaves if _downstream_code(leaf) is not None), None)
    unexpected = [leaf for leaf in leaves if not is_domain_error(leaf) and _downstream_code(leaf) is None]
    if grouped and unexpected and (domain is not None or downstream is not None):
        # The status comes from a mapped leaf; the unexpected ones still deserve a traceback.
        trace.get_current_span().record_exception(exc)
        _LOGGER.error(
            "unhandled exception(s) in %s, in a group with a mapped error",
            method,
            exc_info=exc,
            extra={"rpc_method": method},
        )
    if isinstance(domain, ServiceError):
        status = rpc_status.to_status(domain.to_rpc_status())
        fields = domain.log_fields()
        _LOGGER.info(
            "%s failed: %s %s%s",
            method,
            status.code.name,
            status.details,
            f" (fields: {', '.join(fields)})" if fields else "",
            extra={"rpc_method": method, "grpc_code": status.code.name, "fields": fields},
        )
        return _Mapped(status.code, status.details, status.trailing_metadata)
    if downstream is not None:
        code = _downstream_code(downstream)
        assert code is not None
        _LOGGER.warning(
            "%s failed: %s from a dependency (%s)",
            method,
            code.name,
            type(downstream).__name__,
            exc_info=downstream,
            extra={"rpc_method": method, "grpc_code": code.name},
        )
        what = _RETRYABLE_DOWNSTREAM[code]
        return _Mapped(code, DEPENDENCY_MESSAGE.format(what=what, trace_id=_trace_id() or "none"))
    if isinstance(exc, asyncio.CancelledError):
        _LOGGER.warning("%s: stray CancelledError while the call was live; CANCELLED", method)
        return _Mapped(grpc.StatusCode.CANCELLED, "cancelled")
    trace.get_current_span().record_exception(exc)
    _LOGGER.error(
        "unhandled exception in %s",
        method,
        exc_info=exc,
        extra={"rpc_method": method, "grpc_code": "INTERNAL"},
    )
    return _Mapped(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE.format(trace_id=_trace_id() or "none"))


async def _abort_for(
    exc: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> NoReturn:
    """Abort the call with the status ``exc`` maps to; always raises (``grpc.aio.AbortError``)."""
    mapped = _map(exc, method)
    # abort() rather than abort_with_status(): the OpenTelemetry context wrapper overrides abort()
    # only, so this way the server span records the status too. abort() raises AbortError.
    await context.abort(mapped.code, mapped.details, mapped.trailing_metadata)
    raise AssertionError("context.abort() returned")  # pragma: no cover


def _should_reraise(exc: BaseException) -> bool:
    # GeneratorExit: a streaming wrapper being closed, not a handler failure.
    if isinstance(exc, grpc.aio.AbortError | GeneratorExit):
        return True
    return isinstance(exc, asyncio.CancelledError) and _being_cancelled()


def _wrap_unary_response(
    behavior: Callable[..., Any], method: str
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result
        except BaseException as exc:  # SystemExit / KeyboardInterrupt too: INTERNAL, not a dead server
            if _should_reraise(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapper


async def stream_responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a server-streaming handler's ``result``, whatever its kind: an async
    iterator, a plain iterator, or an awaitable (a coroutine handler that writes with
    ``context.write()`` and returns None: nothing to yield). Shared by the kit's interceptors."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    elif inspect.isawaitable(result):
        await result
    else:
        for response in result:
            yield response


def _wrap_stream_response(
    behavior: Callable[..., Any], method: str
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for response in stream_responses(behavior(request, context)):
                yield response
        except BaseException as exc:  # SystemExit / KeyboardInterrupt too: INTERNAL, not a dead server
            if _should_reraise(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapper


Wrap = Callable[[Callable[..., Any], str], Callable[..., Any]]
"""Wraps one handler behaviour; called with the behaviour and its RPC type (``unary``,
``server_stream``, ``client_stream``, ``bidi_stream``)."""


def rewrap_handler(handler: grpc.RpcMethodHandler, unary: Wrap, stream: Wrap) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: by ``unary`` when the response is one message
    (unary-unary, stream-unary), by ``stream`` when it is a stream; serializers kept. The kit's
    server interceptors (errors, metrics) share this."""
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, "unary"), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream, "server_stream"), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, "client_stream"), **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream, "bidi_stream"), **options)
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps exceptions raised by ``grpc.aio`` handlers to statuses (see the module docstring)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(getattr(handler_call_details, "method", ""))
        return rewrap_handler(
            handler,
            lambda behavior, _rpc_type: _wrap_unary_response(behavior, method),
            lambda behavior, _rpc_type: _wrap_stream_response(behavior, method),
        )

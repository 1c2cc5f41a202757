"""The one server interceptor of the kit: domain exceptions -> gRPC status with rich details.

Behaviour, for all four RPC kinds (streaming handlers are async generators):

* :class:`~creditrisk_kit.errors.ServiceError` -> its status code and message, with its
  ``google.rpc.Status`` (error details) in the ``grpc-status-details-bin`` trailer, the
  grpcio-status encoding (``rpc_status.to_status``).
* ``context.abort(...)`` in a handler (``grpc.aio.AbortError``) passes through untouched.
* ``asyncio.CancelledError`` because the call was cancelled (client gone, deadline passed, server
  stopping) is re-raised, never swallowed; a stray ``CancelledError`` from an inner awaitable while
  the call is still live becomes CANCELLED.
* Anything else -> INTERNAL with a generic message (``"internal error; see server log, trace id
  <32 hex>"``) and a full server-side log entry with the traceback.

Server-side this runs inside the OpenTelemetry server span (the instrumentation's interceptor is
the outermost), so the trace id in the message and in the log entry is the call's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import grpc.aio
from grpc_status import rpc_status
from opentelemetry import trace

from .errors import ServiceError

_LOGGER = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; see server log, trace id {trace_id}"
"""Template of the message an unexpected exception becomes (the caller learns nothing else)."""


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _abort_for(
    exc: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> NoReturn:
    """Abort the call with the status ``exc`` maps to; always raises (``grpc.aio.AbortError``)."""
    trailing_metadata: tuple[tuple[str, bytes], ...] = ()
    if isinstance(exc, ServiceError):
        status = rpc_status.to_status(exc.to_rpc_status())
        code, details, trailing_metadata = status.code, status.details, status.trailing_metadata
        _LOGGER.info(
            "%s failed: %s %s",
            method,
            code.name,
            details,
            extra={"rpc_method": method, "grpc_code": code.name},
        )
    elif isinstance(exc, asyncio.CancelledError):
        code, details = grpc.StatusCode.CANCELLED, "cancelled"
        _LOGGER.warning("%s: stray CancelledError while the call was live; CANCELLED", method)
    else:
        trace.get_current_span().record_exception(exc)
        code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE.format(trace_id=_trace_id() or "none")
        _LOGGER.error(
            "unhandled exception in %s",
            method,
            exc_info=exc,
            extra={"rpc_method": method, "grpc_code": "INTERNAL"},
        )
    # abort() rather than abort_with_status(): the OpenTelemetry context wrapper overrides abort()
    # only, so this way the server span records the status too. abort() raises AbortError.
    await context.abort(code, details, trailing_metadata)
    raise AssertionError("context.abort() returned")  # pragma: no cover


def _should_reraise(exc: BaseException) -> bool:
    if isinstance(exc, grpc.aio.AbortError):
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
        except (Exception, asyncio.CancelledError) as exc:
            if _should_reraise(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapper


def _wrap_stream_response(
    behavior: Callable[..., Any], method: str
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            elif inspect.isawaitable(result):
                # A coroutine handler that writes with context.write() and returns None.
                await result
            else:
                for response in result:
                    yield response
        except (Exception, asyncio.CancelledError) as exc:
            if _should_reraise(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapper


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
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(handler.unary_unary, method), **options
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(handler.unary_stream, method), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(handler.stream_unary, method), **options
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(handler.stream_stream, method), **options
            )
        return handler

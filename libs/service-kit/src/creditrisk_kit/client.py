"""gRPC channels to the platform's services: message limits, a default deadline, retries.

Every channel made here (sync :func:`insecure_channel`, asyncio :func:`aio_channel`) has:

* ``grpc.max_send_message_length`` / ``grpc.max_receive_message_length`` of ``max_message_bytes``
  (default 4 MiB, gRPC's default receive limit; keep it equal to the server's);
* a default per-call deadline, applied by a client interceptor only when the caller set none
  (``timeout=`` on the call always wins);
* retries **on UNAVAILABLE only**, done by gRPC itself from the channel's service config
  (``grpc.service_config`` with a ``retryPolicy``, ``grpc.enable_retries=1``), not by a loop of
  ours. UNAVAILABLE is the one code that is safe to retry for any method: either the call never
  reached a handler (connection refused or reset, server draining) or the handler itself said
  "try again" (:class:`~creditrisk_kit.errors.Unavailable`). gRPC retries only while no response
  header has been received, within the call's deadline, with exponential backoff and full jitter
  (each delay is uniform in ``[0, current_backoff]``; gRPC A6 retry design);
* OpenTelemetry client spans and ``traceparent`` propagation (``instrument_grpc()`` is called
  first unless ``instrument=False``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from creditrisk_telemetry import instrument_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .settings import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT_S = 5.0
"""Default per-call deadline in seconds (our choice: far above one online hop's p99, tens of ms,
and below the usual 30-60 s of HTTP gateways; long calls such as training pass their own)."""

ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's own retry policy (service config ``retryPolicy``) for UNAVAILABLE.

    Attributes:
        max_attempts: Attempts in all, the first one included; gRPC caps it at 5.
        initial_backoff_s: Upper bound of the first delay, in seconds.
        max_backoff_s: Upper bound of any delay, in seconds.
        backoff_multiplier: Growth of the bound after each attempt.
        retryable_status_codes: Codes gRPC retries; keep to UNAVAILABLE unless every method of
            the target is idempotent.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be 2..5 (gRPC caps retries at 5 attempts)")
        if self.initial_backoff_s <= 0 or self.max_backoff_s <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and multiplier must be > 0")

    def service_config(self) -> str:
        """The JSON service config applying this policy to every method of the channel."""
        return json.dumps(
            {
                "methodConfig": [
                    {
                        # An empty name matches every service and method of the channel.
                        "name": [{}],
                        "retryPolicy": {
                            "maxAttempts": self.max_attempts,
                            "initialBackoff": f"{self.initial_backoff_s:.9f}s",
                            "maxBackoff": f"{self.max_backoff_s:.9f}s",
                            "backoffMultiplier": self.backoff_multiplier,
                            "retryableStatusCodes": list(self.retryable_status_codes),
                        },
                    }
                ]
            }
        )


def channel_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry: RetryPolicy | None = RetryPolicy(),
    extra: ChannelOptions = (),
) -> list[tuple[str, Any]]:
    """Channel arguments for message limits and retries.

    Args:
        max_message_bytes: Send and receive limit, in bytes.
        retry: Retry policy; None turns gRPC retries off.
        extra: Further channel arguments, appended last (they win).

    Returns:
        A list of ``(name, value)`` channel arguments.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    if retry is None:
        options.append(("grpc.enable_retries", 0))
    else:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", retry.service_config())]
    options += list(extra)
    return options


def _instrument() -> None:
    instrument_grpc()


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Mutable-by-copy ``grpc.ClientCallDetails`` for the sync interceptor."""


class _DefaultTimeoutInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Sets ``timeout`` on calls that have none (sync channels)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def _details(self, details: Any) -> Any:
        if details.timeout is not None:
            return details
        return _CallDetails(
            details.method,
            self._timeout_s,
            details.metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _cancel_with_task(call: Any) -> Any:
    """Cancel ``call`` when the interceptor task running it is cancelled.

    Works around open-telemetry/opentelemetry-python-contrib#3271: the OpenTelemetry aio client
    interceptor of a unary-response call awaits ``call.code()`` inside the interceptor task, so
    ``cancel()`` on the caller's call (or cancelling the caller's task) stops that await but leaves
    the RPC running on the server until its deadline. The kit's interceptor is the innermost one
    and runs in the same task, so it ties the RPC to that task.
    """
    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(lambda done: call.cancel() if done.cancelled() else None)
    return call


def _aio_details(details: Any, timeout_s: float | None) -> Any:
    if details.timeout is not None or timeout_s is None:
        return details
    return grpc.aio.ClientCallDetails(
        details.method, timeout_s, details.metadata, details.credentials, details.wait_for_ready
    )


class _AioUnaryUnaryTimeout(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, timeout_s: float | None) -> None:
        self._timeout_s = timeout_s

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return _cancel_with_task(await continuation(_aio_details(details, self._timeout_s), request))


class _AioUnaryStreamTimeout(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, timeout_s: float | None) -> None:
        self._timeout_s = timeout_s

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_aio_details(details, self._timeout_s), request)


class _AioStreamUnaryTimeout(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, timeout_s: float | None) -> None:
        self._timeout_s = timeout_s

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return _cancel_with_task(await continuation(_aio_details(details, self._timeout_s), requests))


class _AioStreamStreamTimeout(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, timeout_s: float | None) -> None:
        self._timeout_s = timeout_s

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(_aio_details(details, self._timeout_s), requests)


def default_timeout_interceptors(timeout_s: float | None) -> list[Any]:
    """``grpc.aio`` client interceptors setting ``timeout_s`` on calls without a deadline.

    They also tie a unary-response RPC to the caller's cancellation (see ``_cancel_with_task``);
    with ``timeout_s=None`` they do only that.
    """
    return [
        _AioUnaryUnaryTimeout(timeout_s),
        _AioUnaryStreamTimeout(timeout_s),
        _AioStreamUnaryTimeout(timeout_s),
        _AioStreamStreamTimeout(timeout_s),
    ]


def insecure_channel(
    target: str,
    *,
    default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry: RetryPolicy | None = RetryPolicy(),
    credentials: grpc.ChannelCredentials | None = None,
    options: ChannelOptions = (),
    instrument: bool = True,
) -> grpc.Channel:
    """A sync channel (thread-safe) with the kit's defaults (see the module docstring).

    Args:
        target: ``host:port`` or any gRPC target URI (``dns:///feature-service:50051``).
        default_timeout_s: Deadline in seconds for calls made without ``timeout=``; None: no default.
        max_message_bytes: Send and receive limit, in bytes (default 4 MiB, gRPC's).
        retry: Retry policy for UNAVAILABLE; None turns retries off.
        credentials: When given, a TLS channel (``grpc.secure_channel``) despite the name.
        options: Further channel arguments (they win).
        instrument: Call ``creditrisk_telemetry.instrument_grpc()`` first, for client spans.

    Returns:
        A ``grpc.Channel``; close it (``channel.close()`` or ``with``) when done.
    """
    if instrument:
        _instrument()
    opts = channel_options(max_message_bytes=max_message_bytes, retry=retry, extra=options)
    if credentials is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        channel = grpc.secure_channel(target, credentials, options=opts)
    if default_timeout_s is not None:
        channel = grpc.intercept_channel(channel, _DefaultTimeoutInterceptor(default_timeout_s))
    return channel


def aio_channel(
    target: str,
    *,
    default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry: RetryPolicy | None = RetryPolicy(),
    credentials: grpc.ChannelCredentials | None = None,
    options: ChannelOptions = (),
    interceptors: Sequence[Any] = (),
    instrument: bool = True,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel with the kit's defaults (see the module docstring).

    Args:
        target: ``host:port`` or any gRPC target URI.
        default_timeout_s: Deadline in seconds for calls made without ``timeout=``; None: no default.
        max_message_bytes: Send and receive limit, in bytes (default 4 MiB, gRPC's).
        retry: Retry policy for UNAVAILABLE; None turns retries off.
        credentials: When given, a TLS channel.
        options: Further channel arguments (they win).
        interceptors: Further ``grpc.aio`` client interceptors, run inside the kit's.
        instrument: Call ``creditrisk_telemetry.instrument_grpc()`` first, for client spans.

    Returns:
        A ``grpc.aio.Channel``, bound to the running event loop; ``await channel.close()`` when done.
    """
    if instrument:
        _instrument()
    opts = channel_options(max_message_bytes=max_message_bytes, retry=retry, extra=options)
    chain = [*default_timeout_interceptors(default_timeout_s), *interceptors]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=chain)
    return grpc.aio.secure_channel(target, credentials, options=opts, interceptors=chain)


async def wait_until_serving(
    channel: grpc.aio.Channel,
    service: str = "",
    *,
    timeout_s: float = 30.0,
    poll_interval_s: float = 0.1,
) -> None:
    """Poll ``grpc.health.v1.Health/Check`` until ``service`` reports SERVING.

    Args:
        channel: Channel to the server.
        service: Health service name; ``""`` is the server as a whole.
        timeout_s: Give up after this many seconds.
        poll_interval_s: Pause between two checks, in seconds.

    Raises:
        TimeoutError: When not SERVING within ``timeout_s``; the message has the last status or error.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"health of {service!r} not SERVING after {timeout_s} s (last: {last})")
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=max(min(remaining, 1.0), 0.01)
            )
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except grpc.aio.AioRpcError as exc:
            last = exc.code().name
        await asyncio.sleep(min(poll_interval_s, max(deadline - time.monotonic(), 0)))


def wait_until_serving_sync(
    channel: grpc.Channel,
    service: str = "",
    *,
    timeout_s: float = 30.0,
    poll_interval_s: float = 0.1,
) -> None:
    """Sync twin of :func:`wait_until_serving` (same arguments and errors)."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"health of {service!r} not SERVING after {timeout_s} s (last: {last})")
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=max(min(remaining, 1.0), 0.01)
            )
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except grpc.RpcError as exc:
            last = exc.code().name
        time.sleep(min(poll_interval_s, max(deadline - time.monotonic(), 0)))

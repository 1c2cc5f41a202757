"""gRPC channels to the platform's services: message limits, a default deadline, retries.

Every channel made here (sync :func:`insecure_channel`, asyncio :func:`aio_channel`) has:

* ``grpc.max_send_message_length`` / ``grpc.max_receive_message_length`` of ``max_message_bytes``
  (default 4 MiB, gRPC's default receive limit; keep it equal to the server's);
* a default per-call deadline for **unary-response** calls (unary-unary, stream-unary), applied
  by a client interceptor only when the caller set none (``timeout=`` on the call always wins).
  Calls with a response stream (unary-stream, stream-stream: ``WatchAliases``,
  ``WatchTrainingJob``, ``Health/Watch``, Arrow downloads) get **no** default deadline, since they
  are meant to last; pass ``timeout=`` to bound one;
* retries **on UNAVAILABLE only**, done by gRPC itself from the channel's service config
  (``grpc.service_config`` with a ``retryPolicy``, ``grpc.enable_retries=1``), not by a loop of
  ours. UNAVAILABLE is the one code that is safe to retry for any method: either the call never
  reached a handler (connection refused or reset, server draining) or the handler itself said
  "try again" (:class:`~creditrisk_kit.errors.Unavailable`). gRPC retries only while no response
  header has been received, within the call's deadline, with exponential backoff and full jitter
  (each delay is uniform in ``[0, current_backoff]``; gRPC A6 retry design);
* OpenTelemetry client spans and ``traceparent`` propagation (``instrument_grpc()`` is called
  first unless ``instrument=False``);
* TLS (and a client certificate for mutual TLS) when given ``tls=ClientTls.from_settings(settings)``
  (:mod:`creditrisk_kit.tls`) or ``credentials``; plaintext otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from creditrisk_telemetry import instrument_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .settings import DEFAULT_MAX_MESSAGE_BYTES
from .tls import ClientTls

DEFAULT_TIMEOUT_S = 5.0
"""Default per-call deadline in seconds (our choice: far above one online hop's p99, tens of ms,
and below the usual 30-60 s of HTTP gateways; long calls such as training pass their own)."""

ChannelOptions = Sequence[tuple[str, Any]]


_RETRYABLE_CODE_NAMES = frozenset(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _duration(seconds: float) -> str:
    """Seconds as a JSON ``google.protobuf.Duration`` (``"0.100s"``; exact to the nanosecond)."""
    whole, nanos = divmod(_nanoseconds(seconds), 1_000_000_000)
    return f"{whole}.{nanos:09d}s" if nanos else f"{whole}s"


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's own retry policy (service config ``retryPolicy``) for UNAVAILABLE.

    Attributes:
        max_attempts: Attempts in all, the first one included; gRPC caps it at 5.
        initial_backoff_s: Upper bound of the first delay, in seconds.
        max_backoff_s: Upper bound of any delay, in seconds.
        backoff_multiplier: Growth of the bound after each attempt.
        retryable_status_codes: Codes gRPC retries, canonical names (case-insensitive, stored
            upper case) or ``grpc.StatusCode`` members; keep to UNAVAILABLE unless every method of
            the target is idempotent.

    Validated at construction (``ValueError`` naming the field): gRPC itself would reject a bad
    policy only at channel creation, making every call fail with INVALID_ARGUMENT "Failed to
    create channel ... service config", which looks like a request validation error. Backoffs must
    be finite, at least 1 ms, and ``max_backoff_s >= initial_backoff_s``.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        """Validate, so that a bad policy fails here and not as every call's INVALID_ARGUMENT.

        Raises:
            ValueError: Naming the offending field.
        """
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if not 2 <= self.max_attempts <= 5:
            raise ValueError(
                f"max_attempts must be 2..5 (gRPC caps retries at 5 attempts), got {self.max_attempts}"
            )
        for name in ("initial_backoff_s", "max_backoff_s", "backoff_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name in ("initial_backoff_s", "max_backoff_s"):
            if _nanoseconds(getattr(self, name)) < 1_000_000:
                raise ValueError(f"{name} must be at least 0.001 s, got {getattr(self, name)!r}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= "
                f"initial_backoff_s ({self.initial_backoff_s})"
            )
        codes = self.retryable_status_codes
        if isinstance(codes, str | bytes) or not isinstance(codes, Iterable):
            raise ValueError(
                "retryable_status_codes must be a sequence of code names such as ('UNAVAILABLE',), "
                f"got {codes!r}"
            )
        normalized: list[str] = []
        for code in codes:
            name = code.name if isinstance(code, grpc.StatusCode) else code
            if not isinstance(name, str) or name.upper() not in _RETRYABLE_CODE_NAMES:
                raise ValueError(
                    f"retryable_status_codes: unknown or non-retryable status code {code!r} "
                    "(use canonical names such as 'UNAVAILABLE'; OK is not retryable)"
                )
            if name.upper() not in normalized:
                normalized.append(name.upper())
        if not normalized:
            raise ValueError("retryable_status_codes must name at least one status code")
        object.__setattr__(self, "retryable_status_codes", tuple(normalized))

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
                            "initialBackoff": _duration(self.initial_backoff_s),
                            "maxBackoff": _duration(self.max_backoff_s),
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


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Mutable-by-copy ``grpc.ClientCallDetails`` for the sync interceptor."""


class _DefaultTimeoutInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
):
    """Sets ``timeout`` on unary-response calls that have none (sync channels).

    Response-streaming calls are not intercepted: they get no default deadline.
    """

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

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
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


class _AioUnaryResponseDefaults:
    """The default deadline and cancel-with-task for unary-response ``grpc.aio`` calls.

    grpc.aio files an interceptor under the first of the four interceptor types it is an instance
    of, so one implementation is declared once per type below.
    """

    def __init__(self, timeout_s: float | None) -> None:
        self._timeout_s = timeout_s

    async def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return _cancel_with_task(await continuation(_aio_details(details, self._timeout_s), request))

    intercept_unary_unary = _intercept
    intercept_stream_unary = _intercept


class _AioUnaryUnaryDefaults(_AioUnaryResponseDefaults, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    pass


class _AioStreamUnaryDefaults(_AioUnaryResponseDefaults, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    pass


def default_timeout_interceptors(timeout_s: float | None) -> list[Any]:
    """``grpc.aio`` client interceptors setting ``timeout_s`` on unary-response calls without one.

    They also tie a unary-response RPC to the caller's cancellation (see ``_cancel_with_task``);
    with ``timeout_s=None`` they do only that. Response-streaming calls are left alone: no default
    deadline.
    """
    return [_AioUnaryUnaryDefaults(timeout_s), _AioStreamUnaryDefaults(timeout_s)]


def _with_tls(
    credentials: grpc.ChannelCredentials | None, options: ChannelOptions, tls: ClientTls | None
) -> tuple[grpc.ChannelCredentials | None, ChannelOptions]:
    if tls is None or credentials is not None:
        return credentials, options
    return tls.grpc_credentials(), [*tls.grpc_options(), *options]


def insecure_channel(
    target: str,
    *,
    default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry: RetryPolicy | None = RetryPolicy(),
    credentials: grpc.ChannelCredentials | None = None,
    options: ChannelOptions = (),
    instrument: bool = True,
    tls: ClientTls | None = None,
) -> grpc.Channel:
    """A sync channel (thread-safe) with the kit's defaults (see the module docstring).

    Args:
        target: ``host:port`` or any gRPC target URI (``dns:///feature-service:50051``).
        default_timeout_s: Deadline in seconds for unary-response calls made without ``timeout=``
            (response-streaming calls never get one); None: no default.
        max_message_bytes: Send and receive limit, in bytes (default 4 MiB, gRPC's).
        retry: Retry policy for UNAVAILABLE; None turns retries off.
        credentials: When given, a TLS channel (``grpc.secure_channel``) despite the name.
        options: Further channel arguments (they win).
        instrument: Call ``creditrisk_telemetry.instrument_grpc()`` first, for client spans.
        tls: A TLS channel from these files (``ClientTls.from_settings(settings)``; its
            ``ssl_target_name_override`` if any), unless ``credentials`` is given.

    Returns:
        A ``grpc.Channel``; close it (``channel.close()`` or ``with``) when done.

    Raises:
        OSError: When a file of ``tls`` cannot be read.
    """
    if instrument:
        instrument_grpc()
    credentials, options = _with_tls(credentials, options, tls)
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
    tls: ClientTls | None = None,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel with the kit's defaults (see the module docstring).

    Args:
        target: ``host:port`` or any gRPC target URI.
        default_timeout_s: Deadline in seconds for unary-response calls made without ``timeout=``
            (response-streaming calls never get one); None: no default.
        max_message_bytes: Send and receive limit, in bytes (default 4 MiB, gRPC's).
        retry: Retry policy for UNAVAILABLE; None turns retries off.
        credentials: When given, a TLS channel.
        options: Further channel arguments (they win).
        interceptors: Further ``grpc.aio`` client interceptors, run inside the kit's.
        instrument: Call ``creditrisk_telemetry.instrument_grpc()`` first, for client spans.
        tls: A TLS channel from these files (``ClientTls.from_settings(settings)``; its
            ``ssl_target_name_override`` if any), unless ``credentials`` is given.

    Returns:
        A ``grpc.aio.Channel``, bound to the running event loop; ``await channel.close()`` when done.

    Raises:
        OSError: When a file of ``tls`` cannot be read.
    """
    if instrument:
        instrument_grpc()
    credentials, options = _with_tls(credentials, options, tls)
    opts = channel_options(max_message_bytes=max_message_bytes, retry=retry, extra=options)
    chain = [*default_timeout_interceptors(default_timeout_s), *interceptors]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=chain)
    return grpc.aio.secure_channel(target, credentials, options=opts, interceptors=chain)


class _HealthPoll:
    """What :func:`wait_until_serving` and its sync twin share: request, deadlines, verdict."""

    def __init__(self, service: str, timeout_s: float) -> None:
        self.request = health_pb2.HealthCheckRequest(service=service)
        self._service, self._timeout_s = service, timeout_s
        self._deadline = time.monotonic() + timeout_s
        self.last = "no answer"

    def call_timeout(self) -> float:
        """Deadline of the next check, in seconds.

        Raises:
            TimeoutError: When the overall time is up; the message has the last status or error.
        """
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"health of {self._service!r} not SERVING after {self._timeout_s} s (last: {self.last})"
            )
        return max(min(remaining, 1.0), 0.01)

    def serving(self, response: health_pb2.HealthCheckResponse) -> bool:
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return True
        self.last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return False

    def failed(self, error: grpc.RpcError) -> None:
        self.last = error.code().name

    def pause(self, poll_interval_s: float) -> float:
        return min(poll_interval_s, max(self._deadline - time.monotonic(), 0))


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
    poll = _HealthPoll(service, timeout_s)
    while True:
        try:
            if poll.serving(await stub.Check(poll.request, timeout=poll.call_timeout())):
                return
        except grpc.aio.AioRpcError as exc:
            poll.failed(exc)
        await asyncio.sleep(poll.pause(poll_interval_s))


def wait_until_serving_sync(
    channel: grpc.Channel,
    service: str = "",
    *,
    timeout_s: float = 30.0,
    poll_interval_s: float = 0.1,
) -> None:
    """Sync twin of :func:`wait_until_serving` (same arguments and errors)."""
    stub = health_pb2_grpc.HealthStub(channel)
    poll = _HealthPoll(service, timeout_s)
    while True:
        try:
            if poll.serving(stub.Check(poll.request, timeout=poll.call_timeout())):
                return
        except grpc.RpcError as exc:
            poll.failed(exc)
        time.sleep(poll.pause(poll_interval_s))

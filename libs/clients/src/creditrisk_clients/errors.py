"""A dependency's gRPC status as the caller's own error (:class:`creditrisk_kit.errors.ServiceError`).

One mapping for every client of :mod:`creditrisk_clients` and every service that calls another:

* UNAVAILABLE -> :class:`~creditrisk_kit.errors.Unavailable` (503: the caller may retry);
* DEADLINE_EXCEEDED -> :class:`~creditrisk_kit.errors.DeadlineExceeded` (504), or
  :class:`~creditrisk_kit.errors.Unavailable` with ``deadline_as_unavailable`` (a caller whose own
  contract names one "down or too slow" status, e.g. the inference-gateway);
* with ``failures_as_unavailable``: the dependency's own failures (:data:`BACKEND_FAILURES`:
  INTERNAL, UNKNOWN, ABORTED, RESOURCE_EXHAUSTED, DATA_LOSS) -> ``Unavailable`` naming the code;
* any code given a handler in ``on`` (NOT_FOUND naming what was asked for, INVALID_ARGUMENT naming
  the caller's request field, ...): the handler's answer; handlers win over the rules above;
* any other code: ``default``'s answer when the caller gives one (a caller whose contract reports
  every failure of the dependency as one status), else the original ``grpc.RpcError``, unchanged.
  The kit's server interceptor turns
  an unmapped dependency error into INTERNAL with its dependency message, so a caller's bad input
  never surfaces as a dependency's status by accident.

The dependency's own message is echoed only where a handler chooses to: the default messages name
the dependency and the status, never the downstream text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import NoReturn

import grpc
from creditrisk_kit.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable

#: A handler: the dependency's error -> the exception the caller raises.
Handler = Callable[[grpc.RpcError], Exception]

#: Codes that mean the dependency failed on its side (not the caller's request, not "down").
BACKEND_FAILURES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DATA_LOSS,
    }
)


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code of ``exc`` (a ``grpc.RpcError`` / ``AioRpcError``), else None."""
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    value = code()
    return value if isinstance(value, grpc.StatusCode) else None


def details_of(exc: BaseException) -> str:
    """The status message of a ``grpc.RpcError`` (``""`` when it has none)."""
    details = getattr(exc, "details", None)
    return str(details() or "") if callable(details) else ""


def dependency_status(exc: BaseException) -> grpc.StatusCode | None:
    """The dependency's status behind ``exc``: its own code, or its cause's when it was mapped.

    A mapped error is raised ``from`` the dependency's ``grpc.RpcError``; a caller that decides on
    the original code (e.g. "serve the last known answer while the dependency is down") reads it
    here.
    """
    own = status_of(exc)
    if own is not None:
        return own
    cause = exc.__cause__
    return status_of(cause) if cause is not None else None


def not_found(kind: str, name: str, *, description: str | None = None) -> Handler:
    """Handler: :class:`NotFound` of ``kind`` ``name``; the description is the dependency's
    message unless given."""

    def handle(exc: grpc.RpcError) -> Exception:
        return NotFound(kind, name, description=details_of(exc) if description is None else description)

    return handle


def invalid_argument(field_path: str, *, prefix: str = "rejected by the dependency") -> Handler:
    """Handler: :class:`InvalidArgument` naming the caller's request field ``field_path``, with the
    dependency's message after ``prefix``."""

    def handle(exc: grpc.RpcError) -> Exception:
        return InvalidArgument(field_path, f"{prefix}: {details_of(exc)}")

    return handle


def unavailable(message: str) -> Handler:
    """Handler: :class:`Unavailable` with ``message``."""

    def handle(exc: grpc.RpcError) -> Exception:
        return Unavailable(message)

    return handle


@dataclass(frozen=True)
class DownstreamErrors:
    """How a caller reports the errors of one dependency (see the module docstring).

    Attributes:
        dependency: The dependency's name in messages, e.g. ``"the feature-service"``.
        on: Handlers per status code; they win over the default rules.
        deadline_as_unavailable: DEADLINE_EXCEEDED -> ``Unavailable`` instead of ``DeadlineExceeded``.
        failures_as_unavailable: :data:`BACKEND_FAILURES` -> ``Unavailable``.
        unavailable_message / deadline_message: The default messages (None: from ``dependency``).
        default: Handler of every code no rule above maps (None: the original error is kept).
    """

    dependency: str
    on: Mapping[grpc.StatusCode, Handler] = field(default_factory=dict)
    deadline_as_unavailable: bool = False
    failures_as_unavailable: bool = False
    unavailable_message: str | None = None
    deadline_message: str | None = None
    default: Handler | None = None

    def with_handlers(self, handlers: Mapping[grpc.StatusCode, Handler]) -> DownstreamErrors:
        """A copy with ``handlers`` added (they win over this mapping's own)."""
        return replace(self, on={**self.on, **handlers})

    def map(self, exc: grpc.RpcError) -> Exception:
        """The exception to raise for the dependency's ``exc`` (``exc`` itself when unmapped).

        Raise the result ``from exc`` so that :func:`dependency_status` can read the original code.
        """
        original: Exception = exc
        code = status_of(exc)
        if code is None:
            return original
        handler = self.on.get(code)
        if handler is not None:
            return handler(exc)
        if code is grpc.StatusCode.UNAVAILABLE:
            return Unavailable(self.unavailable_message or f"{self.dependency} is unavailable; retry later")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            if self.deadline_as_unavailable:
                return Unavailable(
                    self.deadline_message
                    or self.unavailable_message
                    or f"{self.dependency} did not answer in time"
                )
            return DeadlineExceeded(self.deadline_message or f"{self.dependency} did not answer in time")
        if self.failures_as_unavailable and code in BACKEND_FAILURES:
            return Unavailable(f"{self.dependency} failed ({code.name}); see its log")
        return original if self.default is None else self.default(exc)

    def raise_for(self, exc: grpc.RpcError) -> NoReturn:
        """Raise :meth:`map`'s answer ``from exc`` (``exc`` itself, re-raised, when unmapped)."""
        mapped = self.map(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

"""Domain exceptions that cross the service boundary on purpose.

Each exception carries the gRPC status code and the HTTP status it maps to (feast ``errors.py``
style: :meth:`ServiceError.grpc_status_code`, :meth:`ServiceError.http_status_code`) and the rich
error details of Google's error model (``google.rpc.Status`` with ``google.rpc.error_details``
messages packed in ``Any``). :class:`creditrisk_kit.interceptors.ErrorInterceptor` turns them into
the call's status; a REST front end uses :meth:`ServiceError.http_status_code`.

HTTP statuses follow the mapping in ``google/rpc/code.proto``, except INVALID_ARGUMENT, which is
422 (the FastAPI convention for a request that parses but fails validation).

Messages name fields and things, never values (privacy, issue 10): ``InvalidArgument("applicant.age",
"must be >= 18")``, not ``"age 17 is below 18"``; never echo an applicant's feature values, a
secret or a downstream's message into a message or a detail. Messages and details reach the
caller and the INFO log line of the call.

Size caps (the status travels in HTTP/2 trailers: gRPC's metadata limit is 8 KiB soft / 16 KiB
hard, and a status over it reaches the client as RESOURCE_EXHAUSTED "received metadata size
exceeds hard limit", details lost):

* the message is cut to :data:`MAX_MESSAGE_BYTES` (1 KiB of UTF-8), ending ``"... (truncated)"``;
* each text of a detail (field path, description, subject...) is cut to
  :data:`MAX_DETAIL_TEXT_BYTES` (256 bytes);
* ``BadRequest`` / ``PreconditionFailure`` carry at most :data:`MAX_VIOLATIONS` (50) violations,
  fewer if their texts together exceed :data:`MAX_DETAILS_BYTES` (3 KiB); the rest are counted
  in one final entry whose description is ``"(K more)"`` (field / subject ``"..."``);
* a subclass's own details that still exceed :data:`MAX_STATUS_BYTES` (4 KiB serialized) are
  dropped (code and message are kept).

Worst case the trailers stay near 6 KiB (the serialized status is base64-encoded, the message is
percent-encoded in ``grpc-message``), well under the 8 KiB soft limit.

Clients decode the details with grpcio-status::

    from grpc_status import rpc_status
    status = rpc_status.from_call(error)       # google.rpc.Status, or None
    for detail in status.details: ...          # Any; .Is(BadRequest.DESCRIPTOR) / .Unpack(...)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

_LOGGER = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024
"""Longest status message sent, in UTF-8 bytes; longer ones are cut (see the module docstring)."""
MAX_DETAIL_TEXT_BYTES = 256
"""Longest text of one detail field (a field path, a description...), in UTF-8 bytes."""
MAX_VIOLATIONS = 50
"""Most violations sent in one ``BadRequest`` / ``PreconditionFailure``; the rest are counted."""
MAX_DETAILS_BYTES = 3 * 1024
"""Budget of the violations' texts together, in bytes; violations beyond it are counted."""
MAX_STATUS_BYTES = 4 * 1024
"""Largest serialized ``google.rpc.Status``; beyond it the details are dropped."""

_TRUNCATED = "... (truncated)"


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), marked as cut."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    keep = max(limit - len(_TRUNCATED), 0)
    return encoded[:keep].decode("utf-8", errors="ignore") + _TRUNCATED


def _capped[T](items: Sequence[T], texts: Callable[[T], Sequence[str]]) -> tuple[list[T], int]:
    """The leading items that fit :data:`MAX_VIOLATIONS` and :data:`MAX_DETAILS_BYTES`; how many not."""
    shown: list[T] = []
    used = 0
    for item in items[:MAX_VIOLATIONS]:
        size = sum(min(len(t.encode("utf-8")), MAX_DETAIL_TEXT_BYTES) + 4 for t in texts(item))
        if shown and used + size > MAX_DETAILS_BYTES:
            break
        shown.append(item)
        used += size
    return shown, len(items) - len(shown)


def _text(value: str) -> str:
    return truncate_utf8(value, MAX_DETAIL_TEXT_BYTES)


class ServiceError(Exception):
    """Base of the domain exceptions; raise a subclass.

    The base class (and any subclass whose :meth:`grpc_status_code` is INTERNAL) is not a domain
    error for :class:`~creditrisk_kit.interceptors.ErrorInterceptor`: it is handled as an
    unexpected exception (INTERNAL, generic message, traceback logged), so its message never
    reaches the caller.

    Args:
        message: The status message the caller sees; write it for the caller (names of fields
            and things, no values, no secrets, no stack traces). Cut to :data:`MAX_MESSAGE_BYTES`
            on the wire.
    """

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def grpc_status_code(self) -> grpc.StatusCode:
        """The gRPC status code of this error."""
        return self.grpc_code

    def http_status_code(self) -> int:
        """The HTTP status of this error (``google/rpc/code.proto`` mapping)."""
        return self.http_status

    def details(self) -> list[Message]:
        """The ``google.rpc.error_details`` messages sent with the status (none by default)."""
        return []

    def fields(self) -> tuple[str, ...]:
        """Names of the request fields this error is about (logged with the call; none by default)."""
        return ()

    def log_fields(self) -> list[str]:
        """:meth:`fields` as a log line carries them: the first :data:`MAX_VIOLATIONS`, each cut to
        :data:`MAX_DETAIL_TEXT_BYTES` (a field path may hold a client's name of megabytes), and
        ``"..."`` last when some were left out."""
        fields = self.fields()
        shown = [_text(f) for f in fields[:MAX_VIOLATIONS]]
        return [*shown, "..."] if len(fields) > MAX_VIOLATIONS else shown

    def to_rpc_status(self) -> status_pb2.Status:
        """This error as a ``google.rpc.Status``: code, message, details packed in ``Any``.

        The code is :meth:`grpc_status_code` (the one source of truth: a subclass overriding it
        is honoured); message and details are capped (see the module docstring).
        """
        packed = []
        for detail in self.details():
            any_detail = any_pb2.Any()
            any_detail.Pack(detail)
            packed.append(any_detail)
        code = self.grpc_status_code().value[0]
        message = truncate_utf8(self.message, MAX_MESSAGE_BYTES)
        status = status_pb2.Status(code=code, message=message, details=packed)
        if status.ByteSize() > MAX_STATUS_BYTES:
            _LOGGER.warning(
                "%s: error details of %d bytes exceed %d; sent without details",
                type(self).__name__,
                status.ByteSize(),
                MAX_STATUS_BYTES,
            )
            status = status_pb2.Status(code=code, message=message)
        return status

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request.

    Attributes:
        field: Path of the field, dotted for nested fields (``applicant.age``).
        reason: Why it is invalid, for the caller.
    """

    field: str
    reason: str


class InvalidArgument(ServiceError):
    """A request field is invalid: INVALID_ARGUMENT / 422, with ``google.rpc.BadRequest`` details.

    Args:
        field: Path of the offending field; the message names it.
        reason: Why the value is invalid.
        more: Further violations, reported in the details after the first one.
    """

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422

    def __init__(self, field: str, reason: str, *, more: Sequence[FieldViolation] = ()) -> None:
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, reason), *more)
        suffix = f" (and {len(more)} more)" if more else ""
        super().__init__(f"invalid argument {field!r}: {reason}{suffix}")
        self.field = field
        self.reason = reason

    @classmethod
    def from_violations(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        """One error for several invalid fields.

        Raises:
            ValueError: When ``violations`` is empty.
        """
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        first, *rest = violations
        return cls(first.field, first.reason, more=rest)

    def fields(self) -> tuple[str, ...]:
        return tuple(v.field for v in self.violations)

    def details(self) -> list[Message]:
        shown, more = _capped(self.violations, lambda v: (v.field, v.reason))
        entries = [
            error_details_pb2.BadRequest.FieldViolation(field=_text(v.field), description=_text(v.reason))
            for v in shown
        ]
        if more:
            entries.append(
                error_details_pb2.BadRequest.FieldViolation(field="...", description=f"({more} more)")
            )
        return [error_details_pb2.BadRequest(field_violations=entries)]


class NotFound(ServiceError):
    """A named resource does not exist: NOT_FOUND / 404, with ``google.rpc.ResourceInfo`` details.

    Args:
        kind: Resource type, e.g. ``"registered model"`` or ``"feature view"``.
        name: Resource name, e.g. ``"credit-risk"``.
        description: Optional extra text for the details.
    """

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404

    def __init__(self, kind: str, name: str, *, description: str = "") -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name
        self.description = description

    def details(self) -> list[Message]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=_text(self.kind),
                resource_name=_text(self.name),
                description=_text(self.description),
            )
        ]


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (``google.rpc.PreconditionFailure.Violation``).

    Attributes:
        type: Service-specific kind, e.g. ``"PROMOTION_GATE"``.
        subject: What failed, e.g. ``"credit-risk/7"``.
        description: How to fix it, for the caller.
    """

    type: str
    subject: str
    description: str


class FailedPrecondition(ServiceError):
    """The system is not in a state for this call: FAILED_PRECONDITION / 400.

    Carries ``google.rpc.PreconditionFailure`` details, one per violation.

    Args:
        message: What is wrong, for the caller.
        violations: The preconditions that failed.
    """

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400

    def __init__(self, message: str, violations: Sequence[PreconditionViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    def details(self) -> list[Message]:
        if not self.violations:
            return []
        shown, more = _capped(self.violations, lambda v: (v.type, v.subject, v.description))
        entries = [
            error_details_pb2.PreconditionFailure.Violation(
                type=_text(v.type), subject=_text(v.subject), description=_text(v.description)
            )
            for v in shown
        ]
        if more:
            entries.append(
                error_details_pb2.PreconditionFailure.Violation(
                    type="...", subject="...", description=f"({more} more)"
                )
            )
        return [error_details_pb2.PreconditionFailure(violations=entries)]


class Unauthenticated(ServiceError):
    """No valid credentials: UNAUTHENTICATED / 401."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message)


class PermissionDenied(ServiceError):
    """Authenticated but not allowed: PERMISSION_DENIED / 403."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403

    def __init__(self, message: str = "permission denied") -> None:
        super().__init__(message)


def _retry_info(retry_after_s: float | None) -> list[Message]:
    if retry_after_s is None:
        return []
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after_s * 1e9))
    return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhausted(ServiceError):
    """A quota or capacity is used up: RESOURCE_EXHAUSTED / 429.

    Args:
        message: What ran out.
        retry_after_s: When set, sent as ``google.rpc.RetryInfo`` (seconds).
    """

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429

    def __init__(self, message: str = "resource exhausted", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        return _retry_info(self.retry_after_s)


class Unavailable(ServiceError):
    """A backend is unreachable; the call may be retried: UNAVAILABLE / 503.

    The kit's clients retry UNAVAILABLE automatically (:mod:`creditrisk_kit.client`), so raise it
    only when retrying the whole call is safe.

    Args:
        message: What is unavailable.
        retry_after_s: When set, sent as ``google.rpc.RetryInfo`` (seconds).
    """

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503

    def __init__(self, message: str = "service unavailable", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        return _retry_info(self.retry_after_s)


class DeadlineExceeded(ServiceError):
    """A downstream step ran out of time: DEADLINE_EXCEEDED / 504."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504

    def __init__(self, message: str = "deadline exceeded") -> None:
        super().__init__(message)

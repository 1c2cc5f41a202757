"""Client timestamps, each parsed on its own, as aware UTC date-times.

A timestamp from a client is an ISO 8601 / RFC 3339 date-time string such as
``2024-03-01T09:30:00-03:00``, ``2024-03-01T12:30:00Z`` or ``2024-03-01 12:30:00``. Every value is
parsed **by itself**: its own offset, or none. Never parse a batch of client timestamps with one
inferred format (``pandas.to_datetime(..., format="ISO8601")`` infers the format, offset included,
from the first element and reads the rest with it: ``["2024-03-01T09:30:00-03:00",
"2024-03-01 11:00:00"]`` becomes 12:30Z and **14:00Z**, a point-in-time leak of three hours).

A value without an offset is read by the service's :data:`NaiveTimestamps` policy
(``<PREFIX>_NAIVE_TIMESTAMPS``, :class:`~creditrisk_kit.settings.ServiceSettings`):

* ``"utc"`` (default): it is a UTC time (Feast's rule for naive entity timestamps, and the
  contracts' rule for naive Arrow timestamp columns);
* ``"refuse"``: it is an error (INVALID_ARGUMENT / 422 naming the field and the row).

The grammar is RFC 3339's date-time with ISO 8601's common variants, and nothing else::

    YYYY-MM-DD [("T" | "t" | " ") hh:mm [:ss [.fraction]] [offset]]
    offset = "Z" | "z" | ("+" | "-") hh [[":"] mm]          hh 00-23, mm 00-59

Python's ``datetime.fromisoformat`` alone is laxer (any separator character, so
``2024-03-01+14:00`` would be 14:00 naive; offset minutes of 99; text after a NUL), so the grammar
is checked first. A fraction beyond microseconds is truncated. Instants must lie in
[:data:`MIN_TIME`, :data:`MAX_TIME`): inside pandas' ``datetime64[ns]`` range (1677-09-21 to
2262-04-11, the pandas documentation's "Timestamp limitations"), which Feast's offline stores
compute in, with room for a feature view's TTL.

Errors name the field (``entity_rows.event_timestamp[3]``), never the value (it may be an
applicant's data; see :mod:`creditrisk_kit.errors`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, get_args

from google.protobuf.timestamp_pb2 import Timestamp

from .errors import MAX_VIOLATIONS, FieldViolation, InvalidArgument

NaiveTimestamps = Literal["utc", "refuse"]
"""How a timestamp without a UTC offset is read: as UTC, or refused."""

NAIVE_POLICIES: tuple[str, ...] = get_args(NaiveTimestamps)

MIN_TIME = datetime(1700, 1, 1, tzinfo=UTC)
"""Earliest instant accepted (inclusive)."""
MAX_TIME = datetime(2262, 1, 1, tzinfo=UTC)
"""First instant refused (exclusive)."""
OUT_OF_RANGE = f"outside the accepted range [{MIN_TIME:%Y-%m-%d}, {MAX_TIME:%Y-%m-%d}) in UTC"
"""The reason given for an instant outside [MIN_TIME, MAX_TIME)."""

EXAMPLE = "2024-03-01T09:30:00Z"

OFFSET_PATTERN = r"[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?"
"""A UTC offset of the grammar (module docstring)."""
TIME_PATTERN = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
"""A time of day of the grammar."""
GRAMMAR_PATTERN = (
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    rf"(?:[Tt ](?P<time>{TIME_PATTERN})(?P<offset>{OFFSET_PATTERN})?)?"
)
"""A whole timestamp of the grammar (ASCII digits only); Python ``re`` and RE2 syntax alike."""

_GRAMMAR = re.compile(GRAMMAR_PATTERN, re.ASCII)


def check_policy(naive: str) -> None:
    """Raises ``ValueError`` unless ``naive`` is one of :data:`NAIVE_POLICIES`."""
    if naive not in NAIVE_POLICIES:
        raise ValueError(f"naive must be one of {NAIVE_POLICIES}, got {naive!r}")


def _offset(text: str) -> str:
    """A grammar offset as ``+hh:mm``."""
    if text in ("Z", "z"):
        return "+00:00"
    digits = text[1:].replace(":", "")
    return f"{text[0]}{digits[:2]}:{digits[2:] or '00'}"


def _reason(value: object, naive: NaiveTimestamps) -> tuple[datetime | None, str | None]:
    """``(parsed UTC datetime, None)`` or ``(None, why it is invalid)``."""
    if not isinstance(value, str):
        return None, f"expected an ISO 8601 date-time string such as {EXAMPLE}"
    text = value.strip()
    if not text:
        return None, f"empty: give an ISO 8601 date-time such as {EXAMPLE}"
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        return None, f"not an ISO 8601 date-time such as {EXAMPLE}"
    date, time, offset = match.group("date", "time", "offset")
    try:
        parsed = datetime.fromisoformat(f"{date}T{time}{_offset(offset) if offset else ''}" if time else date)
    except ValueError:
        return None, "not a valid date or time of day"
    if parsed.tzinfo is None:
        if naive == "refuse":
            return None, "has no UTC offset: add Z or +hh:mm (naive timestamps are refused here)"
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        parsed = MIN_TIME.replace(year=1)
    if not MIN_TIME <= parsed < MAX_TIME:
        return None, OUT_OF_RANGE
    return parsed, None


def parse_timestamp(value: object, *, field: str, naive: NaiveTimestamps = "utc") -> datetime:
    """One client timestamp as an aware UTC ``datetime``.

    Args:
        value: A timestamp string of the grammar (module docstring).
        field: Path of the field, for the error.
        naive: What a value without an offset means (module docstring).

    Raises:
        InvalidArgument: naming ``field``: not a string, not of the grammar, not a valid date or
            time, naive under ``"refuse"``, or outside [:data:`MIN_TIME`, :data:`MAX_TIME`).
        ValueError: ``naive`` is not a policy of :data:`NaiveTimestamps`.
    """
    check_policy(naive)
    parsed, reason = _reason(value, naive)
    if parsed is None:
        raise InvalidArgument(field, reason or "invalid")
    return parsed


def parse_timestamps(
    values: Iterable[object], *, field: str, naive: NaiveTimestamps = "utc"
) -> list[datetime]:
    """A batch of client timestamps, each parsed on its own (:func:`parse_timestamp`).

    Args:
        values: The strings, in row order.
        field: Path of the column; an error names the row as ``field[i]`` (0-based).
        naive: What a value without an offset means (module docstring).

    Returns:
        Aware UTC datetimes, one per value, in order.

    Raises:
        InvalidArgument: after every row was read, one violation per invalid row, the first
            :data:`~creditrisk_kit.errors.MAX_VIOLATIONS` of them (the first one's reason then
            says how many rows are invalid in all).
        ValueError: ``naive`` is not a policy of :data:`NaiveTimestamps`.
    """
    check_policy(naive)
    out: list[datetime] = []
    violations: list[FieldViolation] = []
    bad = 0
    for index, value in enumerate(values):
        parsed, reason = _reason(value, naive)
        if parsed is None:
            bad += 1
            if len(violations) < MAX_VIOLATIONS:
                violations.append(FieldViolation(f"{field}[{index}]", reason or "invalid"))
            continue
        out.append(parsed)
    if violations:
        if bad > len(violations):
            first = violations[0]
            violations[0] = FieldViolation(
                first.field, f"{first.reason} ({bad} invalid rows in all, the first {len(violations)} named)"
            )
        raise InvalidArgument.from_violations(violations)
    return out


def from_proto_timestamp(value: Timestamp, *, field: str) -> datetime:
    """A client's ``google.protobuf.Timestamp`` as an aware UTC ``datetime``.

    ``Timestamp.ToDatetime`` raises ``ValueError`` / ``OverflowError`` for ``nanos`` outside
    [0, 999999999] and ``seconds`` outside year 1 to 9999 (the ranges ``timestamp.proto``
    documents), and anything it returns outside [:data:`MIN_TIME`, :data:`MAX_TIME`) breaks the
    offline stores' ``datetime64[ns]`` arithmetic later; both are the client's mistake.

    Args:
        value: The message (an unset field reads as the epoch: check ``HasField`` first where
            unset has a meaning).
        field: Path of the field, for the error.

    Raises:
        InvalidArgument: naming ``field.nanos`` (out of [0, 999999999]) or ``field`` (outside
            [:data:`MIN_TIME`, :data:`MAX_TIME`)).
    """
    if not 0 <= value.nanos <= 999_999_999:
        raise InvalidArgument(f"{field}.nanos", "must be in [0, 999999999] (google.protobuf.Timestamp)")
    try:
        parsed = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, OUT_OF_RANGE) from None
    if not MIN_TIME <= parsed < MAX_TIME:
        raise InvalidArgument(field, OUT_OF_RANGE)
    return parsed

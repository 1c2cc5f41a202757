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

Errors name the field (``entity_rows.event_timestamp[3]``), never the value (it may be an
applicant's data; see :mod:`creditrisk_kit.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, get_args

from .errors import MAX_VIOLATIONS, FieldViolation, InvalidArgument

NaiveTimestamps = Literal["utc", "refuse"]
"""How a timestamp without a UTC offset is read: as UTC, or refused."""

NAIVE_POLICIES: tuple[str, ...] = get_args(NaiveTimestamps)

EXAMPLE = "2024-03-01T09:30:00Z"


def _check_policy(naive: str) -> None:
    if naive not in NAIVE_POLICIES:
        raise ValueError(f"naive must be one of {NAIVE_POLICIES}, got {naive!r}")


def _reason(value: object, naive: NaiveTimestamps) -> tuple[datetime | None, str | None]:
    """``(parsed UTC datetime, None)`` or ``(None, why it is invalid)``."""
    if not isinstance(value, str):
        return None, f"expected an ISO 8601 date-time string such as {EXAMPLE}"
    text = value.strip()
    if not text:
        return None, f"empty: give an ISO 8601 date-time such as {EXAMPLE}"
    if text[10:11] == "t" or text[-1:] == "z":  # RFC 3339 5.6: "T" and "Z" may be lower case
        text = f"{text[:10]}{text[10:11].upper()}{text[11:-1]}{text[-1:].upper()}" if len(text) > 11 else text
    try:
        # Python 3.11+: any ISO 8601 form, 'Z' included; each value with its own offset.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, f"not an ISO 8601 date-time such as {EXAMPLE}"
    if parsed.tzinfo is None:
        if naive == "refuse":
            return None, "has no UTC offset: add Z or +hh:mm (naive timestamps are refused here)"
        return parsed.replace(tzinfo=UTC), None
    try:
        return parsed.astimezone(UTC), None
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None, "outside the representable range (years 1-9999 in UTC)"


def parse_timestamp(value: object, *, field: str, naive: NaiveTimestamps = "utc") -> datetime:
    """One client timestamp as an aware UTC ``datetime``.

    Args:
        value: An ISO 8601 date-time string (``datetime.fromisoformat``'s grammar, Python 3.12:
            ``T`` or a space between date and time, ``Z`` or ``±hh:mm`` offsets, any number of
            fractional digits, kept to microseconds).
        field: Path of the field, for the error.
        naive: What a value without an offset means (module docstring).

    Raises:
        InvalidArgument: naming ``field``: not a string, not ISO 8601, naive under ``"refuse"``, or
            out of range once converted to UTC.
        ValueError: ``naive`` is not a policy of :data:`NaiveTimestamps`.
    """
    _check_policy(naive)
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
        InvalidArgument: one violation per invalid row (the first :data:`MAX_VIOLATIONS` kept,
            the rest counted), after every row was read.
        ValueError: ``naive`` is not a policy of :data:`NaiveTimestamps`.
    """
    _check_policy(naive)
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
            violations.append(FieldViolation(field, f"{bad - len(violations)} more invalid row(s)"))
        raise InvalidArgument.from_violations(violations)
    return out

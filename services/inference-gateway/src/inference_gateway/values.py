"""Feature values: ``common.v1.FeatureValue`` <-> plain Python, checked against declared types.

A value in the domain is ``int | float | str | bool | None`` (``None`` = missing). Doubles are
always finite: NaN and infinities become ``None`` when read from a backend and are refused in
requests, so no response or log event ever carries them (strict JSON).
"""

from __future__ import annotations

import math
from typing import Any

from creditrisk.common.v1 import values_pb2

Value = int | float | str | bool | None

INT64, DOUBLE, STRING, BOOL = (
    values_pb2.VALUE_TYPE_INT64,
    values_pb2.VALUE_TYPE_DOUBLE,
    values_pb2.VALUE_TYPE_STRING,
    values_pb2.VALUE_TYPE_BOOL,
)
TYPE_NAMES = {INT64: "INT64", DOUBLE: "DOUBLE", STRING: "STRING", BOOL: "BOOL"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def from_proto(value: values_pb2.FeatureValue) -> Value:
    """The Python value of a FeatureValue read from a backend (NaN / inf / unset -> None)."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    out = getattr(value, kind)
    if kind == "double_value" and not math.isfinite(out):
        return None
    return out  # type: ignore[no-any-return]


def to_proto(value: Value) -> values_pb2.FeatureValue:
    """A FeatureValue for a Python value (bool before int: ``bool`` is an ``int``)."""
    if value is None:
        return values_pb2.FeatureValue(null_value=0)
    if isinstance(value, bool):
        return values_pb2.FeatureValue(bool_value=value)
    if isinstance(value, int):
        return values_pb2.FeatureValue(int64_value=value)
    if isinstance(value, float):
        return values_pb2.FeatureValue(double_value=value)
    return values_pb2.FeatureValue(string_value=str(value))


def typed_proto(value: Value, value_type: int) -> values_pb2.FeatureValue:
    """A FeatureValue in the branch of ``value_type`` (an int of a DOUBLE feature as a double)."""
    if value is None:
        return values_pb2.FeatureValue(null_value=0)
    if value_type == DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return values_pb2.FeatureValue(double_value=float(value))
    return to_proto(value)


def check_proto(value: values_pb2.FeatureValue, value_type: int) -> tuple[Value, str | None]:
    """A request's FeatureValue checked against the declared type.

    Returns:
        ``(value, None)`` when it fits (an INT64 given for a DOUBLE feature is widened exactly),
        ``(None, reason)`` otherwise. An explicit null fits every type.
    """
    kind = value.WhichOneof("kind")
    if kind is None:
        return None, "no value set (exactly one branch of FeatureValue is required)"
    if kind == "null_value":
        return None, None
    raw = getattr(value, kind)
    return check_plain(raw, value_type)


def check_plain(raw: Any, value_type: int) -> tuple[Value, str | None]:
    """A request value given as plain JSON, checked against the declared type (see :func:`check_proto`)."""
    expected = TYPE_NAMES.get(value_type, "UNSPECIFIED")
    got = "null" if raw is None else type(raw).__name__
    if raw is None:
        return None, None
    if value_type == BOOL:
        return (raw, None) if isinstance(raw, bool) else (None, f"expected {expected}, got {got}")
    if isinstance(raw, bool):
        return None, f"expected {expected}, got bool"
    if value_type == INT64:
        if isinstance(raw, int) and _INT64_MIN <= raw <= _INT64_MAX:
            return raw, None
        return None, f"expected {expected}, got {got}"
    if value_type == DOUBLE:
        if isinstance(raw, int | float):
            number = float(raw)
            if not math.isfinite(number):
                return None, "expected a finite DOUBLE (NaN and infinities are not allowed)"
            if isinstance(raw, int) and int(number) != raw:
                return None, "integer too large to be a DOUBLE exactly"
            return number, None
        return None, f"expected {expected}, got {got}"
    if value_type == STRING:
        return (raw, None) if isinstance(raw, str) else (None, f"expected {expected}, got {got}")
    return None, f"the feature's type {expected} is not supported"


def parse_rest_value(raw: Any) -> tuple[Any, str | None]:
    """A REST request value: a plain JSON scalar, or its proto3 JSON form (``{"int64Value": "5"}``).

    Returns:
        ``(raw Python value, None)``, or ``(None, reason)`` for a shape that is neither.
    """
    if isinstance(raw, dict):
        if len(raw) != 1:
            return None, "a typed value has exactly one key (int64Value, doubleValue, ...)"
        ((key, inner),) = raw.items()
        key = {
            "int64_value": "int64Value",
            "double_value": "doubleValue",
            "string_value": "stringValue",
            "bool_value": "boolValue",
            "null_value": "nullValue",
        }.get(key, key)
        if key == "int64Value":
            if isinstance(inner, str):
                try:
                    return int(inner), None
                except ValueError:
                    return None, "int64Value must be an integer"
            return (
                (inner, None)
                if isinstance(inner, int) and not isinstance(inner, bool)
                else (None, "int64Value must be an integer")
            )
        if key == "doubleValue":
            if isinstance(inner, int | float) and not isinstance(inner, bool):
                return float(inner), None
            return None, "doubleValue must be a number"
        if key == "stringValue":
            return (inner, None) if isinstance(inner, str) else (None, "stringValue must be a string")
        if key == "boolValue":
            return (inner, None) if isinstance(inner, bool) else (None, "boolValue must be a boolean")
        if key == "nullValue":
            return None, None
        return None, f"unknown typed value key {key!r}"
    if raw is None or isinstance(raw, bool | int | float | str):
        return raw, None
    return None, f"expected a scalar, got {type(raw).__name__}"

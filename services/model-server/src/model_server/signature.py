"""The model's input signature and the exact casting of request values to it.

A logged model declares every input in its MLflow signature (``MLmodel``): ``double`` for numbers,
``string`` for categories (``long`` / ``integer`` / ``float`` / ``boolean`` are handled too). The
scorer receives one numpy array per column in exactly the signature's dtype:

=========  ==========================================  =========================================
kind       dtype the scorer receives                   accepted request values
=========  ==========================================  =========================================
double     ``float64`` (missing -> NaN)                JSON number (int or float), null
float      ``float32`` (missing -> NaN)                JSON number, null
long       ``int64`` (no missing value possible)       JSON integer; a float with an integral
                                                       value (seldon's gRPC ``jsonData`` carries
                                                       every number as a double)
integer    ``int32``                                   as long
boolean    ``bool``                                    JSON true / false
string     ``object`` holding ``str`` (missing -> None)  JSON string, null - never a number: 3 is
                                                       not silently turned into "3" or "3.0"
=========  ==========================================  =========================================

Anything else raises :class:`InvalidInput` naming the field (HTTP 400, gRPC INVALID_ARGUMENT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC_KINDS = frozenset({"double", "float", "long", "integer"})
DTYPES: dict[str, Any] = {
    "double": np.float64,
    "float": np.float32,
    "long": np.int64,
    "integer": np.int32,
    "boolean": np.bool_,
    "string": object,
}
MAX_ROWS = 10_000
"""Largest batch one request may carry."""


class InvalidInput(ValueError):
    """A request value does not fit the signature.

    Attributes:
        field: the offending field (``amount``, ``jsonData[2].sector``, ``inputs``).
        reason: what is wrong.
    """

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid input: field '{field}': {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Column:
    """One input column of the signature.

    Attributes:
        name: column name.
        kind: MLflow data type name (``double``, ``string`` ...).
        required: whether a value must be present.
    """

    name: str
    kind: str
    required: bool = False

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype the scorer receives for this column."""
        return np.dtype(DTYPES[self.kind])


def read_signature(model_dir: Any) -> tuple[list[Column], dict[str, Any], dict[str, Any]]:
    """``(input columns, metadata, sklearn flavor conf)`` of a downloaded MLflow model folder.

    Raises:
        ValueError: no signature, a tensor signature, or an unsupported column type.
    """
    from pathlib import Path

    from mlflow.models import Model

    model = Model.load(str(Path(model_dir) / "MLmodel"))
    if model.signature is None or model.signature.inputs is None:
        raise ValueError("the model has no input signature")
    columns: list[Column] = []
    for spec in model.signature.inputs.inputs:
        kind = getattr(getattr(spec, "type", None), "name", None)
        if kind not in DTYPES or not getattr(spec, "name", None):
            raise ValueError(f"unsupported signature input {spec!r}")
        columns.append(Column(str(spec.name), str(kind), bool(getattr(spec, "required", True))))
    return columns, dict(model.metadata or {}), dict(model.flavors.get("sklearn", {}))


def _missing(value: Any) -> bool:
    return value is None


def cast_value(column: Column, value: Any, field: str) -> Any:
    """One request value as the Python value of the column's kind (None for missing).

    Raises:
        InvalidInput: wrong JSON type, non-integral value for an integer column, missing required value.
    """
    if _missing(value):
        if column.required:
            raise InvalidInput(field, "a value is required")
        if column.kind in ("long", "integer", "boolean"):
            raise InvalidInput(field, f"a missing value cannot be represented as {column.kind}")
        return None
    kind = column.kind
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInput(field, f"expected a number ({kind}), got {type(value).__name__}")
        return float(value)
    if kind in ("long", "integer"):
        if isinstance(value, bool):
            raise InvalidInput(field, f"expected an integer ({kind}), got bool")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise InvalidInput(field, f"expected an integer ({kind}), got {value!r}")
    if kind == "boolean":
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidInput(field, f"expected a boolean, got {type(value).__name__}")
        return bool(value)
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a string, got {type(value).__name__}")
    return value


def to_array(column: Column, values: Sequence[Any]) -> np.ndarray:
    """Cast values (already checked by :func:`cast_value`) to the column's array."""
    if column.kind == "string":
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    if column.kind in ("double", "float"):
        return np.array([np.nan if v is None else v for v in values], dtype=column.dtype)
    return np.array(values, dtype=column.dtype)


def columns_from_records(
    records: Sequence[Mapping[str, Any]], columns: Sequence[Column], prefix: str
) -> dict[str, np.ndarray]:
    """Typed columns from records keyed by column name (Seldon ``jsonData``).

    Args:
        records: one mapping per row; a missing key is a missing value.
        columns: the signature.
        prefix: field path of the records in the request, for error messages (``jsonData``).

    Raises:
        InvalidInput: a record that is not an object, an unknown field, a bad value.
    """
    if not records:
        raise InvalidInput(prefix, "no rows")
    if len(records) > MAX_ROWS:
        raise InvalidInput(prefix, f"at most {MAX_ROWS} rows per request")
    known = {c.name for c in columns}
    single = len(records) == 1
    values: dict[str, list[Any]] = {c.name: [] for c in columns}
    for i, record in enumerate(records):
        where = prefix if single else f"{prefix}[{i}]"
        if not isinstance(record, Mapping):
            raise InvalidInput(where, f"expected an object of features by name, got {type(record).__name__}")
        unknown = sorted(set(record) - known)
        if unknown:
            raise InvalidInput(f"{where}.{unknown[0]}", "unknown feature (not in the model signature)")
        for column in columns:
            values[column.name].append(cast_value(column, record.get(column.name), f"{where}.{column.name}"))
    return {c.name: to_array(c, values[c.name]) for c in columns}

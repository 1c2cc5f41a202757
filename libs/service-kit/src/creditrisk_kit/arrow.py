"""Arrow IPC chunks for streaming RPCs (``creditrisk.common.v1.ArrowChunk``), within the message size.

Needs the ``arrow`` extra (``creditrisk-service-kit[arrow]``, i.e. pyarrow).

A dataset crosses a stream as a sequence of chunks; each chunk is one complete Arrow IPC *stream*
(schema, record batches, end-of-stream marker — ``pyarrow.ipc.new_stream``) so it decodes on its
own. The contract's size rule: each message, envelope included, stays under the receiver's maximum
message size (4 MiB, gRPC's default receive limit, unless configured). :func:`encode_chunks` keeps
every payload under ``max_message_bytes - ENVELOPE_RESERVE_BYTES`` by slicing rows: it starts from
the table's average row width, serializes, and halves the slice while the result is too large.

Example (server side of a streaming RPC)::

    for chunk in encode_chunks(table, max_message_bytes=settings.max_message_bytes, max_rows=50_000):
        yield GetHistoricalFeaturesResponse(
            chunk=ArrowChunk(arrow_ipc_stream=chunk.payload, row_count=chunk.row_count,
                             sequence=chunk.sequence))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidArgument, ResourceExhausted
from .settings import DEFAULT_MAX_MESSAGE_BYTES
from .timestamps import (
    GRAMMAR_PATTERN,
    MAX_TIME,
    MIN_TIME,
    OFFSET_PATTERN,
    OUT_OF_RANGE,
    TIME_PATTERN,
    NaiveTimestamps,
    check_policy,
    parse_timestamps,
)

#: Bytes kept free for the envelope around the payload: the ArrowChunk's other fields (row count,
#: sequence: <= 16 bytes), the enclosing message's oneof tag and length prefixes (<= 16 bytes), and
#: room for a few small sibling fields. 1 KiB is generous; the contracts tests check real envelopes.
ENVELOPE_RESERVE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One chunk ready for an ``ArrowChunk`` message.

    Attributes:
        payload: A complete Arrow IPC stream (bytes).
        row_count: Rows in the payload.
        sequence: 0-based position in the stream of chunks.
    """

    payload: bytes
    row_count: int
    sequence: int


def _ipc_stream(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def encode_chunks(
    data: pa.Table | Iterable[pa.RecordBatch],
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_rows: int | None = None,
    schema: pa.Schema | None = None,
) -> Iterator[EncodedChunk]:
    """Split a table (or a stream of record batches) into IPC chunks that fit one message each.

    Args:
        data: A ``pyarrow.Table`` or an iterable of ``pyarrow.RecordBatch`` with one schema.
        max_message_bytes: The receiver's maximum message size in bytes (envelope included).
        max_rows: Upper bound of rows per chunk (None: only the size bounds it).
        schema: The schema when ``data`` is an iterable that may be empty. An empty dataset yields
            exactly one chunk with zero rows (so the receiver learns the schema).

    Yields:
        :class:`EncodedChunk` with ``len(payload) <= max_message_bytes - ENVELOPE_RESERVE_BYTES``.

    Raises:
        ResourceExhausted: One row alone does not fit the message size.
        InvalidArgument: ``max_rows`` < 1, or an empty iterable without ``schema``.
    """
    if max_rows is not None and max_rows < 1:
        raise InvalidArgument("max_rows", f"must be >= 1, got {max_rows}")
    budget = max_message_bytes - ENVELOPE_RESERVE_BYTES
    if isinstance(data, pa.Table):
        schema = data.schema
        batches: Iterable[pa.RecordBatch] = data.to_batches()
    else:
        batches = data
    sequence = 0
    for batch in batches:
        if schema is None:
            schema = batch.schema
        offset = 0
        while offset < batch.num_rows:
            remaining = batch.num_rows - offset
            width = max(1, batch.slice(offset, remaining).nbytes // remaining)
            rows = max(1, min(remaining, budget // width, max_rows or remaining))
            while True:
                payload = _ipc_stream(schema, [batch.slice(offset, rows)])
                if len(payload) <= budget:
                    break
                if rows == 1:
                    raise ResourceExhausted(
                        f"one row takes {len(payload)} bytes, over the {budget}-byte chunk budget "
                        f"(max message size {max_message_bytes} bytes)"
                    )
                rows //= 2
            yield EncodedChunk(payload, rows, sequence)
            sequence += 1
            offset += rows
    if sequence == 0:
        if schema is None:
            raise InvalidArgument("data", "empty record batch stream without a schema")
        yield EncodedChunk(_ipc_stream(schema, []), 0, 0)


def decode_chunk(payload: bytes, *, field: str = "arrow_ipc_stream") -> pa.Table:
    """Read one chunk's Arrow IPC stream.

    Args:
        payload: The bytes of an ``ArrowChunk.arrow_ipc_stream``.
        field: The field name reported in the error.

    Returns:
        The chunk as a ``pyarrow.Table`` (possibly with zero rows).

    Raises:
        InvalidArgument: The bytes are not an Arrow IPC stream (naming ``field``).
    """
    try:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            table = reader.read_all()
        # IPC reading checks no UTF-8 (of values or names): an invalid byte would fail far later
        table.validate(full=True)
        _ = table.schema.names
        return table
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InvalidArgument(field, f"not an Arrow IPC stream: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, "a column name is not valid UTF-8") from exc


class ChunkSequence:
    """Checks that received chunks arrive 0, 1, 2, ... with one schema; collects them.

    Raises (from :meth:`add`):
        InvalidArgument: A gap or repeat in ``sequence``, a row count that does not match the
            payload, or a schema different from the first chunk's.
    """

    def __init__(self, field: str = "chunk") -> None:
        self.field = field
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add(self, payload: bytes, row_count: int, sequence: int) -> pa.Table:
        """Decode and check one chunk; returns its table."""
        if sequence != len(self.tables):
            raise InvalidArgument(f"{self.field}.sequence", f"expected {len(self.tables)}, got {sequence}")
        table = decode_chunk(payload, field=f"{self.field}.arrow_ipc_stream")
        if table.num_rows != row_count:
            raise InvalidArgument(
                f"{self.field}.row_count", f"says {row_count} but the payload holds {table.num_rows} rows"
            )
        if self.tables and not table.schema.equals(self.tables[0].schema):
            raise InvalidArgument(
                f"{self.field}.arrow_ipc_stream",
                f"schema differs from the first chunk's: {table.schema} vs {self.tables[0].schema}",
            )
        self.tables.append(table)
        self.rows += table.num_rows
        return table

    def table(self) -> pa.Table | None:
        """All chunks concatenated (None when no chunk arrived)."""
        return pa.concat_tables(self.tables) if self.tables else None


UTC_MICROS = pa.timestamp("us", tz="UTC")

# Strings of the grammar (creditrisk_kit.timestamps), whole; and those that end in an offset.
_GRAMMAR_RE2 = f"^(?:{GRAMMAR_PATTERN})$"
_WITH_OFFSET_RE2 = f"{TIME_PATTERN}(?:{OFFSET_PATTERN})$"


def utc_timestamps(
    column: pa.Array | pa.ChunkedArray, *, field: str, naive: NaiveTimestamps = "utc"
) -> pa.Array:
    """A column of client timestamps as Arrow UTC timestamps, each value read on its own.

    Timestamp columns keep their unit: one with a time zone is converted to UTC, a naive one is
    UTC or refused by ``naive``. String columns (also large, view or dictionary-encoded) hold
    timestamps of :mod:`creditrisk_kit.timestamps`' grammar: every value is read with its own
    offset, or as naive by ``naive``, and the result has microseconds. When every string is of the
    grammar, Arrow's ISO 8601 cast parses them (values with an offset and values without one cast
    apart, then merged); when any is not, or Arrow refuses one, every value is parsed again one by
    one in Python (:func:`~creditrisk_kit.timestamps.parse_timestamps`), which names each invalid
    row. Either way every instant lies in [``MIN_TIME``, ``MAX_TIME``).

    Args:
        column: A timestamp or string column.
        field: The column's path, for errors (``field[i]`` names a row).
        naive: What a timestamp without an offset or time zone means: ``"utc"`` or ``"refuse"``.

    Returns:
        A ``timestamp[<unit>, tz=UTC]`` array with the column's length (``us`` for strings).

    Raises:
        InvalidArgument: naming ``field`` or its row: null values, a string not of the grammar or
            not a valid date or time, a naive value under ``"refuse"``, an instant out of range,
            or a column of another type.
        ValueError: ``naive`` is not a policy of :data:`~creditrisk_kit.timestamps.NaiveTimestamps`.
    """
    check_policy(naive)
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.large_string())
    if array.null_count:
        first = pc.index(array.is_null(), True).as_py()
        raise InvalidArgument(f"{field}[{first}]", f"null timestamp ({array.null_count} null row(s))")
    kind = array.type
    if pa.types.is_timestamp(kind):
        if not kind.tz and naive == "refuse":
            raise InvalidArgument(
                field, "timestamps without a time zone are refused here: give the column a time zone"
            )
        utc = pa.timestamp(kind.unit, tz="UTC")
        array = array.cast(utc) if not kind.tz else pc.cast(array, utc)
        _check_range(array, field)
        return array
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InvalidArgument(field, f"expected timestamps or ISO 8601 strings, got {kind}")
    try:
        out = _cast_strings(array, naive)
        _check_range(out, field)
        return out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, InvalidArgument):
        pass  # the per-value path names every invalid row
    try:
        values = array.to_pylist()
    except UnicodeDecodeError as exc:  # an array not read through decode_chunk (no grammar match)
        raise InvalidArgument(field, "not valid UTF-8 strings") from exc
    return pa.array(parse_timestamps(values, field=field, naive=naive), UTC_MICROS)


def _check_range(array: pa.Array, field: str) -> None:
    """Raises InvalidArgument naming the first row outside [MIN_TIME, MAX_TIME)."""
    if not len(array):
        return
    low, high = pa.scalar(MIN_TIME, array.type), pa.scalar(MAX_TIME, array.type)
    outside = pc.or_(pc.less(array, low), pc.greater_equal(array, high))
    if pc.any(outside).as_py():
        raise InvalidArgument(f"{field}[{pc.index(outside, True).as_py()}]", OUT_OF_RANGE)


def _cast_strings(array: pa.Array, naive: NaiveTimestamps) -> pa.Array:
    """Arrow's ISO 8601 cast, offsets and naive values apart; ``ArrowInvalid`` on any doubt."""
    if not pc.all(pc.match_substring_regex(array, _GRAMMAR_RE2)).as_py():
        raise pa.ArrowInvalid("not every value is of the grammar: the per-value path names them")
    has_offset = pc.match_substring_regex(array, _WITH_OFFSET_RE2)
    if pc.all(has_offset).as_py():
        return array.cast(UTC_MICROS)
    if naive == "refuse":
        raise pa.ArrowInvalid("naive values: the per-value path names them")
    aware = pc.if_else(has_offset, array, pa.scalar(None, array.type)).cast(UTC_MICROS)
    local = pc.if_else(has_offset, pa.scalar(None, array.type), array).cast(pa.timestamp("us"))
    return pc.if_else(has_offset, aware, local.cast(UTC_MICROS))

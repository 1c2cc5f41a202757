"""Arrow IPC chunking: every chunk under the budget, lossless, ordered, and bad chunks rejected."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from creditrisk_kit import InvalidArgument, ResourceExhausted
from creditrisk_kit.arrow import ENVELOPE_RESERVE_BYTES, ChunkSequence, decode_chunk, encode_chunks

PURPOSES = ["car (new)", "business", "radio/television"]


def _table(rows: int, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "applicant_id": pa.array(range(1, rows + 1), pa.int64()),
            "credit_amount": pa.array([rng.randint(250, 20_000) for _ in range(rows)], pa.int64()),
            "age_in_years": pa.array([None if i % 97 == 0 else float(i % 60 + 19) for i in range(rows)]),
            "purpose": pa.array([rng.choice(PURPOSES) for _ in range(rows)]),
            "event_timestamp": pa.array(
                [start + timedelta(seconds=i) for i in range(rows)], pa.timestamp("us", tz="UTC")
            ),
        }
    )


@pytest.mark.parametrize("max_message_bytes", [16 * 1024, 64 * 1024, 4 * 1024 * 1024])
def test_chunks_fit_budget_and_round_trip(max_message_bytes: int) -> None:
    table = _table(20_000)
    chunks = list(encode_chunks(table, max_message_bytes=max_message_bytes))
    budget = max_message_bytes - ENVELOPE_RESERVE_BYTES
    assert all(len(c.payload) <= budget for c in chunks)
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    received = ChunkSequence()
    for c in chunks:
        received.add(c.payload, c.row_count, c.sequence)
    assert received.rows == table.num_rows
    assert received.table().equals(table)
    if max_message_bytes < 1024 * 1024:
        assert len(chunks) > 1


def test_max_rows_bounds_each_chunk_and_batches_stream() -> None:
    table = _table(1_000)
    chunks = list(encode_chunks(iter(table.to_batches(max_chunksize=300)), max_rows=128))
    assert max(c.row_count for c in chunks) <= 128
    assert sum(c.row_count for c in chunks) == 1_000


def test_empty_dataset_sends_schema_once() -> None:
    schema = _table(1).schema
    [chunk] = list(encode_chunks(iter([]), schema=schema))
    assert chunk.row_count == 0
    assert decode_chunk(chunk.payload).schema.equals(schema)
    with pytest.raises(InvalidArgument, match="data"):
        list(encode_chunks(iter([])))


def test_row_larger_than_message_is_resource_exhausted() -> None:
    table = pa.table({"blob": ["x" * 50_000]})
    with pytest.raises(ResourceExhausted, match="one row takes"):
        list(encode_chunks(table, max_message_bytes=16 * 1024))


def test_receiver_rejects_gap_wrong_count_schema_change_and_garbage() -> None:
    a, b = list(encode_chunks(_table(2_000), max_message_bytes=32 * 1024))[:2]
    with pytest.raises(InvalidArgument, match=r"chunk\.sequence"):
        ChunkSequence().add(b.payload, b.row_count, b.sequence)
    with pytest.raises(InvalidArgument, match=r"chunk\.row_count"):
        ChunkSequence().add(a.payload, a.row_count + 1, 0)
    other = next(encode_chunks(pa.table({"x": [1]})))
    seq = ChunkSequence()
    seq.add(a.payload, a.row_count, 0)
    with pytest.raises(InvalidArgument, match="schema differs"):
        seq.add(other.payload, other.row_count, 1)
    with pytest.raises(InvalidArgument, match=r"chunk\.arrow_ipc_stream"):
        ChunkSequence().add(b"not arrow", 0, 0)

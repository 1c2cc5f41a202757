"""The ArrowChunk size rule on the real contract: a large dataset crosses GetHistoricalFeatures in
both directions with a small maximum message size on server and client, no message over it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pyarrow as pa
import pytest
from creditrisk.common.v1 import arrow_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fs
from creditrisk.feature.v1 import feature_service_pb2_grpc as fs_grpc
from creditrisk_kit import ServiceRunner, ServiceSettings, aio_channel
from creditrisk_kit.arrow import ChunkSequence, encode_chunks

MAX_MESSAGE_BYTES = 64 * 1024
ROWS = 30_000


def _entity_rows() -> pa.Table:
    rng = random.Random(3)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "applicant_id": pa.array(range(1, ROWS + 1), pa.int64()),
            "event_timestamp": pa.array(
                [start + timedelta(minutes=rng.randint(0, 1_000_000)) for _ in range(ROWS)],
                pa.timestamp("us", tz="UTC"),
            ),
            "creditability": pa.array([rng.random() < 0.3 for _ in range(ROWS)]),
        }
    )


def _chunk_messages(table: pa.Table) -> list[arrow_pb2.ArrowChunk]:
    return [
        arrow_pb2.ArrowChunk(arrow_ipc_stream=c.payload, row_count=c.row_count, sequence=c.sequence)
        for c in encode_chunks(table, max_message_bytes=MAX_MESSAGE_BYTES)
    ]


class EchoStore(fs_grpc.FeatureStoreServiceServicer):
    """Sends the received entity rows back as the dataset (stands in for the point-in-time join)."""

    def __init__(self) -> None:
        self.largest_request = 0

    async def GetHistoricalFeatures(
        self,
        request_iterator: AsyncIterator[fs.GetHistoricalFeaturesRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[fs.GetHistoricalFeaturesResponse]:
        received = ChunkSequence("entity_rows")
        async for message in request_iterator:
            self.largest_request = max(self.largest_request, message.ByteSize())
            if message.WhichOneof("payload") == "entity_rows":
                c = message.entity_rows
                received.add(c.arrow_ipc_stream, c.row_count, c.sequence)
        table = received.table()
        assert table is not None
        header = fs.HistoricalFeaturesHeader(entity_row_count=table.num_rows)
        yield fs.GetHistoricalFeaturesResponse(header=header)
        for chunk in _chunk_messages(table):
            yield fs.GetHistoricalFeaturesResponse(chunk=chunk)
        yield fs.GetHistoricalFeaturesResponse(summary=fs.HistoricalFeaturesSummary(row_count=table.num_rows))


async def test_large_dataset_streams_both_ways_under_small_message_limit() -> None:
    table = _entity_rows()
    assert table.nbytes > 5 * MAX_MESSAGE_BYTES
    store = EchoStore()
    settings = ServiceSettings(port=0, max_message_bytes=MAX_MESSAGE_BYTES, grace_period_s=1)
    runner = ServiceRunner(
        settings,
        service_names=["creditrisk.feature.v1.FeatureStoreService"],
        register=lambda server: fs_grpc.add_FeatureStoreServiceServicer_to_server(store, server),
        instrument=False,
    )
    port = await runner.start()
    try:
        requests = [fs.GetHistoricalFeaturesRequest(query=fs.HistoricalFeaturesQuery(feature_service="x"))]
        requests += [fs.GetHistoricalFeaturesRequest(entity_rows=c) for c in _chunk_messages(table)]
        assert all(r.ByteSize() <= MAX_MESSAGE_BYTES for r in requests)
        # untraced like the server: instrumenting gRPC is process-wide, and the end-to-end tests of
        # the same pytest process are callers that must send only the traceparent they set
        async with aio_channel(
            f"127.0.0.1:{port}", max_message_bytes=MAX_MESSAGE_BYTES, instrument=False
        ) as channel:
            stub = fs_grpc.FeatureStoreServiceStub(channel)
            responses = [r async for r in stub.GetHistoricalFeatures(iter(requests), timeout=60)]
    finally:
        await runner.stop()
    assert len(requests) > 5, "the test must actually split the dataset"
    assert store.largest_request <= MAX_MESSAGE_BYTES
    assert all(r.ByteSize() <= MAX_MESSAGE_BYTES for r in responses)
    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds[0] == "header"
    assert kinds[-1] == "summary"
    assert set(kinds[1:-1]) == {"chunk"}
    back = ChunkSequence()
    for r in responses[1:-1]:
        back.add(r.chunk.arrow_ipc_stream, r.chunk.row_count, r.chunk.sequence)
    assert back.table().equals(table)


@pytest.mark.parametrize("limit", [MAX_MESSAGE_BYTES, 4 * 1024 * 1024])
def test_envelope_fits(limit: int) -> None:
    table = _entity_rows()
    for c in encode_chunks(table, max_message_bytes=limit):
        chunk = arrow_pb2.ArrowChunk(arrow_ipc_stream=c.payload, row_count=c.row_count, sequence=c.sequence)
        assert fs.GetHistoricalFeaturesResponse(chunk=chunk).ByteSize() <= limit
        assert fs.GetHistoricalFeaturesRequest(entity_rows=chunk).ByteSize() <= limit

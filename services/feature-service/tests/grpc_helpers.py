"""An in-process feature-service (the kit's ``ServiceRunner`` on port 0) and stream helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pyarrow as pa
from creditrisk.common.v1 import arrow_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, aio_channel
from creditrisk_kit.arrow import ChunkSequence, encode_chunks
from feature_service.core import FeatureStoreCore
from feature_service.servicer import SERVICE_NAME, FeatureStoreServiceServicer


@dataclass
class Served:
    """A running in-process server and a stub on a channel to it."""

    runner: ServiceRunner
    channel: grpc.aio.Channel
    stub: pb_grpc.FeatureStoreServiceStub


@asynccontextmanager
async def serving(core: FeatureStoreCore, **overrides: Any) -> AsyncIterator[Served]:
    """Serve ``core`` on a free port with its settings (``overrides`` win); stop at the end."""
    settings = core.settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "grace_period_s": 1.0,
            "health_check_interval_s": 0.2,
            **overrides,
        }
    )
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: pb_grpc.add_FeatureStoreServiceServicer_to_server(
            FeatureStoreServiceServicer(core, settings), server
        ),
        readiness_checks={"feature store": core.ready},
        check_timeout_s=30,
        instrument=False,
        reflection=False,
    )
    await runner.start()
    channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=60, instrument=False, retry=None)
    try:
        yield Served(runner, channel, pb_grpc.FeatureStoreServiceStub(channel))
    finally:
        await channel.close()
        await runner.stop()


def requests(
    query: pb.HistoricalFeaturesQuery, entity: pa.Table | None = None, *, chunk_rows: int = 250
) -> list[pb.GetHistoricalFeaturesRequest]:
    """The request stream: the query, then ``entity`` in chunks of ``chunk_rows`` rows."""
    out = [pb.GetHistoricalFeaturesRequest(query=query)]
    if entity is not None:
        for chunk in encode_chunks(entity, max_rows=chunk_rows):
            out.append(
                pb.GetHistoricalFeaturesRequest(
                    entity_rows=arrow_pb2.ArrowChunk(
                        arrow_ipc_stream=chunk.payload, row_count=chunk.row_count, sequence=chunk.sequence
                    )
                )
            )
    return out


@dataclass
class Historical:
    """A collected GetHistoricalFeatures response stream."""

    header: pb.HistoricalFeaturesHeader
    summary: pb.HistoricalFeaturesSummary
    table: pa.Table
    chunk_count: int
    message_sizes: list[int] = field(default_factory=list)


async def historical(stub: pb_grpc.FeatureStoreServiceStub, messages: Iterable[Any]) -> Historical:
    """Call GetHistoricalFeatures and collect header, chunks (checked in order) and summary."""
    call = stub.GetHistoricalFeatures(iter(list(messages)), timeout=120)
    header = summary = None
    chunks = ChunkSequence()
    sizes = []
    kinds = []
    async for message in call:
        kind = message.WhichOneof("payload")
        kinds.append(kind)
        sizes.append(message.ByteSize())
        if kind == "header":
            header = message.header
        elif kind == "chunk":
            chunks.add(message.chunk.arrow_ipc_stream, message.chunk.row_count, message.chunk.sequence)
        else:
            summary = message.summary
    assert kinds[0] == "header"
    assert kinds[-1] == "summary"
    assert set(kinds[1:-1]) == {"chunk"}
    assert header is not None
    assert summary is not None
    table = chunks.table()
    assert table is not None
    return Historical(header, summary, table, len(chunks.tables), sizes)

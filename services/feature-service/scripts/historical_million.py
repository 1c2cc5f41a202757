"""Stream a million entity rows through GetHistoricalFeatures and print what it cost.

Entity rows: ids sampled uniformly from the ingested entities (1..1000: the configured product's
raw file ``--csv``, by default the checkout's German credit data, keyed by row number), event
timestamps uniform over 2023-01-01..2026-01-01 UTC (seeded). The client sends them as Arrow chunks
under the message limit, the server joins (point in time, the product's model feature service) and
streams the dataset back in chunks. Printed: rows/s end to end, server-side build time, chunks each
way, the largest message each way, and the peak RSS (of this process, which also holds the server
when it runs in-process; of the server process otherwise is not measured).

Run from ``services/feature-service``::

    .venv/bin/python scripts/historical_million.py                     # in-process server, embedded
    .venv/bin/python scripts/historical_million.py --target 127.0.0.1:50051   # a running server

The in-process mode ingests the German credit data into a temporary embedded store first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from creditrisk.common.v1 import arrow_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit import DEFAULT_MAX_MESSAGE_BYTES, ServiceRunner, aio_channel
from creditrisk_kit.arrow import decode_chunk, encode_chunks

ROOT = Path(__file__).resolve().parents[3]


def entity_rows(n: int, applicants: int, seed: int, key: str) -> pa.Table:
    """``n`` entity rows: sampled ids (column ``key``) and uniform event timestamps (seeded)."""
    rng = np.random.default_rng(seed)
    start = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    end = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    return pa.table(
        {
            key: pa.array(rng.integers(1, applicants + 1, size=n), pa.int64()),
            "event_timestamp": pa.array(rng.integers(start, end, size=n), pa.timestamp("us", tz="UTC")),
        }
    )


def request_stream(
    table: pa.Table, max_message_bytes: int, sizes: list[int], service: str
) -> Iterator[pb.GetHistoricalFeaturesRequest]:
    """The query, then the entity rows in chunks under the message limit (sizes recorded)."""
    yield pb.GetHistoricalFeaturesRequest(query=pb.HistoricalFeaturesQuery(feature_service=service))
    for chunk in encode_chunks(table, max_message_bytes=max_message_bytes):
        message = pb.GetHistoricalFeaturesRequest(
            entity_rows=arrow_pb2.ArrowChunk(
                arrow_ipc_stream=chunk.payload, row_count=chunk.row_count, sequence=chunk.sequence
            )
        )
        sizes.append(message.ByteSize())
        yield message


async def run(target: str, rows: int, seed: int, max_message_bytes: int, layout: Any) -> dict[str, float]:
    """Call GetHistoricalFeatures once and measure it."""
    table = entity_rows(rows, 1000, seed, layout.entity_key)
    sent: list[int] = []
    received: list[int] = []
    result_rows = 0
    summary = None
    channel = aio_channel(
        target, default_timeout_s=None, max_message_bytes=max_message_bytes, instrument=False
    )
    began = time.perf_counter()
    first_chunk_at = None
    async with channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        async for message in stub.GetHistoricalFeatures(
            request_stream(table, max_message_bytes, sent, layout.model_service), timeout=3600
        ):
            received.append(message.ByteSize())
            kind = message.WhichOneof("payload")
            if kind == "chunk":
                first_chunk_at = first_chunk_at or time.perf_counter()
                result_rows += decode_chunk(message.chunk.arrow_ipc_stream).num_rows
            elif kind == "summary":
                summary = message.summary
    elapsed = time.perf_counter() - began
    assert summary is not None
    assert result_rows == rows, (result_rows, rows)
    return {
        "rows": rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "server_seconds": summary.duration.ToTimedelta().total_seconds(),
        "first_chunk_s": (first_chunk_at or began) - began,
        "chunks_sent": len(sent),
        "chunks_received": summary.chunk_count,
        "largest_sent": max(sent),
        "largest_received": max(received),
        "limit": max_message_bytes,
    }


async def in_process(rows: int, seed: int, max_message_bytes: int, csv: Path) -> dict[str, float]:
    """Ingest the product's raw file into a temporary embedded store, serve it, run once."""
    from creditrisk.feature.v1.feature_service_pb2_grpc import add_FeatureStoreServiceServicer_to_server
    from feature_service.core import FeatureStoreCore
    from feature_service.ingest import ingest
    from feature_service.servicer import SERVICE_NAME, FeatureStoreServiceServicer
    from feature_service.settings import FeatureServiceSettings

    with tempfile.TemporaryDirectory(prefix="historical-million-") as data_dir:
        settings = FeatureServiceSettings(
            profile="embedded",
            data_dir=Path(data_dir),
            host="127.0.0.1",
            port=0,
            max_message_bytes=max_message_bytes,
        )
        ingest(csv, settings)
        core = FeatureStoreCore(settings)
        runner = ServiceRunner(
            settings,
            service_names=[SERVICE_NAME],
            register=lambda server: add_FeatureStoreServiceServicer_to_server(
                FeatureStoreServiceServicer(core), server
            ),
            instrument=False,
        )
        await runner.start()
        try:
            return await run(f"127.0.0.1:{runner.port}", rows, seed, max_message_bytes, core.layout)
        finally:
            await runner.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", help="host:port of a running feature-service (default: in-process)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    parser.add_argument(
        "--csv", type=Path, default=ROOT / "data" / "german_credit.csv", help="the product's raw file"
    )
    args = parser.parse_args(argv)
    from feature_service.product import load_layout
    from feature_service.settings import FeatureServiceSettings

    layout = load_layout(FeatureServiceSettings().catalog().get())
    if args.target:
        figures = asyncio.run(run(args.target, args.rows, args.seed, args.max_message_bytes, layout))
    else:
        figures = asyncio.run(in_process(args.rows, args.seed, args.max_message_bytes, args.csv))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"mode: {'server at ' + args.target if args.target else 'in-process server, embedded profile'}")
    print(f"rows: {figures['rows']:,} (product {layout.product}, feature service {layout.model_service})")
    print(f"end to end: {figures['seconds']:.1f} s = {figures['rows_per_s']:,.0f} rows/s")
    print(f"server build (read + join + stream): {figures['server_seconds']:.1f} s")
    print(f"first result chunk after: {figures['first_chunk_s']:.1f} s")
    print(f"chunks: {figures['chunks_sent']} sent, {figures['chunks_received']} received")
    print(
        f"largest message: {figures['largest_sent']:,} B sent, {figures['largest_received']:,} B received "
        f"(limit {figures['limit']:,} B)"
    )
    print(f"peak RSS of this process: {rss_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``GetHistoricalFeatures`` stream protocol: reading the query and entity rows, writing chunks.

Request stream: one ``query``, then zero or more ``entity_rows`` Arrow chunks (checked in order
by the kit's :class:`~creditrisk_kit.arrow.ChunkSequence`), or none when the query asks for
``labelled_entities``. Response stream: one ``header``, the dataset as ``chunk`` messages each
under the maximum message size (:func:`~creditrisk_kit.arrow.encode_chunks`), one ``summary``.

Entity rows and the join run in worker threads (``asyncio.to_thread``): Feast is synchronous, and
a million-row Arrow encode would otherwise stall the event loop (and the health checks with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pyarrow as pa
from creditrisk.common.v1 import arrow_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk_kit import NaiveTimestamps
from creditrisk_kit.arrow import ChunkSequence, encode_chunks, utc_timestamps

from feature_service import convert
from feature_service.core import FeatureStoreCore
from feature_service.domain import FeatureSpec
from feature_service.errors import InvalidArgument
from feature_service.schema import EVENT_TIMESTAMP


@dataclass(frozen=True)
class EntityRows:
    """The entity rows of a query, with the event timestamp column renamed to ``event_timestamp``.

    Attributes:
        table: the rows, as the core expects them.
        timestamp_column: the client's name of the event timestamp column (restored in the result).
    """

    table: pa.Table
    timestamp_column: str


async def read_query(stream: AsyncIterator[pb.GetHistoricalFeaturesRequest]) -> pb.HistoricalFeaturesQuery:
    """The first message, which must be a query.

    Raises:
        InvalidArgument: an empty stream, or a first message that is not a query.
    """
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise InvalidArgument("query", "the stream ended before the query") from None
    if first.WhichOneof("payload") != "query":
        raise InvalidArgument("query", "the first message must be the query")
    if first.query.max_chunk_rows < 0:
        raise InvalidArgument(
            "query.max_chunk_rows", f"must not be negative, got {first.query.max_chunk_rows}"
        )
    return first.query


async def read_entity_rows(
    stream: AsyncIterator[pb.GetHistoricalFeaturesRequest],
    query: pb.HistoricalFeaturesQuery,
    core: FeatureStoreCore,
) -> EntityRows:
    """Read the entity rows: from the chunks that follow the query, or from the label view.

    Raises:
        InvalidArgument: a second query; chunks with ``labelled_entities``; a chunk out of sequence,
            that does not decode or changes schema; no entity rows; a missing or mistyped event
            timestamp or label column (named).
    """
    labelled = query.HasField("labelled_entities")
    chunks = ChunkSequence("entity_rows")
    async for message in stream:
        if message.WhichOneof("payload") != "entity_rows":
            raise InvalidArgument("query", "sent more than once")
        if labelled:
            raise InvalidArgument("entity_rows", "no entity rows may be sent with labelled_entities")
        chunk = message.entity_rows
        await asyncio.to_thread(chunks.add, chunk.arrow_ipc_stream, chunk.row_count, chunk.sequence)
    if labelled:
        spec = query.labelled_entities
        if not spec.label_view:
            raise InvalidArgument("labelled_entities.label_view", "required")
        start, end = convert.time_range(
            spec.application_time_range,
            "labelled_entities.application_time_range",
            spec.HasField("application_time_range"),
        )
        known = (
            convert.from_timestamp(spec.labels_known_at, "labelled_entities.labels_known_at")
            if spec.HasField("labels_known_at")
            else None
        )
        table = await asyncio.to_thread(core.historical.labelled_entities, spec.label_view, start, end, known)
        return EntityRows(table, EVENT_TIMESTAMP)
    table = chunks.table()
    if table is None:
        raise InvalidArgument("entity_rows", "no entity rows: send at least one chunk, or labelled_entities")
    table = await asyncio.to_thread(_rename_timestamp, table, query, core.settings.naive_timestamps)
    return EntityRows(table, query.event_timestamp_column or EVENT_TIMESTAMP)


def _rename_timestamp(table: pa.Table, query: pb.HistoricalFeaturesQuery, naive: NaiveTimestamps) -> pa.Table:
    """The entity rows with the client's event timestamp column read (each row on its own, errors
    naming the client's column and row) and named ``event_timestamp``."""
    column = query.event_timestamp_column or EVENT_TIMESTAMP
    names = table.column_names
    if column not in names:
        raise InvalidArgument(column, "event timestamp column missing from the entity rows")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # Arrow allows it; the join would pick one of them
        raise InvalidArgument(repeated[0], "column name appears more than once in the entity rows")
    index = names.index(column)
    table = table.set_column(index, column, utc_timestamps(table.column(index), field=column, naive=naive))
    if query.label_column and query.label_column not in names:
        raise InvalidArgument(query.label_column, "label column missing from the entity rows")
    if column != EVENT_TIMESTAMP:
        if EVENT_TIMESTAMP in names:
            raise InvalidArgument(EVENT_TIMESTAMP, f"clashes with the event timestamp column '{column}'")
        table = table.rename_columns([EVENT_TIMESTAMP if n == column else n for n in names])
    return table


def restore_timestamp(table: pa.Table, rows: EntityRows) -> pa.Table:
    """The result with the client's event timestamp column name."""
    if rows.timestamp_column == EVENT_TIMESTAMP:
        return table
    return table.rename_columns(
        [rows.timestamp_column if n == EVENT_TIMESTAMP else n for n in table.column_names]
    )


def header(specs: list[FeatureSpec], table: pa.Table, version: str) -> pb.GetHistoricalFeaturesResponse:
    """The header: feature columns, entity columns (every other column, in order), row count."""
    features = {s.name for s in specs}
    return pb.GetHistoricalFeaturesResponse(
        header=pb.HistoricalFeaturesHeader(
            features=[convert.feature_spec(s, s.name) for s in specs],
            entity_columns=[c for c in table.column_names if c not in features],
            entity_row_count=table.num_rows,
            feature_service_version=version,
        )
    )


async def chunks(
    table: pa.Table, *, max_message_bytes: int, max_rows: int
) -> AsyncIterator[pb.GetHistoricalFeaturesResponse]:
    """The table as ``chunk`` messages, each encoded in a worker thread."""
    encoded = encode_chunks(table, max_message_bytes=max_message_bytes, max_rows=max_rows)
    while (chunk := await asyncio.to_thread(next, encoded, None)) is not None:
        yield pb.GetHistoricalFeaturesResponse(
            chunk=arrow_pb2.ArrowChunk(
                arrow_ipc_stream=chunk.payload, row_count=chunk.row_count, sequence=chunk.sequence
            )
        )

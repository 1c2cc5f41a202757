"""``GetHistoricalFeatures``' answer reassembled once (extra ``arrow`` of ``creditrisk-clients``).

The response stream is one header, Arrow IPC chunks (``creditrisk.common.v1.ArrowChunk``, each a
complete IPC stream: :mod:`creditrisk_kit.arrow`) and one summary. :func:`reassemble` checks the
chunks' sequence, row counts and schema (:class:`creditrisk_kit.arrow.ChunkSequence`), the header's
and summary's row counts against the rows received, and casts the feature columns to their
declared value types (:data:`ARROW_TYPES`; an all-null column arrives as Arrow ``null``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from creditrisk.common.v1 import values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk_kit.arrow import ChunkSequence
from creditrisk_kit.errors import InvalidArgument, Unavailable

if TYPE_CHECKING:
    import pandas as pd

#: Arrow type of each declared ``creditrisk.common.v1.ValueType``.
ARROW_TYPES: dict[int, pa.DataType] = {
    values_pb2.VALUE_TYPE_INT64: pa.int64(),
    values_pb2.VALUE_TYPE_DOUBLE: pa.float64(),
    values_pb2.VALUE_TYPE_STRING: pa.string(),
    values_pb2.VALUE_TYPE_BOOL: pa.bool_(),
}


@dataclass(frozen=True)
class HistoricalFeatures:
    """One ``GetHistoricalFeatures`` answer, reassembled.

    Attributes:
        header: The stream's header (declared features, entity columns, version).
        table: Entity columns then feature columns; feature columns of their declared Arrow type
            (:data:`ARROW_TYPES`); with no chunk at all, the header's entity columns, empty.
        summary: The stream's summary.
    """

    header: fpb.HistoricalFeaturesHeader
    table: pa.Table
    summary: fpb.HistoricalFeaturesSummary

    def to_pandas(self, **kwargs: Any) -> pd.DataFrame:
        """``table.to_pandas(**kwargs)`` (needs pandas)."""
        return self.table.to_pandas(**kwargs)


def typed(table: pa.Table, header: fpb.HistoricalFeaturesHeader) -> pa.Table:
    """Feature columns cast to their declared Arrow types (columns absent from ``table`` skipped).

    Raises:
        Unavailable: A column that does not cast (the server's data, not the caller's request).
    """
    for spec in header.features:
        target = ARROW_TYPES.get(spec.value_type)
        if target is None or spec.name not in table.column_names:
            continue
        index = table.column_names.index(spec.name)
        found = table.schema.field(index).type
        if found != target:
            try:
                table = table.set_column(index, spec.name, table.column(index).cast(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise Unavailable(
                    f"the feature-service sent feature column {spec.name!r} as {found}, "
                    f"which does not cast to its declared {target}"
                ) from exc
    return table


async def reassemble(
    messages: AsyncIterator[fpb.GetHistoricalFeaturesResponse],
) -> HistoricalFeatures:
    """Read a ``GetHistoricalFeatures`` response stream into :class:`HistoricalFeatures`.

    Raises:
        Unavailable: The feature-service broke its own contract (its fault, not the caller's: never
            a client error): no header or no summary, row counts that disagree between header,
            summary and chunks, a chunk out of sequence, a row count that does not match its
            payload, a schema that changes between chunks, bytes that are not Arrow IPC, a column
            the header declares missing from the chunks, a feature column that does not cast to its
            declared type.
    """
    header: fpb.HistoricalFeaturesHeader | None = None
    summary: fpb.HistoricalFeaturesSummary | None = None
    chunks = ChunkSequence("chunk")
    async for message in messages:
        kind = message.WhichOneof("payload")
        if kind == "header":
            header = message.header
        elif kind == "chunk":
            try:
                chunks.add(message.chunk.arrow_ipc_stream, message.chunk.row_count, message.chunk.sequence)
            except InvalidArgument as exc:  # the server's chunk, not the caller's request
                raise Unavailable(
                    f"the feature-service sent a broken GetHistoricalFeatures chunk: {exc}"
                ) from exc
        elif kind == "summary":
            summary = message.summary
    if header is None or summary is None:
        raise Unavailable("the feature-service ended GetHistoricalFeatures without header or summary")
    if summary.row_count != chunks.rows or header.entity_row_count != chunks.rows:
        raise Unavailable(
            f"the feature-service sent {chunks.rows} rows, its header and summary say "
            f"{header.entity_row_count} and {summary.row_count}"
        )
    table = chunks.table()
    if table is None:  # no chunk at all: an empty result with the header's columns
        table = pa.table({c: pa.array([], pa.null()) for c in header.entity_columns})
        return HistoricalFeatures(header, typed(table, header), summary)
    declared = [*header.entity_columns, *(spec.name for spec in header.features)]
    missing = [c for c in declared if c not in table.column_names]
    if missing:
        raise Unavailable(
            f"the feature-service's GetHistoricalFeatures chunks lack the declared columns {missing}"
        )
    return HistoricalFeatures(header, typed(table, header), summary)

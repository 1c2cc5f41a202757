"""A faster materialization engine for Feast 0.67, plugged in through Feast's batch-engine setting.

``FastMaterializationEngine`` is a Feast ``ComputeEngine`` (``batch_engine.type`` in the
``RepoConfig``); ``FeatureStore.materialize`` / ``materialize_incremental`` call it exactly as they
call Feast's ``local`` engine, so the time windows, the incremental start (the view's last end, or
end - TTL), the registry bookkeeping (``most_recent_end_time``, materialization intervals, view
states) stay Feast's. Per feature view it runs Feast's own ``LocalFeatureBuilder`` plan (the offline
store's ``pull_latest_from_table_or_query``: the latest row per entity in the window, created time as
tie-breaker, filters, dedup) up to the final output node, and replaces only that node, where Feast
0.67 spends most of the time (converting Arrow to ``ValueProto`` one Python value at a time, and
``RedisOnlineStore.online_write_batch``'s per-row work; the profile: docs/benchmarks.md, feature-service):

* Values: each feature column is dictionary-encoded (Arrow); Feast's own
  ``python_values_to_proto_values`` converts one representative row per distinct value, taken from
  the same NumPy array Feast's converter would see; the serialized bytes are then reused for
  every row with that value (a categorical attribute has a few to some hundred distinct values per
  column). Nulls, NaN and all-null columns become Feast's empty ``ValueProto`` as before.
* Redis: the writer mirrors ``RedisOnlineStore.online_write_batch`` of Feast 0.67 byte for byte:
  key = ``serialize_entity_key(entity key) + project`` (built vectorized from a template checked
  against Feast's ``_redis_key`` for the first and last row of every batch), hash fields
  ``_mmh3("<view>:<feature>")`` (hashed once per feature instead of once per row and feature),
  ``_ts:<view>`` = serialized ``google.protobuf.Timestamp``; the same staleness rule (a row whose
  event time is not newer than the stored one is skipped, unless ``skip_dedup``), the same
  ``key_ttl_seconds`` EXPIRE, through Feast's own client (``_get_client``), in pipelines of
  ``batch_rows`` entities.
* Any other online store (SQLite): the cached ``ValueProto`` objects go to the store's own
  ``online_write_batch`` in batches of ``batch_rows`` (only the conversion is faster).

Views this engine does not handle the same way (a plan whose last node is not Feast's
``LocalOutputNode``, an offline-writing view) run Feast's own plan unchanged. Setting
``FEATURE_SERVICE_MATERIALIZATION_ENGINE=feast`` selects Feast's ``local`` engine instead.
Equality with Feast's own path (the raw Redis hashes and what ``get_online_features`` reads back,
on Redis and SQLite) is tested in ``tests/test_materialization.py``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.registry.base_registry import BaseRegistry
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.type_map import python_values_to_proto_values
from feast.utils import _coerce_datetime
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feature_service.sources import FAST_ENGINE_TYPE

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 10_000


class FastMaterializationEngineConfig(FeastConfigBaseModel):
    """``batch_engine`` configuration of :class:`FastMaterializationEngine`."""

    type: Literal["feature_service.materialization.FastMaterializationEngine"] = FAST_ENGINE_TYPE
    batch_rows: int = DEFAULT_BATCH_ROWS
    """Entities per Redis pipeline / per ``online_write_batch`` call."""


class FastMaterializationEngine(LocalComputeEngine):
    """Feast's local engine with a vectorized conversion and a batched Redis writer (module doc)."""

    def __init__(self, *, batch_rows: int = DEFAULT_BATCH_ROWS, **kwargs: Any) -> None:
        kwargs.pop("type", None)
        super().__init__(**kwargs)
        self.batch_rows = batch_rows

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            context = self.get_execution_context(registry, task)
            backend = self._get_backend(context)
            plan = LocalFeatureBuilder(registry, task, backend=backend).build()
            output = plan.nodes[-1]
            view = task.feature_view
            if (
                not isinstance(output, LocalOutputNode)
                or not isinstance(view, FeatureView)
                or getattr(view, "offline", False)
            ):
                plan.execute(context)  # not a shape this engine mirrors: Feast's own plan
            else:
                context.node_outputs = {}
                for node in plan.nodes[:-1]:
                    context.node_outputs[node.name] = node.execute(context)
                table = output.get_single_table(context).data
                context.node_outputs[output.name] = ArrowTableValue(data=table)
                if view.online and table.num_rows:
                    write_online(self.repo_config, self.online_store, view, table, self.batch_rows)
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        except Exception as exc:  # reported through the job, as Feast's engine does
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc)


# ---------------------------------------------------------------------- conversion


def column_pieces(
    column: pa.ChunkedArray | pa.Array, value_type: ValueType
) -> tuple[list[ValueProto], np.ndarray]:
    """Feast's ``ValueProto`` of each distinct value of ``column``, and each row's index into them.

    The protos are made by Feast's ``python_values_to_proto_values`` from the rows of the NumPy array
    Feast's own converter uses (``column.to_numpy(zero_copy_only=False)``), one row per distinct
    value (nulls are one more "value").
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return [], np.zeros(0, np.int64)
    if column.null_count == n:
        return python_values_to_proto_values([None], value_type), np.zeros(n, np.int64)
    encoded = pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)
    uniques, first = np.unique(codes, return_index=True)
    numpy_values = column.to_numpy(zero_copy_only=False)
    protos = python_values_to_proto_values(numpy_values[first], value_type)
    remap = np.empty(int(uniques.max()) + 1, np.int64)
    remap[uniques] = np.arange(len(uniques))
    return protos, remap[codes]


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC; naive means UTC), as Feast rounds them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = column.cast(pa.timestamp(column.type.unit))
    if column.null_count:
        raise ValueError("null event timestamp in materialized rows")
    return column.cast(pa.timestamp("us"), safe=False).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _timestamp_bytes(micros: np.ndarray) -> list[bytes]:
    out = []
    ts = Timestamp()
    for value in micros.tolist():
        seconds, rest = divmod(value, 1_000_000)
        ts.seconds, ts.nanos = seconds, rest * 1000
        out.append(ts.SerializeToString())
    return out


def _join_keys(view: FeatureView) -> dict[str, ValueType]:
    return {entity.name: entity.dtype.to_value_type() for entity in view.entity_columns}


def _entity_keys(table: pa.Table, join_keys: dict[str, ValueType]) -> list[EntityKeyProto]:
    columns = {name: column_pieces(table.column(name), vt) for name, vt in join_keys.items()}
    names = list(join_keys)
    return [
        EntityKeyProto(join_keys=names, entity_values=[columns[k][0][columns[k][1][i]] for k in names])
        for i in range(table.num_rows)
    ]


def _redis_keys(table: pa.Table, join_keys: dict[str, ValueType], project: str, version: int) -> list[bytes]:
    """Feast's Redis key of every row: vectorized for one INT64 join key, checked against Feast."""
    names = list(join_keys)
    n = table.num_rows
    column = table.column(names[0]) if len(names) == 1 else None
    if (
        column is not None
        and join_keys[names[0]] == ValueType.INT64
        and pa.types.is_integer(column.type)
        and column.null_count == 0
    ):
        ids = column.combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        marker = 0x0123456789ABCDEF
        template = _redis_key(
            project, EntityKeyProto(join_keys=names, entity_values=[ValueProto(int64_val=marker)]), version
        )
        at = template.find(struct.pack("<q", marker))
        if at >= 0 and template.count(struct.pack("<q", marker)) == 1:
            prefix, suffix, width = template[:at], template[at + 8 :], len(template)
            buf = np.empty((n, width), np.uint8)
            buf[:, :at] = np.frombuffer(prefix, np.uint8)
            buf[:, at : at + 8] = ids.astype("<i8").view(np.uint8).reshape(n, 8)
            buf[:, at + 8 :] = np.frombuffer(suffix, np.uint8)
            raw = buf.tobytes()
            keys = [raw[i * width : (i + 1) * width] for i in range(n)]
            for i in {0, n - 1}:
                expected = _redis_key(
                    project,
                    EntityKeyProto(join_keys=names, entity_values=[ValueProto(int64_val=int(ids[i]))]),
                    version,
                )
                if keys[i] != expected:
                    raise AssertionError("vectorized Redis key differs from Feast's; refusing to write")
            return keys
    return [_redis_key(project, key, version) for key in _entity_keys(table, join_keys)]


# ---------------------------------------------------------------------- writers


def write_online(
    config: RepoConfig,
    online_store: Any,
    view: FeatureView,
    table: pa.Table,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> int:
    """Write the rows of one feature view (Feast's materialization output) to the online store.

    Returns:
        Rows written (Redis: rows not skipped as stale).
    """
    from feast.infra.online_stores.redis import RedisOnlineStore

    if isinstance(online_store, RedisOnlineStore) and _plain_redis(online_store, config):
        return _write_redis(config, online_store, view, table, batch_rows)
    return _write_generic(config, online_store, view, table, batch_rows)


def _plain_redis(online_store: Any, config: RepoConfig) -> bool:
    """A single Redis server through redis-py with hiredis (cluster / sentinel: Feast's writer)."""
    import importlib.util

    import redis

    return (
        str(getattr(config.online_store.redis_type, "value", config.online_store.redis_type)) == "redis"
        and importlib.util.find_spec("hiredis") is not None
        and type(online_store._get_client(config.online_store)) is redis.Redis
    )


def _feature_pieces(view: FeatureView, table: pa.Table) -> list[tuple[str, list[ValueProto], np.ndarray]]:
    return [(f.name, *column_pieces(table.column(f.name), f.dtype.to_value_type())) for f in view.features]


def _write_generic(
    config: RepoConfig, online_store: Any, view: FeatureView, table: pa.Table, batch_rows: int
) -> int:
    source = view.batch_source
    assert source is not None
    join_keys = _join_keys(view)
    for start in range(0, table.num_rows, batch_rows):
        batch = table.slice(start, batch_rows)
        pieces = _feature_pieces(view, batch)
        keys = _entity_keys(batch, join_keys)
        events = _datetimes(batch.column(source.timestamp_field))
        created = (
            _datetimes(batch.column(source.created_timestamp_column))
            if source.created_timestamp_column
            else [None] * batch.num_rows
        )
        rows = [
            (keys[i], {name: protos[codes[i]] for name, protos, codes in pieces}, events[i], created[i])
            for i in range(batch.num_rows)
        ]
        online_store.online_write_batch(config=config, table=view, data=rows, progress=None)
    return table.num_rows


def _datetimes(column: pa.ChunkedArray) -> list[datetime]:
    """Timestamps exactly as Feast's converter passes them to ``online_write_batch``."""
    return [_coerce_datetime(v) for v in pd.to_datetime(column.to_numpy(zero_copy_only=False))]


def _write_redis(
    config: RepoConfig, online_store: Any, view: FeatureView, table: pa.Table, batch_rows: int
) -> int:
    from feast.infra.online_stores.redis import _versioned_fv_name

    store_config = config.online_store
    client = online_store._get_client(store_config)
    fv_name = _versioned_fv_name(view, config)
    ts_key = f"_ts:{fv_name}".encode()
    field_keys = [_mmh3(f"{fv_name}:{f.name}") for f in view.features]
    source = view.batch_source
    assert source is not None
    expire = store_config.key_ttl_seconds
    join_keys = _join_keys(view)
    written = 0
    for start in range(0, table.num_rows, batch_rows):
        batch = table.slice(start, batch_rows)
        keys = _redis_keys(batch, join_keys, config.project, config.entity_key_serialization_version)
        micros = _micros(batch.column(source.timestamp_field))
        keep = _fresh_rows(client, keys, ts_key, micros, skip_dedup=store_config.skip_dedup)
        if not keep:
            continue
        stamps = _timestamp_bytes(micros[keep])
        columns = [
            (field_key, [p.SerializeToString() for p in protos], codes[keep].tolist())
            for field_key, (_, protos, codes) in zip(field_keys, _feature_pieces(view, batch), strict=True)
        ]
        _round_trip(
            client,
            _hset_commands(keys, keep, ts_key, stamps, columns, expire),
            len(keep) * (2 if expire else 1),
        )
        written += len(keep)
    return written


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _hset_commands(
    keys: Sequence[bytes],
    keep: Sequence[int],
    ts_key: bytes,
    stamps: Sequence[bytes],
    columns: Sequence[tuple[bytes, list[bytes], list[int]]],
    expire: int | None,
) -> bytes:
    """RESP of ``HSET key _ts:<view> <ts> <field> <value> ...`` (and ``EXPIRE``) per kept row.

    The ``<field> <value>`` pairs are encoded once per distinct value. The first command is checked
    against hiredis' own packer (what redis-py sends).
    """
    import hiredis

    header = b"*%d\r\n%s" % (4 + 2 * len(columns), _bulk(b"HSET"))
    ts_field = _bulk(ts_key)
    pieces = [([_bulk(field) + _bulk(v) for v in values], codes) for field, values, codes in columns]
    out: list[bytes] = []
    for j, i in enumerate(keep):
        key = _bulk(keys[i])
        out.append(header)
        out.append(key)
        out.append(ts_field)
        out.append(_bulk(stamps[j]))
        for fragments, codes in pieces:
            out.append(fragments[codes[j]])
        if expire:
            out.append(b"*3\r\n$6\r\nEXPIRE\r\n" + key + _bulk(str(expire).encode()))
        if j == 0:
            args: list[Any] = ["HSET", keys[i], ts_key, stamps[0]]
            for field, values, codes in columns:
                args += [field, values[codes[0]]]
            first = b"".join(out[: 4 + len(pieces)])
            if hiredis.pack_command(tuple(args)) != first:
                raise AssertionError("RESP encoding differs from hiredis'; refusing to write")
    return b"".join(out)


def _round_trip(client: Any, packed: bytes, replies: int) -> list[Any]:
    """Send ``replies`` packed commands in one write and read every reply (no transaction).

    On a plain Redis client the replies are parsed by a hiredis reader straight off the
    connection's socket, skipping redis-py's per-command pipeline bookkeeping (cost measured in
    docs/benchmarks.md, feature-service); an error reply raises after all replies are read.
    Other clients are not supported (the caller falls back to Feast's writer).
    """
    import hiredis

    pool = client.connection_pool
    conn = pool.get_connection()
    out: list[Any] = []
    try:
        conn.send_packed_command([packed])
        sock = conn._sock
        reader = hiredis.Reader()
        while len(out) < replies:
            reply = reader.gets()
            if reply is False:
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                reader.feed(data)
                continue
            out.append(reply)
    except BaseException:
        conn.disconnect()  # replies may be left unread: never reuse this connection
        raise
    finally:
        pool.release(conn)
    for reply in out:
        if isinstance(reply, Exception):
            raise reply
    return out


def _fresh_rows(
    client: Any, keys: Sequence[bytes], ts_key: bytes, micros: np.ndarray, *, skip_dedup: bool
) -> list[int]:
    """Rows to write: Feast's rule (skip a row not newer than the stored or an earlier queued row)."""
    n = len(keys)
    if skip_dedup:
        return list(range(n))
    field = _bulk(ts_key)
    packed = b"".join(b"*3\r\n$5\r\nHMGET\r\n" + _bulk(key) + field for key in keys)
    previous = [r[0] for r in _round_trip(client, packed, n)]
    if not any(previous) and len(set(keys)) == n:
        return list(range(n))  # nothing stored, one row per entity: every row is written
    new_nanos = micros * 1000
    latest: dict[bytes, int] = {}
    keep = []
    parsed = Timestamp()
    for i, (key, prev) in enumerate(zip(keys, previous, strict=True)):
        prev_nanos = 0
        if prev:
            parsed.ParseFromString(prev)
            prev_nanos = parsed.seconds * 1_000_000_000 + parsed.nanos
        seen = max(prev_nanos, latest.get(key, 0))
        value = int(new_nanos[i])
        if seen and value <= seen:
            continue
        latest[key] = value
        keep.append(i)
    return keep

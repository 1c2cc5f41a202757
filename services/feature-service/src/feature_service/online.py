"""The online read below ``FeatureStore.get_online_features``: Feast's online store, read directly.

``FeatureStore.get_online_features`` (Feast 0.67) spends most of a one-entity call assembling its
generic response (registry look-ups, entity de-duplication, a ``GetOnlineFeaturesResponse`` proto,
its on-demand augmentation converting that proto to Python and back, typeguard checks), not in the
store's own read (figures: docs/benchmarks.md, feature-service). The feature-service converted that
response once more. This module reads the same rows through the same online store and applies the same
on-demand transformation, keeping only what the core needs:

* **stored feature views**: ``OnlineStore.online_read(config, view, entity_keys, features)`` per
  view (every online store implements it; SQLite on the embedded profile). On Redis, the views of
  one request are read in **one pipeline**, as Feast's own ``RedisOnlineStore._read_features_per_fv``
  does, with the store's own key, field and value helpers (so the keys and decoding are Feast's).
* **on-demand feature views**: ``OnDemandFeatureView.transform_dict`` on the join key, the source
  features and the request values, its outputs converted by Feast's ``python_values_to_proto_values``,
  as Feast's ``_augment_response_with_on_demand_transforms`` does (python mode, batch views computed
  at read time; other kinds are refused: :func:`unsupported`).

The statuses (PRESENT / NULL_VALUE / MISSING / OUTSIDE_TTL) are derived by
:mod:`feature_service.online_read` from what is read here, exactly as from Feast's response before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feast import FeatureStore, FeatureView, OnDemandFeatureView
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

#: One entity's row of one view: (event time or None, feature name -> value proto) or (None, None).
Row = tuple[datetime | None, dict[str, ValueProto] | None]


@dataclass(frozen=True)
class ViewRead:
    """What to read of one stored feature view: the view and its feature names (requested features
    and the inputs of the on-demand views that read it)."""

    view: FeatureView
    features: list[str]


def entity_keys(join_key: str, keys: Sequence[int | str]) -> list[EntityKeyProto]:
    """Feast entity keys of int64 or string join-key values (one per entity row)."""
    return [
        EntityKeyProto(
            join_keys=[join_key],
            entity_values=[ValueProto(string_val=k) if isinstance(k, str) else ValueProto(int64_val=k)],
        )
        for k in keys
    ]


def _redis_store_class() -> type | None:
    """Feast's Redis online store class, when it has the helpers its own batched read uses (checked
    once, at import: they are private to Feast and could go in an upgrade)."""
    try:
        from feast.infra.online_stores.redis import RedisOnlineStore
    except ImportError:  # pragma: no cover - the redis extra is part of the service's environment
        return None
    helpers = (
        "_generate_redis_keys_for_entities",
        "_generate_hset_keys_for_features",
        "_read_hash_fields",
        "_convert_redis_values_to_protobuf",
    )
    return RedisOnlineStore if all(hasattr(RedisOnlineStore, name) for name in helpers) else None


_REDIS_STORE = _redis_store_class()


def _redis_batch(online_store: OnlineStore) -> bool:
    """Whether the store is Feast's Redis store with the helpers its own batched read uses."""
    return _REDIS_STORE is not None and isinstance(online_store, _REDIS_STORE)


def read_rows(
    store: FeatureStore, reads: Sequence[ViewRead], keys: list[EntityKeyProto]
) -> dict[str, list[Row]]:
    """Every view's rows for ``keys`` (``rows[view][i]`` is entity ``i``'s), through Feast's online store.

    Raises:
        whatever the online store raises (connection errors, timeouts): the caller maps them.
    """
    if not reads:
        return {}
    config = store.config
    online_store = store._get_provider().online_store
    if _redis_batch(online_store):
        commands, plan, n = _redis_commands(online_store, config, reads, keys)
        return _redis_rows(online_store, online_store._read_hash_fields(config, commands), plan, n)  # type: ignore[attr-defined]
    return {
        read.view.name: online_store.online_read(config, read.view, keys, list(read.features))
        for read in reads
    }


#: (versioned view name, feature names) -> the Redis store's (names, hash fields) of a read (read-only).
_HSET_FIELDS: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[Any]]] = {}


def _redis_commands(
    online_store: Any, config: Any, reads: Sequence[ViewRead], keys: list[EntityKeyProto]
) -> tuple[list[tuple[bytes, list[Any]]], list[tuple[str, str, list[str]]], int]:
    """One HMGET per (view, entity) with the store's own keys and fields, as Feast's batched read."""
    from feast.infra.online_stores.redis import _versioned_fv_name

    redis_keys = online_store._generate_redis_keys_for_entities(config, keys)
    commands: list[tuple[bytes, list[Any]]] = []
    plan: list[tuple[str, str, list[str]]] = []
    for read in reads:
        fv_name = _versioned_fv_name(read.view, config)
        cached = _HSET_FIELDS.get((fv_name, tuple(read.features)))
        if cached is None:  # the store's field hashes (mmh3) depend only on these names
            cached = online_store._generate_hset_keys_for_features(
                read.view, list(read.features), fv_name_override=fv_name
            )
            _HSET_FIELDS[(fv_name, tuple(read.features))] = cached
        names, fields = cached
        plan.append((read.view.name, fv_name, names))
        commands.extend((key, fields) for key in redis_keys)
    return commands, plan, len(redis_keys)


def _redis_rows(
    online_store: Any, replies: Sequence[Any], plan: list[tuple[str, str, list[str]]], n: int
) -> dict[str, list[Row]]:
    return {
        view_name: online_store._convert_redis_values_to_protobuf(
            replies[j * n : (j + 1) * n], fv_name, names
        )
        for j, (view_name, fv_name, names) in enumerate(plan)
    }


class AsyncReader:
    """The non-blocking online read on the caller's event loop, where the store has one (Redis:
    Feast's ``redis.asyncio`` client, one per event loop, since its connections belong to the loop
    that opened them). No worker-thread hop per read; a Redis that hangs blocks no thread and no
    loop (the socket timeouts of the connection string and the RPC's deadline bound the wait).

    Args:
        store_of: returns the Feast store when it is built, else None (the reader never builds it:
            building reads the registry, which must not happen on the event loop).
    """

    def __init__(self, store_of: Callable[[], FeatureStore | None]) -> None:
        self._store_of = store_of
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    @property
    def store(self) -> FeatureStore:
        store = self._store_of()
        if store is None:
            raise RuntimeError("the feature store is not built yet")
        return store

    @property
    def available(self) -> bool:
        """Whether the store is built and has a non-blocking read (else: read in a worker thread)."""
        store = self._store_of()
        return store is not None and _redis_batch(store._get_provider().online_store)

    async def _client(self, online_store: Any) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Clients of loops that are gone are dropped (their connections close with them).
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            # Feast caches a single asyncio client per store; connections must not cross loops.
            online_store._client_async = None
            client = await online_store._get_client_async(self.store.config.online_store)
            online_store._client_async = None
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (its pooled connections); the next read opens a new one."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def read_rows(self, reads: Sequence[ViewRead], keys: list[EntityKeyProto]) -> dict[str, list[Row]]:
        """As :func:`read_rows`, without blocking the event loop (only where :attr:`available`)."""
        if not reads:
            return {}
        store = self.store
        online_store = store._get_provider().online_store
        commands, plan, n = _redis_commands(online_store, store.config, reads, keys)
        client = await self._client(online_store)
        async with client.pipeline(transaction=False) as pipe:
            for key, fields in commands:
                pipe.hmget(key, fields)
            replies = await pipe.execute()
        return _redis_rows(online_store, replies, plan, n)


def unsupported(odfv: OnDemandFeatureView) -> str | None:
    """Why this read cannot serve an on-demand view (None: it can): only python-mode, batch
    (not singleton) views computed at read time, as this project's repository defines them."""
    if getattr(odfv, "mode", "python") != "python":
        return f"mode '{odfv.mode}' (only python mode is read online)"
    if getattr(odfv, "singleton", False):
        return "singleton=True"
    if getattr(odfv, "write_to_online_store", False):
        return "write_to_online_store=True (its values are stored, not computed at read time)"
    return None


def transform(odfv: OnDemandFeatureView, inputs: dict[str, list[Any]]) -> dict[str, list[ValueProto]]:
    """An on-demand view's outputs for column-wise inputs: Feast's ``transform_dict`` (python mode),
    each output converted to its declared type by Feast's own ``python_values_to_proto_values`` (as
    ``_augment_response_with_on_demand_transforms`` does: a value of another type raises there).

    Args:
        odfv: the on-demand feature view (see :func:`unsupported`).
        inputs: join key, source feature and request field name -> one value per entity row (None =
            null); the lists are copied, so a UDF that changes its inputs changes nothing else.

    Returns:
        output feature name -> one value proto per entity row.
    """
    from feast.type_map import python_values_to_proto_values

    output = odfv.transform_dict({name: list(values) for name, values in inputs.items()})
    return {
        f.name: python_values_to_proto_values(list(output[f.name]), f.dtype.to_value_type())
        for f in odfv.features
    }

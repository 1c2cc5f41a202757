"""Online reads: the latest value of each requested feature per entity, with its status.

Values are read below ``FeatureStore.get_online_features`` (:mod:`feature_service.online`: the
online store's own read and the on-demand view's own transformation), and give the same values as
Feast's answer (tested cell by cell against it, ``tests/test_online.py``; the cost of each is in
docs/benchmarks.md, feature-service). Feast's Redis store answers an entity it does not hold with
empty values and an unset (epoch 0) event time, SQLite with no row, and neither applies a TTL; this
read reports NULL_VALUE for a stored null, MISSING for an entity the store does not hold, and
OUTSIDE_TTL when the value's event time is older than its view's TTL (the value is still returned).

Request data: Feast raises when an on-demand view's request field is absent, so both override
fields are always sent, null when the caller gave none (the UDF then uses the stored value).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import redis.exceptions
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from opentelemetry import trace

from feature_service import metrics, online
from feature_service.domain import OnlineColumn, OnlineFeatures, ValueStatus
from feature_service.errors import InvalidArgument, Unavailable
from feature_service.plans import Plan
from feature_service.schema import Kind, ProductLayout

if TYPE_CHECKING:
    from feature_service.core import FeatureStoreCore

_TRACER = trace.get_tracer("feature_service")

_NULL_OR_PRESENT = {True: ValueStatus.NULL_VALUE, False: ValueStatus.PRESENT}
_WHICH_VAL = operator.methodcaller("WhichOneof", "val")
_FLOAT_KINDS = frozenset({"double_val", "float_val"})


def _column_values(protos: Any, n: int) -> list[Any]:
    """Python values of Feast ``Value`` protos (unset / ``null_val`` / NaN -> None), read per column."""
    kinds = list(map(_WHICH_VAL, protos))
    if len(kinds) < n:
        raise IndexError(f"{len(kinds)} values for {n} entity rows")
    kinds = kinds[:n] if len(kinds) > n else kinds
    distinct = set(kinds)
    if len(distinct) == 1 and None not in distinct and "null_val" not in distinct:
        (kind,) = distinct
        values = list(map(operator.attrgetter(kind), protos))[:n]
    else:
        values = [
            None if kind is None or kind == "null_val" else getattr(proto, kind)
            for proto, kind in zip(protos, kinds, strict=False)
        ]
    if distinct & _FLOAT_KINDS:
        values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    return values


@dataclass(frozen=True)
class _Stamps:
    """Event times of one response column: datetimes (None: unstamped), TTL flags, all-fresh flag."""

    datetimes: list[datetime | None]
    expired: list[bool]
    all_fresh: bool


def _row_stamps(rows: Sequence[online.Row], n: int, ttl: float | None, now: float) -> _Stamps:
    """Event times of one view's rows: datetimes (None: no row, or Feast's unset epoch-0 stamp of an
    entity the Redis store does not hold), TTL flags (``now - event time > ttl``), all-fresh flag."""
    floats = [r[0].timestamp() if r[0] is not None else 0.0 for r in rows]
    if len(floats) < n:
        raise IndexError(f"{len(floats)} rows for {n} entity rows")
    datetimes = [datetime.fromtimestamp(f, UTC) if f else None for f in floats]
    expired = [bool(f) and now - f > ttl for f in floats] if ttl is not None else [False] * n
    return _Stamps(datetimes, expired, all(floats) and not any(expired))


_EMPTY = ValueProto()


def _statuses(values: list[Any], raw: list[int], stamps: _Stamps) -> OnlineColumn:
    """Per-value statuses of a stored feature's column (the general path; see ``_convert``)."""
    out_values: list[Any] = []
    out_statuses: list[ValueStatus] = []
    out_ts: list[datetime | None] = []
    for value, status, ts, expired in zip(values, raw, stamps.datetimes, stamps.expired, strict=True):
        if status == FieldStatus.NOT_FOUND or (ts is None and value is None):
            # Feast's Redis store answers PRESENT with an empty value and no timestamp for an
            # entity it does not hold; a stored row always has its event timestamp.
            out_values.append(None)
            out_statuses.append(ValueStatus.MISSING)
            out_ts.append(None)
            continue
        if status == FieldStatus.OUTSIDE_MAX_AGE or expired:
            out_statuses.append(ValueStatus.OUTSIDE_TTL)
        elif value is None:
            out_statuses.append(ValueStatus.NULL_VALUE)
        else:
            out_statuses.append(ValueStatus.PRESENT)
        out_values.append(value)
        out_ts.append(ts)
    return OnlineColumn(out_values, out_statuses, out_ts)


@contextlib.contextmanager
def _online_store_errors() -> Iterator[None]:
    """An online store that cannot be reached or does not answer within its socket timeout is
    UNAVAILABLE (a retryable backend outage), not INTERNAL; the message names no key or value."""
    try:
        yield
    except (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise Unavailable(f"online store unavailable: {type(exc).__name__}") from exc


class OnlineReader:
    """Reads the online store (blocking, or on an event loop where the store allows it).

    Args:
        core: the shared state (the Feast store, the settings, the online store's guard, the
            resolved selections).
    """

    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core
        self._async_reader = online.AsyncReader(lambda: core.built_store)

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        request_values: Sequence[Mapping[str, Any] | None] | None = None,
        feature_service: str | None = None,
        features: Sequence[str] | None = None,
        feature_service_version: str | None = None,
    ) -> OnlineFeatures:
        """Latest values of the requested features for each entity row, from the online store.

        Args:
            entity_rows: one mapping per entity, ``{<join key>: int or str}`` (the product's entity
                key and type).
            request_values: optional, parallel to ``entity_rows``: request-time values per row,
                by the product's caller-facing names (``[serving].request_fields``) or the request
                source's field names, typed as the request source's fields; on-demand features use
                them in place of the stored values. Absent or None: stored value.
            feature_service: name of a feature service (e.g. the product's model service), or
            features: feature references ``view:feature``; exactly one of the two.
            feature_service_version: expected ``version`` tag of the feature service (None or ""
                means whatever is registered; ignored with explicit features).

        Returns:
            Values with status and event timestamp per entity and feature, plus the feature specs
            and the feature service's version. An entity that exists nowhere gets status
            MISSING, not an error.

        Raises:
            NotFound: unknown feature service, feature view or feature (named).
            InvalidArgument: a missing or unknown join key, a key of the wrong type, a bad request
                value or feature reference (the key is named).
            FailedPrecondition: a requested view is offline-only (labels), or the feature service's
                version differs from ``feature_service_version`` (both named).
        """
        plan = self._core.plans.get(
            feature_service, features, online=True, expected_version=feature_service_version
        )
        keys, columns = self._online_rows(plan, entity_rows, request_values)
        if not keys:
            return self._empty_online(plan)
        with self._span(plan, keys), self._core.online_guard, _online_store_errors():
            rows = online.read_rows(
                self._core.store, plan.reads, online.entity_keys(self._core.layout.entity_key, keys)
            )
        result = self._assemble(plan, keys, rows, columns)
        metrics.observe_online(result)
        return result

    async def get_online_features_async(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        request_values: Sequence[Mapping[str, Any] | None] | None = None,
        feature_service: str | None = None,
        features: Sequence[str] | None = None,
        feature_service_version: str | None = None,
    ) -> OnlineFeatures:
        """:meth:`get_online_features` for an event loop (same arguments, result and errors).

        Where the online store reads without blocking (Redis: Feast's asyncio client), the read
        runs on the calling loop with no worker-thread hop; a selection that is not resolved yet
        (a registry read, possibly over the network) and every other store (SQLite) run in a
        worker thread, so the loop never waits on blocking I/O.
        """
        if not self._async_reader.available:
            return await asyncio.to_thread(
                self.get_online_features,
                entity_rows,
                request_values,
                feature_service,
                features,
                feature_service_version,
            )
        plan = self._core.plans.cached(feature_service, features, online=True)
        if plan is None:  # resolving reads the registry: not on the loop
            plan = await asyncio.to_thread(
                self._core.plans.get, feature_service, features, True, feature_service_version
            )
        else:
            plan = self._core.plans.checked(plan, feature_service, True, feature_service_version)
        keys, columns = self._online_rows(plan, entity_rows, request_values)
        if not keys:
            return self._empty_online(plan)
        with self._span(plan, keys), _online_store_errors():
            rows = await self._async_reader.read_rows(
                plan.reads, online.entity_keys(self._core.layout.entity_key, keys)
            )
        result = self._assemble(plan, keys, rows, columns)
        metrics.observe_online(result)
        return result

    async def aclose(self) -> None:
        """Close the non-blocking read's connections of the running event loop (at shutdown)."""
        await self._async_reader.aclose()

    def _online_rows(
        self,
        plan: Plan,
        entity_rows: Sequence[Mapping[str, Any]],
        request_values: Sequence[Mapping[str, Any] | None] | None,
    ) -> tuple[list[Any], dict[str, list[Any]]]:
        """The entity keys and the request columns of an online read (validated)."""
        layout = self._core.layout
        keys = [self._entity_key(layout, row, i) for i, row in enumerate(entity_rows)]
        if request_values is not None and len(request_values) != len(keys):
            raise InvalidArgument(
                "request_values", f"{len(request_values)} request rows for {len(keys)} entity rows"
            )
        columns: dict[str, list[Any]] = {layout.entity_key: keys}
        if plan.needs_request_data:
            rows = [
                self._request_row(layout, request_values[i] if request_values else None, i)
                for i in range(len(keys))
            ]
            for name in layout.request_source_fields:
                columns[name] = [r[name] for r in rows]
        elif request_values and any(request_values):
            for i, rv in enumerate(request_values):
                self._request_row(layout, rv, i)  # validates the names even when unused
        return keys, columns

    @staticmethod
    def _empty_online(plan: Plan) -> OnlineFeatures:
        return OnlineFeatures([], plan.specs, [OnlineColumn([], [], []) for _ in plan.specs], plan.version)

    def _span(self, plan: Plan, keys: list[Any]) -> Any:
        """The online-store read as its own span: counts and names only, never keys or values."""
        return _TRACER.start_as_current_span(
            "feature_store.online_read",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "feature.entity_count": len(keys),
                "feature.count": len(plan.specs),
                "feature.online_store": "redis" if self._core.settings.profile == "real" else "sqlite",
            },
        )

    def _assemble(
        self,
        plan: Plan,
        keys: list[Any],
        rows: Mapping[str, list[online.Row]],
        request_columns: Mapping[str, list[Any]],
    ) -> OnlineFeatures:
        """The online store's rows and the on-demand outputs as columns, one feature at a time.

        Per value, the rules are those of the module docstring: NULL_VALUE for a stored null (or
        NaN), MISSING (value and timestamp dropped) for an entity row the view does not hold or a
        value without timestamp, OUTSIDE_TTL when ``now - event time > ttl`` (value kept). The
        common case (every value present, stamped and fresh) is decided per column without a
        per-value branch. A row that lacks a feature (added to its view after the row was written)
        is MISSING for that feature. An on-demand value is computed from the join key, its stored
        inputs (read even when they are not requested) and the request fields, stamped with the
        latest event time of its stored inputs, and MISSING when no input view holds the entity.
        """
        now = time.time()
        n = len(keys)
        stamps_by_view: dict[str, _Stamps] = {}
        stored: dict[tuple[str, str], OnlineColumn] = {}
        for read in plan.reads:
            view_rows = rows[read.view.name]
            ttl = (
                read.view.ttl.total_seconds() if read.view.ttl and read.view.ttl.total_seconds() > 0 else None
            )
            stamps = _row_stamps(view_rows, n, ttl, now)
            stamps_by_view[read.view.name] = stamps
            for name in read.features:
                # a row without this feature (added to the view since the row was written) is MISSING
                protos = [_EMPTY if r[1] is None else r[1].get(name, _EMPTY) for r in view_rows]
                raw = [
                    FieldStatus.NOT_FOUND if r[1] is None or name not in r[1] else FieldStatus.PRESENT
                    for r in view_rows
                ]
                values = _column_values(protos, n)
                if stamps.all_fresh and None not in values and FieldStatus.NOT_FOUND not in raw:
                    column = OnlineColumn(values, [ValueStatus.PRESENT] * n, stamps.datetimes)
                else:
                    column = _statuses(values, raw, stamps)
                stored[(read.view.name, name)] = column
        derived: dict[tuple[str, str], OnlineColumn] = {}
        for odfv, sources in plan.odfvs:
            # as Feast's on-demand augmentation passes them: the join key, the source features, the
            # request fields
            inputs: dict[str, list[Any]] = {self._core.layout.entity_key: keys}
            inputs.update({f: stored[(v, f)].values for v, f in sources})
            for request_source in odfv.source_request_sources.values():
                for f in request_source.schema:
                    inputs[f.name] = list(request_columns.get(f.name, [None] * n))
            outputs = online.transform(odfv, inputs)
            source_columns = [stored[source] for source in sources]
            latest = [
                max((c.timestamps[i] for c in source_columns if c.timestamps[i] is not None), default=None)
                for i in range(n)
            ]
            source_views = {v for v, _ in sources}
            # no input view holds the entity: no row (or an unset time) in every source view
            all_missing = [
                all(stamps_by_view[v].datetimes[i] is None for v in source_views) for i in range(n)
            ]
            for f in odfv.features:
                values = _column_values(outputs[f.name], n)
                statuses = [
                    ValueStatus.MISSING if v is None and missing else _NULL_OR_PRESENT[v is None]
                    for v, missing in zip(values, all_missing, strict=True)
                ]
                derived[(odfv.name, f.name)] = OnlineColumn(values, statuses, latest)
        columns = [
            stored.get((spec.view, spec.feature)) or derived[(spec.view, spec.feature)] for spec in plan.specs
        ]
        key = self._core.layout.entity_key
        return OnlineFeatures([{key: k} for k in keys], plan.specs, columns, plan.version)

    @staticmethod
    def _entity_key(layout: ProductLayout, row: Mapping[str, Any], index: int) -> Any:
        key = layout.entity_key
        if not isinstance(row, Mapping):
            raise InvalidArgument("entity_rows", f"row {index} is not a mapping of join keys")
        if key not in row:
            raise InvalidArgument(key, f"missing join key in entity row {index}")
        unknown = [k for k in row if k != key]
        if unknown:
            raise InvalidArgument(unknown[0], f"unknown join key in entity row {index} (expected '{key}')")
        value = row[key]
        if layout.entity_kind == "string":
            if not isinstance(value, str):
                raise InvalidArgument(
                    key, f"entity row {index}: expected a string, got {type(value).__name__} {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidArgument(
                key, f"entity row {index}: expected an int64, got {type(value).__name__} {value!r}"
            )
        if not -(2**63) <= int(value) < 2**63:
            raise InvalidArgument(key, f"entity row {index}: {value} is out of the int64 range")
        return int(value)

    @staticmethod
    def _request_row(layout: ProductLayout, values: Mapping[str, Any] | None, index: int) -> dict[str, Any]:
        kinds = layout.request_source_fields
        aliases = layout.request_aliases
        out: dict[str, Any] = dict.fromkeys(kinds)
        for key, value in (values or {}).items():
            target = aliases.get(key)
            if target is None:
                raise InvalidArgument(
                    key, f"request value {index}: unknown request field (accepted: {layout.request_names})"
                )
            if value is not None:
                out[target] = request_value(kinds[target], value, key, index)
        return out


def request_value(kind: Kind, value: Any, key: str, index: int) -> Any:
    """``value`` checked (and converted) as a request field of ``kind``.

    Raises:
        InvalidArgument: the value does not have that kind (``key`` named).
    """
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidArgument(
                key, f"request value {index}: expected an int64, got {type(value).__name__} {value!r}"
            )
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise InvalidArgument(key, f"request value {index}: expected a number, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool | np.bool_):
            raise InvalidArgument(key, f"request value {index}: expected a bool, got {value!r}")
        return bool(value)
    if not isinstance(value, str):
        raise InvalidArgument(key, f"request value {index}: expected a string, got {value!r}")
    return value

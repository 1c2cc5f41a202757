"""``FeatureStoreCore``: the feature-service's domain API over Feast (thin transports call it).

Every transport (the gRPC servicer, a REST handler, the CLI) converts its messages to these
arguments and the returned dataclasses back; errors are :mod:`feature_service.errors` exceptions
that carry their gRPC / HTTP status.

Where Feast 0.67 behaves in ways the API hides:

* Online values are read below ``FeatureStore.get_online_features`` (:mod:`feature_service.online`:
  the online store's own read and the on-demand view's own transformation; the same values as
  Feast's answer, tested cell by cell, at less than half its CPU). Feast's Redis store answers an
  entity it does not hold with empty values and an unset (epoch 0) event time, SQLite with no row,
  and neither applies a TTL; this core reports NULL_VALUE for a stored null, MISSING for an entity
  the store does not hold, and OUTSIDE_TTL when the value's event time is older than its view's
  TTL (the value is still returned).
* Python-mode on-demand outputs vanish from the response when ``full_feature_names=True``; Feast
  is called with short names (unique within a selection) and the core names features ``view:feature``.
* Request data: Feast raises when an on-demand view's request field is absent, so both override
  fields are always sent, null when the caller gave none (the UDF then uses the stored value).
* Point-in-time joins run with ``filter_by_created_timestamp=True`` (configurable): otherwise a late
  correction (same event time, later created time) leaks into rows stamped before it existed.
* The PostgreSQL offline store returns integers as float64 when a null is present and naive event
  timestamps; the historical output is cast back to the Feast schema and to UTC.
* Offline pushes go through :mod:`feature_service.offline` on both profiles: Feast 0.67's PostgreSQL
  offline store has no offline write (COPY instead), and its DuckDB append rewrites the Parquet
  file in place (an atomic replace instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import operator
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis.exceptions
from creditrisk_kit.arrow import utc_timestamps
from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView
from feast.data_source import PushMode
from feast.errors import (
    FeatureServiceNotFoundException,
    FeatureViewNotFoundException,
    OnDemandFeatureViewNotFoundException,
)
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from opentelemetry import trace

from feature_service import metrics, online
from feature_service.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from feature_service.offline import conform, offline_writer
from feature_service.repo import VERSION_TAG, FeastRepo, build_repo
from feature_service.schema import (
    APPLICATION_TIMESTAMP,
    CREATED_TIMESTAMP,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    LABEL_TIMESTAMP,
    REQUEST_FIELDS,
    VIEWS_BY_NAME,
)
from feature_service.settings import FeatureServiceSettings
from feature_service.sources import repo_config, write_feature_store_yaml

metrics.keep_values_in_process()  # after `import feast`, which switched prometheus-client to files

_REQUEST_ALIASES: dict[str, str] = {**REQUEST_FIELDS, **{v: v for v in REQUEST_FIELDS.values()}}
_ROW_INDEX = "__feature_service_row"
_TRACER = trace.get_tracer("feature_service")


class ValueStatus(StrEnum):
    """Status of one online value."""

    PRESENT = "PRESENT"
    NULL_VALUE = "NULL_VALUE"
    MISSING = "MISSING"
    OUTSIDE_TTL = "OUTSIDE_TTL"


class PushTarget(StrEnum):
    """Where pushed rows go."""

    ONLINE = "online"
    OFFLINE = "offline"
    BOTH = "both"


@dataclass(frozen=True)
class FeatureSpec:
    """A feature as the API names and types it.

    Attributes:
        name: reference ``view:feature``.
        view: feature view (or on-demand feature view) name.
        feature: feature name within the view.
        value_type: Feast value type name: ``INT64``, ``DOUBLE``, ``STRING`` or ``BOOL``.
    """

    name: str
    view: str
    feature: str
    value_type: str


@dataclass(frozen=True)
class FeatureValue:
    """One value of the online response.

    Attributes:
        value: int, float, str, bool or None.
        status: see :class:`ValueStatus`.
        event_timestamp: event time of the stored row (UTC), None when missing; for on-demand
            features the latest event time of its stored inputs.
    """

    value: int | float | str | bool | None
    status: ValueStatus
    event_timestamp: datetime | None


@dataclass(frozen=True)
class OnlineColumn:
    """One feature over every entity row of an online response (``values[i]`` is row ``i``'s).

    Attributes:
        values: int, float, str, bool or None per row.
        statuses: see :class:`ValueStatus`.
        timestamps: event time per row (UTC) or None; as :attr:`FeatureValue.event_timestamp`.
    """

    values: list[int | float | str | bool | None]
    statuses: list[ValueStatus]
    timestamps: list[datetime | None]


@dataclass(frozen=True)
class OnlineFeatures:
    """The online response, column-wise: ``columns[j]`` is feature ``features[j]`` over ``entity_rows``.

    ``values[i][j]`` gives the same data row-wise as :class:`FeatureValue` objects (built on first
    access; transports read the columns). ``feature_service_version`` is the ``version`` tag of the
    feature service read ("" for explicit feature references).
    """

    entity_rows: list[dict[str, Any]]
    features: list[FeatureSpec]
    columns: list[OnlineColumn]
    feature_service_version: str = ""

    @cached_property
    def values(self) -> list[list[FeatureValue]]:
        """Row-wise: ``values[i][j]`` is feature ``features[j]`` of ``entity_rows[i]``."""
        cells = [list(map(FeatureValue, c.values, c.statuses, c.timestamps)) for c in self.columns]
        return [list(row) for row in zip(*cells, strict=True)] if cells else [[] for _ in self.entity_rows]

    def as_dicts(self) -> list[dict[str, Any]]:
        """Row-wise ``{feature name: value}`` (convenience for callers and tests)."""
        names = [s.name for s in self.features]
        rows = zip(*(c.values for c in self.columns), strict=True) if self.columns else ()
        return [dict(zip(names, row, strict=True)) for row in rows] or [{} for _ in self.entity_rows]


@dataclass(frozen=True)
class FeatureViewInfo:
    """Description of a feature view.

    Attributes:
        kind: ``batch`` or ``on_demand``.
        ttl: the view's TTL (None: unlimited or not applicable).
        online: whether its values are served online.
        push_source: name of its push source, if any.
        request_fields: request-data fields an on-demand view accepts.
    """

    name: str
    kind: str
    entities: list[str]
    features: list[FeatureSpec]
    ttl: timedelta | None
    online: bool
    push_source: str | None
    request_fields: list[str]
    description: str
    tags: dict[str, str]
    sources: list[SourceInfo] = field(default_factory=list)
    owner: str = ""
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def version(self) -> str:
        """The ``version`` tag ("" if none)."""
        return self.tags.get(VERSION_TAG, "")


@dataclass(frozen=True)
class SourceInfo:
    """A source a feature view reads.

    Attributes:
        kind: ``file``, ``postgres``, ``push``, ``request`` or ``feature_view``.
        location: file path or table ("" for request / feature view sources).
        schema: request sources: the request values accepted, by caller-facing name.
    """

    name: str
    kind: str
    location: str = ""
    timestamp_field: str = ""
    created_timestamp_column: str = ""
    schema: list[FeatureSpec] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureServiceInfo:
    """Description of a feature service.

    Attributes:
        features: every feature, in result column order.
        feature_views: the views it reads, in order (``features`` grouped by ``FeatureSpec.view``).
        request_fields: request values its on-demand views accept (caller-facing names, INT64).
    """

    name: str
    features: list[FeatureSpec]
    feature_views: list[str]
    description: str
    tags: dict[str, str]
    request_fields: list[FeatureSpec] = field(default_factory=list)
    owner: str = ""
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def version(self) -> str:
        """The ``version`` tag ("" if none)."""
        return self.tags.get(VERSION_TAG, "")


@dataclass(frozen=True)
class ViewMaterialization:
    """What one materialization did for one feature view (event-time window ``[start, end]``)."""

    feature_view: str
    start: datetime | None
    end: datetime
    seconds: float


@dataclass(frozen=True)
class MaterializeResult:
    """What a materialization covered (``start`` is None for incremental runs); ``views`` by name."""

    feature_views: list[str]
    start: datetime | None
    end: datetime
    views: list[ViewMaterialization] = field(default_factory=list)


@dataclass(frozen=True)
class EntityInfo:
    """An entity: name, join key, join key's value type, description."""

    name: str
    join_key: str
    value_type: str
    description: str


@dataclass(frozen=True)
class PushResult:
    """What a push wrote."""

    push_source: str
    feature_view: str
    rows: int
    to: PushTarget


@dataclass
class _Plan:
    """A resolved feature selection (cached per registry refresh)."""

    feast_features: FeatureService | list[str]
    specs: list[FeatureSpec]
    online_views: set[str]
    offline_only_views: list[str]
    needs_request_data: bool
    odfv_sources: dict[str, list[str]] = field(default_factory=dict)  # odfv -> source view names
    version: str = ""  # the feature service's version tag; "" for explicit references
    # the online read (feature_service.online): stored views with the features to read (requested
    # ones and on-demand inputs), and the on-demand views with their source feature names
    reads: list[online.ViewRead] = field(default_factory=list)
    odfvs: list[tuple[OnDemandFeatureView, list[tuple[str, str]]]] = field(default_factory=list)


def _utc(ts: datetime) -> datetime:
    """A datetime in UTC; naive means UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _value_type(dtype: Any) -> str:
    return str(dtype.to_value_type().name)


_ARROW_TYPES: dict[str, pa.DataType] = {
    "INT64": pa.int64(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "BOOL": pa.bool_(),
    "INT32": pa.int32(),
    "FLOAT": pa.float32(),
}


def _arrow_type(value_type: str) -> pa.DataType:
    return _ARROW_TYPES[value_type]


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


class FeatureStoreCore:
    """Domain API of the feature-service over one Feast project.

    Args:
        settings: profile, stores and project.
        repo: the Feast objects; default :func:`feature_service.repo.build_repo` of ``settings``.
    """

    def __init__(self, settings: FeatureServiceSettings, repo: FeastRepo | None = None) -> None:
        self.settings = settings
        self.repo = repo or build_repo(settings)
        self._store: FeatureStore | None = None
        self._store_lock = threading.Lock()
        # Feast's SQLite online store shares one sqlite3 connection across threads, and concurrent
        # use fails ("bad parameter or other API misuse"): online reads and writes are serialized
        # on the embedded profile. Redis needs no lock (redis-py's pool is thread-safe).
        self._online_guard: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if settings.profile == "embedded" else contextlib.nullcontext()
        )
        self._plans: dict[tuple[str | None, tuple[str, ...] | None, bool], _Plan] = {}
        self._plans_at = 0.0
        self._async_reader = online.AsyncReader(lambda: self._store)

    # ------------------------------------------------------------------ set-up

    @property
    def store(self) -> FeatureStore:
        """The Feast ``FeatureStore`` (built on first use from a programmatic ``RepoConfig``)."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = FeatureStore(config=repo_config(self.settings))
        return self._store

    def apply(self) -> None:
        """Register the repository's objects and create the online store tables (idempotent)."""
        self.store.apply(self.repo.objects())
        self.store.refresh_registry()
        self._plans.clear()

    def write_feature_store_yaml(self) -> str:
        """Write ``feature_store.yaml`` for ``feast`` CLI users (e.g. ``feast serve``); returns its path."""
        return str(write_feature_store_yaml(self.settings))

    def teardown(self) -> None:
        """Remove this project's online data, registry entries and offline tables (tests, demos).

        Not ``FeatureStore.teardown()``: in Feast 0.67 that deletes *every* project of the registry
        (a shared SQL registry included), not just this one.
        """
        store = self.store
        project = self.settings.project
        try:
            views = store.list_feature_views()
            entities = store.list_entities()
            store._get_provider().teardown_infra(project, views, entities)
        finally:
            # best effort: the project may never have been applied
            with contextlib.suppress(Exception):
                store.registry.delete_project(project, commit=True)
            self._delete_version_history(store, project)
            offline_writer(self.settings).drop_all()

    @staticmethod
    def _delete_version_history(store: FeatureStore, project: str) -> None:
        """Purge what Feast 0.67's SQL registry leaves behind after ``delete_project``.

        ``feature_view_version_history`` rows survive it (re-applying the same project name then
        fails on their primary key), and a project that was only read, never applied, has
        ``feast_metadata`` rows but no ``projects`` row, so ``delete_project`` refuses it.
        """
        engine = getattr(store.registry, "write_engine", None)
        if engine is None:
            return
        from feast.infra.registry import sql as sql_registry
        from sqlalchemy import delete

        with engine.begin() as conn:
            for table in (
                sql_registry.feature_view_version_history,
                sql_registry.feast_metadata,
                sql_registry.projects,
            ):
                conn.execute(delete(table).where(table.c.project_id == project))

    async def ready(self, timeout_s: float = 5.0) -> None:
        """Return when the registry and the online store answer.

        Reads the registry (uncached) and looks up a nonexistent applicant in the online store.

        Raises:
            Unavailable: a backend did not answer within ``timeout_s`` or failed.
        """

        def probe() -> None:
            store = self.store
            views = [
                fv
                for fv in store.registry.list_feature_views(self.settings.project, allow_cache=False)
                if fv.online
            ]
            if not views:
                raise Unavailable(
                    f"project '{self.settings.project}' has no online feature views (not applied)"
                )
            ref = f"{views[0].name}:{views[0].features[0].name}"
            store.get_online_features(features=[ref], entity_rows=[{ENTITY_KEY: -1}])

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout_s)
        except Unavailable:
            raise
        except TimeoutError as exc:
            raise Unavailable(f"feature store did not answer within {timeout_s} s") from exc
        except Exception as exc:
            raise Unavailable(f"feature store is not ready: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ resolution

    def _plan(
        self,
        feature_service: str | None,
        features: Sequence[str] | None,
        online: bool,
        expected_version: str | None = None,
    ) -> _Plan:
        if (feature_service is None) == (not features):
            raise InvalidArgument(
                "features", "give exactly one of a feature service or a list of feature references"
            )
        if not self._plans_fresh():
            self._plans.clear()
            self._plans_at = time.monotonic()
        key = (feature_service, tuple(features) if features else None, online)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._resolve(feature_service, list(features or []))
            self._plans[key] = plan
        return self._checked(plan, feature_service, online, expected_version)

    @staticmethod
    def _checked(
        plan: _Plan, feature_service: str | None, online: bool, expected_version: str | None
    ) -> _Plan:
        """``plan`` when the request may use it (version, online views), else FailedPrecondition."""
        if feature_service is not None and expected_version and expected_version != plan.version:
            raise FailedPrecondition(
                f"feature service '{feature_service}' is at version '{plan.version}', "
                f"the request expects version '{expected_version}'"
            )
        if online and plan.offline_only_views:
            raise FailedPrecondition(
                f"feature view(s) {plan.offline_only_views} are offline-only, not served online"
            )
        return plan

    def _cached_plan(
        self, feature_service: str | None, features: Sequence[str] | None, online: bool
    ) -> _Plan | None:
        """The resolved selection when it is cached and fresh (no registry read), else None."""
        if not self._plans_fresh():
            return None
        return self._plans.get((feature_service, tuple(features) if features else None, online))

    def _plans_fresh(self) -> bool:
        """Whether the cached selections are younger than the registry cache TTL (at least 1 s)."""
        return time.monotonic() - self._plans_at <= max(self.settings.registry_cache_ttl_seconds, 1)

    def _view(self, name: str) -> FeatureView | OnDemandFeatureView:
        registry, project = self.store.registry, self.settings.project
        try:
            return registry.get_feature_view(name, project, allow_cache=True)
        except FeatureViewNotFoundException:
            pass
        try:
            return registry.get_on_demand_feature_view(name, project, allow_cache=True)
        except (OnDemandFeatureViewNotFoundException, FeatureViewNotFoundException):
            raise NotFound("feature view", name) from None

    def _resolve(self, feature_service: str | None, features: list[str]) -> _Plan:
        registry, project = self.store.registry, self.settings.project
        feast_features: FeatureService | list[str]
        selection: list[tuple[FeatureView | OnDemandFeatureView, list[str]]] = []
        fs: FeatureService | None = None
        if feature_service is not None:
            try:
                fs = registry.get_feature_service(feature_service, project, allow_cache=True)
            except FeatureServiceNotFoundException:
                raise NotFound("feature service", feature_service) from None
            feast_features = fs
            for projection in fs.feature_view_projections:
                selection.append((self._view(projection.name), [f.name for f in projection.features]))
        else:
            feast_features = []
            by_view: dict[str, list[str]] = {}
            for ref in features:
                if (
                    not isinstance(ref, str)
                    or ref.count(":") != 1
                    or ref.startswith(":")
                    or ref.endswith(":")
                ):
                    raise InvalidArgument("features", f"'{ref}' is not a feature reference 'view:feature'")
                view_name, feature = ref.split(":")
                by_view.setdefault(view_name, [])
                if feature not in by_view[view_name]:
                    by_view[view_name].append(feature)
                    feast_features.append(ref)
            for view_name, names in by_view.items():
                view = self._view(view_name)
                known = {f.name for f in view.features}
                for name in names:
                    if name not in known:
                        raise NotFound("feature", f"{view_name}:{name}")
                selection.append((view, names))

        specs: list[FeatureSpec] = []
        offline_only: list[str] = []
        needs_request = False
        odfv_sources: dict[str, list[str]] = {}
        online_views: set[str] = set()
        for view, names in selection:
            dtypes = {f.name: f.dtype for f in view.features}
            if isinstance(view, OnDemandFeatureView):
                needs_request = needs_request or bool(view.source_request_sources)
                odfv_sources[view.name] = [p.name for p in view.source_feature_view_projections.values()]
            else:
                if not view.online:
                    offline_only.append(view.name)
                online_views.add(view.name)
            for name in names:
                specs.append(FeatureSpec(f"{view.name}:{name}", view.name, name, _value_type(dtypes[name])))
        reads, odfvs = self._online_reads(selection)
        seen: dict[str, str] = {}
        for spec in specs:
            if spec.feature in seen:
                # Feast 0.67 drops python-mode on-demand outputs when full_feature_names=True, so
                # retrieval uses short names, which must therefore be unique in one selection.
                raise InvalidArgument(
                    "features", f"'{seen[spec.feature]}' and '{spec.name}' share a feature name"
                )
            seen[spec.feature] = spec.name
        return _Plan(
            feast_features=feast_features,
            specs=specs,
            online_views=online_views,
            offline_only_views=offline_only,
            needs_request_data=needs_request,
            odfv_sources=odfv_sources,
            version=fs.tags.get(VERSION_TAG, "") if fs is not None else "",
            reads=reads,
            odfvs=odfvs,
        )

    def _online_reads(
        self, selection: list[tuple[FeatureView | OnDemandFeatureView, list[str]]]
    ) -> tuple[list[online.ViewRead], list[tuple[OnDemandFeatureView, list[tuple[str, str]]]]]:
        """What the online read fetches: each stored view once, with its requested features and the
        inputs of the selected on-demand views (which Feast also reads when they are not requested)."""
        wanted: dict[str, list[str]] = {}
        views: dict[str, FeatureView] = {}
        odfvs: list[tuple[OnDemandFeatureView, list[tuple[str, str]]]] = []

        def want(view: FeatureView, names: Sequence[str]) -> None:
            views.setdefault(view.name, view)
            have = wanted.setdefault(view.name, [])
            have.extend(n for n in names if n not in have)

        for view, names in selection:
            if isinstance(view, OnDemandFeatureView):
                reason = online.unsupported(view)
                if reason is not None:
                    raise FailedPrecondition(f"on-demand view '{view.name}' is not served online: {reason}")
                sources: list[tuple[str, str]] = []  # (stored view, feature) inputs
                for projection in view.source_feature_view_projections.values():
                    source = self._view(projection.name)
                    if not isinstance(source, FeatureView):
                        raise FailedPrecondition(f"on-demand view '{view.name}' reads '{projection.name}'")
                    features = [f.name for f in projection.features]
                    want(source, features)
                    sources.extend((source.name, f) for f in features)
                odfvs.append((view, sources))
            elif view.online:
                want(view, names)
        reads = [online.ViewRead(views[name], names) for name, names in wanted.items()]
        return reads, odfvs

    # ------------------------------------------------------------------ online

    @staticmethod
    def _entity_key(row: Mapping[str, Any], index: int) -> int:
        if not isinstance(row, Mapping):
            raise InvalidArgument("entity_rows", f"row {index} is not a mapping of join keys")
        if ENTITY_KEY not in row:
            raise InvalidArgument(ENTITY_KEY, f"missing join key in entity row {index}")
        unknown = [k for k in row if k != ENTITY_KEY]
        if unknown:
            raise InvalidArgument(
                unknown[0], f"unknown join key in entity row {index} (expected '{ENTITY_KEY}')"
            )
        value = row[ENTITY_KEY]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidArgument(
                ENTITY_KEY, f"entity row {index}: expected an int64, got {type(value).__name__} {value!r}"
            )
        if not -(2**63) <= int(value) < 2**63:
            raise InvalidArgument(ENTITY_KEY, f"entity row {index}: {value} is out of the int64 range")
        return int(value)

    @staticmethod
    def _request_row(values: Mapping[str, Any] | None, index: int) -> dict[str, int | None]:
        out: dict[str, int | None] = dict.fromkeys(REQUEST_FIELDS.values())
        for key, value in (values or {}).items():
            target = _REQUEST_ALIASES.get(key)
            if target is None:
                raise InvalidArgument(
                    key, f"request value {index}: unknown request field (accepted: {sorted(REQUEST_FIELDS)})"
                )
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidArgument(
                    key, f"request value {index}: expected an int64, got {type(value).__name__} {value!r}"
                )
            out[target] = int(value)
        return out

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
            entity_rows: one mapping per entity, ``{"applicant_id": int}``.
            request_values: optional, parallel to ``entity_rows``: request-time values per row
                (``credit_amount``, ``duration_in_month``; ints) that override the stored value in
                on-demand features (``monthly_installment``). Absent or None: stored value.
            feature_service: name of a feature service (e.g. ``credit_risk_v1``), or
            features: feature references ``view:feature``; exactly one of the two.
            feature_service_version: expected ``version`` tag of the feature service (None or ""
                means whatever is registered; ignored with explicit features).

        Returns:
            Values with status and event timestamp per entity and feature, plus the feature specs
            and the feature service's version. An applicant that exists nowhere gets status
            MISSING, not an error.

        Raises:
            NotFound: unknown feature service, feature view or feature (named).
            InvalidArgument: a missing or unknown join key, a key of the wrong type, a bad request
                value or feature reference (the key is named).
            FailedPrecondition: a requested view is offline-only (labels), or the feature service's
                version differs from ``feature_service_version`` (both named).
        """
        plan = self._plan(feature_service, features, online=True, expected_version=feature_service_version)
        keys, columns = self._online_rows(plan, entity_rows, request_values)
        if not keys:
            return self._empty_online(plan)
        with self._online_span(plan, keys), self._online_guard, _online_store_errors():
            rows = online.read_rows(self.store, plan.reads, online.entity_keys(ENTITY_KEY, keys))
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
        plan = self._cached_plan(feature_service, features, online=True)
        if plan is None:  # resolving reads the registry: not on the loop
            plan = await asyncio.to_thread(
                self._plan, feature_service, features, True, feature_service_version
            )
        else:
            plan = self._checked(plan, feature_service, True, feature_service_version)
        keys, columns = self._online_rows(plan, entity_rows, request_values)
        if not keys:
            return self._empty_online(plan)
        with self._online_span(plan, keys), _online_store_errors():
            rows = await self._async_reader.read_rows(plan.reads, online.entity_keys(ENTITY_KEY, keys))
        result = self._assemble(plan, keys, rows, columns)
        metrics.observe_online(result)
        return result

    async def aclose(self) -> None:
        """Close the non-blocking read's connections of the running event loop (at shutdown)."""
        await self._async_reader.aclose()

    def _online_rows(
        self,
        plan: _Plan,
        entity_rows: Sequence[Mapping[str, Any]],
        request_values: Sequence[Mapping[str, Any] | None] | None,
    ) -> tuple[list[int], dict[str, list[Any]]]:
        """The entity keys and the request columns of an online read (validated)."""
        keys = [self._entity_key(row, i) for i, row in enumerate(entity_rows)]
        if request_values is not None and len(request_values) != len(keys):
            raise InvalidArgument(
                "request_values", f"{len(request_values)} request rows for {len(keys)} entity rows"
            )
        columns: dict[str, list[Any]] = {ENTITY_KEY: keys}
        if plan.needs_request_data:
            rows = [
                self._request_row(request_values[i] if request_values else None, i) for i in range(len(keys))
            ]
            for name in REQUEST_FIELDS.values():
                columns[name] = [r[name] for r in rows]
        elif request_values and any(request_values):
            for i, rv in enumerate(request_values):
                self._request_row(rv, i)  # validates the names even when unused
        return keys, columns

    @staticmethod
    def _empty_online(plan: _Plan) -> OnlineFeatures:
        return OnlineFeatures([], plan.specs, [OnlineColumn([], [], []) for _ in plan.specs], plan.version)

    def _online_span(self, plan: _Plan, keys: list[int]) -> Any:
        """The online-store read as its own span: counts and names only, never keys or values."""
        return _TRACER.start_as_current_span(
            "feature_store.online_read",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "feature.entity_count": len(keys),
                "feature.count": len(plan.specs),
                "feature.online_store": "redis" if self.settings.profile == "real" else "sqlite",
            },
        )

    def _assemble(
        self,
        plan: _Plan,
        keys: list[int],
        rows: Mapping[str, list[online.Row]],
        request_columns: Mapping[str, list[Any]],
    ) -> OnlineFeatures:
        """The online store's rows and the on-demand outputs as columns, one feature at a time.

        Per value, the rules are those of the class docstring: NULL_VALUE for a stored null (or
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
            inputs: dict[str, list[Any]] = {ENTITY_KEY: keys}
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
        return OnlineFeatures([{ENTITY_KEY: k} for k in keys], plan.specs, columns, plan.version)

    # ------------------------------------------------------------------ offline

    def selection(
        self,
        feature_service: str | None = None,
        features: Sequence[str] | None = None,
        feature_service_version: str | None = None,
        full_feature_names: bool = False,
    ) -> tuple[list[FeatureSpec], str]:
        """Resolve a selection without reading data: its result columns and the service's version.

        Returns:
            ``(specs, version)``: the features in result column order (``FeatureSpec.name`` is the
            result column: ``feature``, or ``view__feature`` with ``full_feature_names``), and the
            feature service's ``version`` tag ("" for explicit references).

        Raises:
            NotFound / InvalidArgument / FailedPrecondition: as :meth:`get_historical_features`.
        """
        plan = self._plan(feature_service, features, online=False, expected_version=feature_service_version)
        specs = [
            FeatureSpec(
                f"{s.view}__{s.feature}" if full_feature_names else s.feature, s.view, s.feature, s.value_type
            )
            for s in plan.specs
        ]
        return specs, plan.version

    def labelled_entities(
        self,
        label_view: str,
        application_start: datetime,
        application_end: datetime,
        labels_known_at: datetime | None = None,
    ) -> pa.Table:
        """Entity rows of a training set drawn from a label view: one per labelled application.

        Reads the label view's offline table through Feast's offline store (``pull_all``), keeps the
        applications made in ``[application_start, application_end)`` whose label was known at or
        before ``labels_known_at`` (every label when None), and of several label rows for the same
        application the latest known (by label time, then created time).

        Returns:
            Columns ``applicant_id`` (int64), ``event_timestamp`` (= the application time, UTC), the
            label view's features (e.g. ``creditability``), ``label_timestamp`` (when the label
            became known, UTC); ordered by application time, then applicant id.

        Raises:
            NotFound: unknown feature view.
            InvalidArgument: the view has no ``application_timestamp`` column (not a label view), or
                an empty / inverted range (``application_time_range``).
        """
        start, end = _utc(application_start), _utc(application_end)
        if start >= end:
            raise InvalidArgument("application_time_range", "end must be after start")
        view = self._view(label_view)
        spec = VIEWS_BY_NAME.get(label_view)
        if (
            isinstance(view, OnDemandFeatureView)
            or spec is None
            or APPLICATION_TIMESTAMP not in dict(spec.extras)
        ):
            raise InvalidArgument(
                "labelled_entities.label_view",
                f"'{label_view}' is not a label view (no '{APPLICATION_TIMESTAMP}' column)",
            )
        labels = [f.name for f in view.features]
        store = self.store
        known = _utc(labels_known_at) if labels_known_at is not None else None
        job = store._get_provider().offline_store.pull_all_from_table_or_query(
            config=store.config,
            data_source=view.batch_source,
            join_key_columns=[ENTITY_KEY],
            feature_name_columns=[*labels, APPLICATION_TIMESTAMP],
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
            start_date=datetime(1970, 1, 1, tzinfo=UTC),
            end_date=known or datetime(9999, 1, 1, tzinfo=UTC),
        )
        table = job.to_arrow()
        table = self._utc_columns(table)
        applied = table.column(APPLICATION_TIMESTAMP)
        label_ts = table.column(EVENT_TIMESTAMP)
        mask = pc.and_(
            pc.and_(
                pc.greater_equal(applied, pa.scalar(start, applied.type)),
                pc.less(applied, pa.scalar(end, applied.type)),
            ),
            pc.less_equal(label_ts, pa.scalar(known, label_ts.type)) if known else pc.is_valid(label_ts),
        )
        table = table.filter(pc.fill_null(mask, False))
        created = CREATED_TIMESTAMP if CREATED_TIMESTAMP in table.column_names else EVENT_TIMESTAMP
        # latest known label row per application: sort descending, keep the first of each group
        table = table.sort_by(
            [
                (ENTITY_KEY, "ascending"),
                (APPLICATION_TIMESTAMP, "ascending"),
                (EVENT_TIMESTAMP, "descending"),
                (created, "descending"),
            ]
        )
        if table.num_rows:
            keys = pc.binary_join_element_wise(
                pc.cast(table.column(ENTITY_KEY), pa.string()),
                pc.cast(pc.cast(table.column(APPLICATION_TIMESTAMP), pa.int64()), pa.string()),
                "|",
            ).to_numpy(zero_copy_only=False)
            first = np.ones(len(keys), dtype=bool)
            first[1:] = keys[1:] != keys[:-1]
            table = table.filter(pa.array(first))
        table = table.sort_by([(APPLICATION_TIMESTAMP, "ascending"), (ENTITY_KEY, "ascending")])
        return pa.table(
            {
                ENTITY_KEY: table.column(ENTITY_KEY).cast(pa.int64()),
                EVENT_TIMESTAMP: table.column(APPLICATION_TIMESTAMP),
                **{name: table.column(name) for name in labels},
                LABEL_TIMESTAMP: table.column(EVENT_TIMESTAMP),
            }
        ).cast(
            pa.schema(
                [pa.field(ENTITY_KEY, pa.int64()), pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"))]
                + [
                    pa.field(name, _arrow_type(_value_type(f.dtype)))
                    for name, f in ((f.name, f) for f in view.features)
                ]
                + [pa.field(LABEL_TIMESTAMP, pa.timestamp("us", tz="UTC"))]
            )
        )

    @staticmethod
    def _utc_columns(table: pa.Table) -> pa.Table:
        columns = []
        for col in table.columns:
            if pa.types.is_timestamp(col.type):
                col = (
                    col.cast(pa.timestamp("us", tz="UTC"))
                    if col.type.tz is None
                    else pc.cast(col, pa.timestamp("us", tz="UTC"))
                )
            columns.append(col)
        return pa.Table.from_arrays(columns, names=table.column_names)

    def get_historical_features(
        self,
        entity_df: pa.Table,
        feature_service: str | None = None,
        features: Sequence[str] | None = None,
        chunk_rows: int | None = None,
        full_feature_names: bool = False,
        feature_service_version: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """As :meth:`get_historical_table`, in record batches of ``chunk_rows`` rows.

        ``chunk_rows`` defaults to ``settings.history_chunk_rows``; see
        :meth:`get_historical_table` for the other arguments and the errors.
        """
        chunk = chunk_rows or self.settings.history_chunk_rows
        if chunk <= 0:
            raise InvalidArgument("chunk_rows", "must be positive")
        table = self.get_historical_table(
            entity_df,
            feature_service=feature_service,
            features=features,
            full_feature_names=full_feature_names,
            feature_service_version=feature_service_version,
        )
        yield from table.to_batches(max_chunksize=chunk)

    def get_historical_table(
        self,
        entity_df: pa.Table,
        feature_service: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        feature_service_version: str | None = None,
    ) -> pa.Table:
        """Point-in-time-correct feature values for each entity row, in record batches.

        For every row, each view contributes its latest row with event time <= the row's
        ``event_timestamp``, no older than the view's TTL, and (``filter_by_created_timestamp``)
        created no later than the row's time; rows with no such feature row get nulls and are kept.

        Args:
            entity_df: columns ``applicant_id`` (integer) and ``event_timestamp`` (timestamp: naive
                means UTC, any offset is converted to UTC; or ISO-8601 strings); optional
                request-value columns ``credit_amount`` / ``duration_in_month`` (nullable ints) for
                on-demand features; other columns pass through.
            feature_service / features: what to retrieve; exactly one.
            full_feature_names: name feature columns ``view__feature`` instead of ``feature``.
            feature_service_version: expected ``version`` tag of the feature service.

        Returns:
            The dataset in the order of ``entity_df``'s rows: the entity columns, then the
            features typed by the Feast schema (int64 / double / string / bool), timestamps in UTC.

        Raises:
            NotFound: unknown feature service, view or feature.
            InvalidArgument: a missing or mistyped ``applicant_id`` / ``event_timestamp`` column.
            FailedPrecondition: the feature service's version differs from
                ``feature_service_version`` (both named).
        """
        plan = self._plan(feature_service, features, online=False, expected_version=feature_service_version)
        frame, added = self._entity_frame(entity_df, plan.needs_request_data)
        if frame.empty:
            return self._empty_result(entity_df, plan, full_feature_names)
        job = self.store.get_historical_features(
            entity_df=frame,
            features=plan.feast_features,
            full_feature_names=False,  # python-mode on-demand outputs are lost with True (Feast 0.67)
            filter_by_created_timestamp=self.settings.filter_by_created_timestamp,
        )
        table = job.to_arrow()
        table = table.sort_by(_ROW_INDEX).drop_columns([_ROW_INDEX, *added])
        table = self._cast_output(table, plan)
        if full_feature_names:
            renames = {s.feature: f"{s.view}__{s.feature}" for s in plan.specs}
            table = table.rename_columns([renames.get(c, c) for c in table.column_names])
        return table

    @staticmethod
    def _empty_result(entity_df: pa.Table, plan: _Plan, full_feature_names: bool) -> pa.Table:
        fields = [
            pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")) if f.name == EVENT_TIMESTAMP else f
            for f in entity_df.schema
        ]
        fields += [
            pa.field(f"{s.view}__{s.feature}" if full_feature_names else s.feature, _arrow_type(s.value_type))
            for s in plan.specs
        ]
        return pa.schema(fields).empty_table()

    def _entity_frame(self, entity_df: pa.Table, needs_request: bool) -> tuple[pd.DataFrame, list[str]]:
        if not isinstance(entity_df, pa.Table):
            raise InvalidArgument("entity_df", f"expected a pyarrow.Table, got {type(entity_df).__name__}")
        names = entity_df.column_names
        if ENTITY_KEY not in names:
            raise InvalidArgument(ENTITY_KEY, "missing join key column in entity_df")
        key = entity_df.column(ENTITY_KEY)
        if not pa.types.is_integer(key.type):
            raise InvalidArgument(ENTITY_KEY, f"expected an integer column, got {key.type}")
        if key.null_count:
            raise InvalidArgument(ENTITY_KEY, f"{key.null_count} null join key(s)")
        if EVENT_TIMESTAMP not in names:
            raise InvalidArgument(EVENT_TIMESTAMP, "missing column in entity_df")
        # Each row's timestamp on its own (never one format inferred for the batch: a naive string
        # after one with an offset would be read with that offset, a point-in-time leak).
        ts = utc_timestamps(
            entity_df.column(EVENT_TIMESTAMP), field=EVENT_TIMESTAMP, naive=self.settings.naive_timestamps
        )
        ts_series = pd.Series(ts.to_pandas())
        frame = pd.DataFrame({ENTITY_KEY: key.cast(pa.int64()).to_numpy()})
        frame[EVENT_TIMESTAMP] = ts_series.reset_index(drop=True).astype("datetime64[us, UTC]")
        added: list[str] = []
        for name in names:
            if name in (ENTITY_KEY, EVENT_TIMESTAMP):
                continue
            target = _REQUEST_ALIASES.get(name)
            col = entity_df.column(name)
            if target is not None:
                if not (
                    pa.types.is_integer(col.type)
                    or pa.types.is_null(col.type)
                    or pa.types.is_floating(col.type)
                ):
                    raise InvalidArgument(name, f"request values must be integers, got {col.type}")
                frame[target] = pd.array(col.to_pylist(), dtype="Int64")
                if target != name:
                    added.append(target)
            else:
                frame[name] = col.to_pandas()
        if needs_request:
            for target in REQUEST_FIELDS.values():
                if target not in frame.columns:
                    frame[target] = pd.array([None] * len(frame), dtype="Int64")
                    added.append(target)
        frame[_ROW_INDEX] = np.arange(len(frame), dtype=np.int64)
        return frame, added

    @staticmethod
    def _cast_output(table: pa.Table, plan: _Plan) -> pa.Table:
        wanted = {s.feature: _ARROW_TYPES.get(s.value_type) for s in plan.specs}
        columns, names = [], []
        for name in table.column_names:
            col = table.column(name)
            target = wanted.get(name)
            if pa.types.is_timestamp(col.type):
                col = (
                    col.cast(pa.timestamp("us", tz="UTC"))
                    if col.type.tz is None
                    else pc.cast(col, pa.timestamp(col.type.unit, tz="UTC"))
                )
            elif target is not None and col.type != target:
                if pa.types.is_integer(target) and pa.types.is_floating(col.type):
                    # PostgreSQL offline store: ints come back as float64 when a null is present
                    col = pc.cast(col, target, safe=True)
                else:
                    col = col.cast(target)
            columns.append(col)
            names.append(name)
        return pa.Table.from_arrays(columns, names=names)

    # ------------------------------------------------------------------ materialization, push

    def _online_views(self, views: Sequence[str] | None) -> list[str]:
        available = {fv.name: fv for fv in self.store.list_feature_views()}
        if views is None:
            return sorted(name for name, fv in available.items() if fv.online)
        out = []
        for name in views:
            if name not in available:
                raise NotFound("feature view", name)
            if not available[name].online:
                raise FailedPrecondition(f"feature view '{name}' is offline-only (online=False)")
            out.append(name)
        return out

    def materialize(
        self, start: datetime, end: datetime, views: Sequence[str] | None = None
    ) -> MaterializeResult:
        """Load the latest value per applicant with event time in [start, end] into the online store.

        Args:
            start / end: the window (naive means UTC).
            views: feature views; default every online view (labels never).

        Raises:
            InvalidArgument: ``start`` after ``end``.
            NotFound / FailedPrecondition: an unknown or offline-only view.
        """
        start, end = _utc(start), _utc(end)
        if start > end:
            raise InvalidArgument("start", "start is after end")
        names = self._online_views(views)
        done = []
        for name in names:  # one view at a time, to report each view's duration
            began = time.perf_counter()
            with self._online_guard:
                self.store.materialize(start_date=start, end_date=end, feature_views=[name])
            done.append(ViewMaterialization(name, start, end, time.perf_counter() - began))
        return MaterializeResult(names, start, end, done)

    def materialize_incremental(self, end: datetime, views: Sequence[str] | None = None) -> MaterializeResult:
        """Materialize from each view's last materialized time (first time: ``end - ttl``) to ``end``.

        The window is in event time: a row stamped before the previous run's end that arrives
        later is not picked up; use :meth:`materialize` with an explicit window for backfills.
        """
        end = _utc(end)
        names = self._online_views(views)
        done = []
        for name in names:
            view = self.store.get_feature_view(name)
            previous = view.most_recent_end_time
            start = _utc(previous) if previous else (end - view.ttl if view.ttl else None)
            began = time.perf_counter()
            with self._online_guard:
                self.store.materialize_incremental(end_date=end, feature_views=[name])
            done.append(ViewMaterialization(name, start, end, time.perf_counter() - began))
        return MaterializeResult(names, None, end, done)

    def push(
        self,
        push_source: str,
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        to: PushTarget | str = PushTarget.ONLINE,
    ) -> PushResult:
        """Push fresh rows of one feature view to the online store, the offline store or both.

        Args:
            push_source: push source name (``<view>_push``).
            rows: every column of the view: ``applicant_id``, its features (None for null),
                ``event_timestamp`` (naive means UTC); ``created_timestamp`` optional (default now).
            to: ``online``, ``offline`` or ``both``.

        Raises:
            NotFound: unknown push source.
            InvalidArgument: a missing column (named) or a value of the wrong type.
            FailedPrecondition: an online push to an offline-only view (labels).
        """
        target = PushTarget(to)
        spec = next((s for s in VIEWS_BY_NAME.values() if s.push and s.push_source_name == push_source), None)
        if spec is None:
            raise NotFound("push source", push_source)
        if target != PushTarget.OFFLINE and not spec.online:
            raise FailedPrecondition(f"push source '{push_source}' feeds offline-only view '{spec.name}'")
        optional = {name for name, _ in spec.extras}
        table = (
            rows
            if isinstance(rows, pa.Table)
            else self._rows_table(rows, [c for c in spec.columns if c not in optional], optional)
        )
        if CREATED_TIMESTAMP not in table.column_names:
            now = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
            table = table.append_column(CREATED_TIMESTAMP, pa.array([now.as_py()] * table.num_rows, now.type))
        try:
            table = conform(spec, table)
        except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            missing = [c for c in spec.columns if c not in table.column_names]
            raise InvalidArgument(missing[0] if missing else "rows", str(exc)) from exc
        if table.num_rows == 0:
            return PushResult(push_source, spec.name, 0, target)
        if target in (PushTarget.ONLINE, PushTarget.BOTH):
            frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
            with self._online_guard:
                self.store.push(push_source, frame, to=PushMode.ONLINE)
        if target in (PushTarget.OFFLINE, PushTarget.BOTH):
            offline_writer(self.settings).append(spec, table)
        return PushResult(push_source, spec.name, table.num_rows, target)

    @staticmethod
    def _rows_table(
        rows: Sequence[Mapping[str, Any]],
        columns: list[str],
        optional: set[str] | frozenset[str] = frozenset(),
    ) -> pa.Table:
        missing = [c for c in columns if c != CREATED_TIMESTAMP and any(c not in r for r in rows)]
        if missing:
            raise InvalidArgument(missing[0], "missing column in pushed rows")
        allowed = {*columns, *optional, CREATED_TIMESTAMP}
        for index, row in enumerate(rows):
            unknown = [c for c in row if c not in allowed]
            if unknown:
                raise InvalidArgument(unknown[0], f"row {index}: unknown column (expected {columns})")
        data: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in columns if c != CREATED_TIMESTAMP}
        for name in sorted(optional):
            if any(name in r for r in rows):
                data[name] = [r.get(name) for r in rows]
        if rows and all(CREATED_TIMESTAMP in r for r in rows):
            data[CREATED_TIMESTAMP] = [r[CREATED_TIMESTAMP] for r in rows]
        for key in (EVENT_TIMESTAMP, CREATED_TIMESTAMP, *optional):
            if key in data:
                data[key] = [_utc(v) if isinstance(v, datetime) else v for v in data[key]]
        try:
            return pa.table(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgument("rows", str(exc)) from exc

    # ------------------------------------------------------------------ listing

    @staticmethod
    def _source_info(source: Any) -> SourceInfo:
        from feast import FileSource, PushSource, RequestSource

        if isinstance(source, PushSource):
            return SourceInfo(source.name, "push")
        if isinstance(source, RequestSource):
            callers = {v: k for k, v in REQUEST_FIELDS.items()}
            schema = [
                FeatureSpec(callers.get(f.name, f.name), source.name, f.name, _value_type(f.dtype))
                for f in source.schema
            ]
            return SourceInfo(source.name, "request", schema=schema)
        kind, location = "postgres", str(getattr(source, "table", "") or getattr(source, "query", ""))
        if isinstance(source, FileSource):
            kind, location = "file", str(source.path)
        return SourceInfo(
            source.name,
            kind,
            location,
            source.timestamp_field,
            source.created_timestamp_column,
        )

    @staticmethod
    def _meta(obj: Any) -> dict[str, Any]:
        created = getattr(obj, "created_timestamp", None)
        updated = getattr(obj, "last_updated_timestamp", None)
        return {
            "owner": getattr(obj, "owner", "") or "",
            "created": _utc(created) if created else None,
            "updated": _utc(updated) if updated else None,
        }

    def _view_info(self, view: FeatureView | OnDemandFeatureView) -> FeatureViewInfo:
        features = [
            FeatureSpec(f"{view.name}:{f.name}", view.name, f.name, _value_type(f.dtype))
            for f in view.features
        ]
        if isinstance(view, OnDemandFeatureView):
            sources = [
                SourceInfo(p.name, "feature_view") for p in view.source_feature_view_projections.values()
            ]
            sources += [self._source_info(rs) for rs in view.source_request_sources.values()]
            return FeatureViewInfo(
                name=view.name,
                kind="on_demand",
                entities=list(view.entities or []),
                features=features,
                ttl=None,
                online=True,
                push_source=None,
                request_fields=[f.name for rs in view.source_request_sources.values() for f in rs.schema],
                description=view.description,
                tags=dict(view.tags),
                sources=sources,
                **self._meta(view),
            )
        spec = VIEWS_BY_NAME.get(view.name)
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
        return FeatureViewInfo(
            name=view.name,
            kind="batch",
            entities=list(view.entities),
            features=features,
            ttl=ttl,
            online=view.online,
            push_source=spec.push_source_name if spec and spec.push else None,
            request_fields=[],
            description=view.description,
            tags=dict(view.tags),
            sources=[
                *([self._source_info(view.stream_source)] if view.stream_source is not None else []),
                self._source_info(view.batch_source),
            ],
            **self._meta(view),
        )

    def entities(self) -> dict[str, EntityInfo]:
        """Every entity of the project, by name."""
        return {
            e.name: EntityInfo(e.name, e.join_key, e.value_type.name, e.description)
            for e in self.store.list_entities()
        }

    def list_feature_views(self) -> list[FeatureViewInfo]:
        """Every feature view and on-demand feature view of the project, by name."""
        store = self.store
        views: list[FeatureView | OnDemandFeatureView] = [
            *store.list_feature_views(),
            *store.list_on_demand_feature_views(),
        ]
        return sorted((self._view_info(v) for v in views), key=lambda v: v.name)

    def describe_feature_view(self, name: str) -> FeatureViewInfo:
        """One feature view (batch or on-demand).

        Raises:
            NotFound: no such view.
        """
        return self._view_info(self._view(name))

    def list_feature_services(self) -> list[FeatureServiceInfo]:
        """Every feature service of the project, by name."""
        return sorted(
            (self.describe_feature_service(fs.name) for fs in self.store.list_feature_services()),
            key=lambda s: s.name,
        )

    def describe_feature_service(self, name: str) -> FeatureServiceInfo:
        """One feature service with its typed features.

        Raises:
            NotFound: no such feature service.
        """
        plan = self._plan(name, None, online=False)
        fs = plan.feast_features
        assert isinstance(fs, FeatureService)
        request_fields: list[FeatureSpec] = []
        for view_name in plan.odfv_sources:
            for source in self._view_info(self._view(view_name)).sources:
                request_fields.extend(source.schema)
        return FeatureServiceInfo(
            name=name,
            features=plan.specs,
            feature_views=[p.name for p in fs.feature_view_projections],
            description=fs.description,
            tags=dict(fs.tags),
            request_fields=request_fields,
            **self._meta(fs),
        )

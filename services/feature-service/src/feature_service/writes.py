"""Writes: materialization into the online store, and pushes of fresh rows (online, offline, both).

Offline pushes go through :mod:`feature_service.offline` on both profiles: Feast 0.67's PostgreSQL
offline store has no offline write (COPY instead), and its DuckDB append rewrites the Parquet file
in place (an atomic replace instead).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from feast.data_source import PushMode

from feature_service.domain import MaterializeResult, PushResult, PushTarget, ViewMaterialization, utc
from feature_service.errors import FailedPrecondition, InvalidArgument, NotFound
from feature_service.offline import conform, offline_writer
from feature_service.schema import CREATED_TIMESTAMP, EVENT_TIMESTAMP

if TYPE_CHECKING:
    from feature_service.core import FeatureStoreCore


class Writer:
    """Materializes feature views and pushes rows.

    Args:
        core: the shared state (the Feast store, the settings, the online store's guard).
    """

    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core

    def materialize(
        self, start: datetime, end: datetime, views: Sequence[str] | None = None
    ) -> MaterializeResult:
        """Load the latest value per entity with event time in [start, end] into the online store.

        Args:
            start / end: the window (naive means UTC).
            views: feature views; default every online view (labels never).

        Raises:
            InvalidArgument: ``start`` after ``end``.
            NotFound / FailedPrecondition: an unknown or offline-only view.
        """
        start, end = utc(start), utc(end)
        if start > end:
            raise InvalidArgument("start", "start is after end")
        names = self._online_views(views)
        done = []
        for name in names:  # one view at a time, to report each view's duration
            began = time.perf_counter()
            with self._core.online_guard:
                self._core.store.materialize(start_date=start, end_date=end, feature_views=[name])
            done.append(ViewMaterialization(name, start, end, time.perf_counter() - began))
        return MaterializeResult(names, start, end, done)

    def materialize_incremental(self, end: datetime, views: Sequence[str] | None = None) -> MaterializeResult:
        """Materialize from each view's last materialized time (first time: ``end - ttl``) to ``end``.

        The window is in event time: a row stamped before the previous run's end that arrives
        later is not picked up; use :meth:`materialize` with an explicit window for backfills.
        """
        end = utc(end)
        names = self._online_views(views)
        done = []
        for name in names:
            view = self._core.store.get_feature_view(name)
            previous = view.most_recent_end_time
            start = utc(previous) if previous else (end - view.ttl if view.ttl else None)
            began = time.perf_counter()
            with self._core.online_guard:
                self._core.store.materialize_incremental(end_date=end, feature_views=[name])
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
            push_source: push source name (the view's, as the product's repository names it).
            rows: every column of the view: the join key, its features (None for null),
                ``event_timestamp`` (naive means UTC); ``created_timestamp`` optional (default now).
            to: ``online``, ``offline`` or ``both``.

        Raises:
            NotFound: unknown push source.
            InvalidArgument: a missing column (named) or a value of the wrong type.
            FailedPrecondition: an online push to an offline-only view (labels).
        """
        target = PushTarget(to)
        views = self._core.layout.views
        spec = next((s for s in views if s.push and s.push_source_name == push_source), None)
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
            with self._core.online_guard:
                self._core.store.push(push_source, frame, to=PushMode.ONLINE)
        if target in (PushTarget.OFFLINE, PushTarget.BOTH):
            offline_writer(self._core.settings).append(spec, table)
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
                data[key] = [utc(v) if isinstance(v, datetime) else v for v in data[key]]
        try:
            return pa.table(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgument("rows", str(exc)) from exc

    def _online_views(self, views: Sequence[str] | None) -> list[str]:
        available = {fv.name: fv for fv in self._core.store.list_feature_views()}
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

"""Historical reads: point-in-time-correct feature values, and a label view's labelled entities.

Where Feast 0.67 behaves in ways this API hides:

* Point-in-time joins run with ``filter_by_created_timestamp=True`` (configurable): otherwise a late
  correction (same event time, later created time) leaks into rows stamped before it existed.
* The PostgreSQL offline store returns integers as float64 when a null is present and naive event
  timestamps; the output is cast back to the Feast schema and to UTC.
* Feast is called with short feature names (:mod:`feature_service.plans`); ``full_feature_names``
  renames the columns afterwards.

(:mod:`feature_service.historical` is the gRPC side: the request and response streams.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from creditrisk_kit.arrow import utc_timestamps
from feast import OnDemandFeatureView

from feature_service.domain import ARROW_TYPES, FeatureSpec, arrow_type, utc, value_type
from feature_service.errors import InvalidArgument
from feature_service.plans import Plan
from feature_service.schema import CREATED_TIMESTAMP, EVENT_TIMESTAMP, LABEL_TIMESTAMP

if TYPE_CHECKING:
    from feature_service.core import FeatureStoreCore

_ROW_INDEX = "__feature_service_row"


class HistoricalReader:
    """Reads the offline store through Feast's point-in-time join.

    Args:
        core: the shared state (the Feast store, the settings, the resolved selections).
    """

    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core

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
        plan = self._core.plans.get(
            feature_service, features, online=False, expected_version=feature_service_version
        )
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
            Columns: the product's join key (int64 or string), ``event_timestamp`` (= the
            application time, UTC), the label view's features (the label column),
            ``label_timestamp`` (when the label became known, UTC); ordered by application time,
            then key.

        Raises:
            NotFound: unknown feature view.
            InvalidArgument: the view has no application time column (not a label view), or
                an empty / inverted range (``application_time_range``).
        """
        start, end = utc(application_start), utc(application_end)
        if start >= end:
            raise InvalidArgument("application_time_range", "end must be after start")
        view = self._core.plans.view(label_view)
        layout = self._core.layout
        key_name, app_col = layout.entity_key, layout.application_time_column
        key_type = pa.int64() if layout.entity_kind == "int" else pa.string()
        spec = layout.views_by_name.get(label_view)
        if isinstance(view, OnDemandFeatureView) or spec is None or app_col not in dict(spec.extras):
            raise InvalidArgument(
                "labelled_entities.label_view",
                f"'{label_view}' is not a label view (no '{app_col}' column)",
            )
        labels = [f.name for f in view.features]
        store = self._core.store
        known = utc(labels_known_at) if labels_known_at is not None else None
        job = store._get_provider().offline_store.pull_all_from_table_or_query(
            config=store.config,
            data_source=view.batch_source,
            join_key_columns=[key_name],
            feature_name_columns=[*labels, app_col],
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
            start_date=datetime(1970, 1, 1, tzinfo=UTC),
            end_date=known or datetime(9999, 1, 1, tzinfo=UTC),
        )
        table = job.to_arrow()
        table = self._utc_columns(table)
        applied = table.column(app_col)
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
                (key_name, "ascending"),
                (app_col, "ascending"),
                (EVENT_TIMESTAMP, "descending"),
                (created, "descending"),
            ]
        )
        if table.num_rows:
            keys = pc.binary_join_element_wise(
                pc.cast(table.column(key_name), pa.string()),
                pc.cast(pc.cast(table.column(app_col), pa.int64()), pa.string()),
                "|",
            ).to_numpy(zero_copy_only=False)
            first = np.ones(len(keys), dtype=bool)
            first[1:] = keys[1:] != keys[:-1]
            table = table.filter(pa.array(first))
        table = table.sort_by([(app_col, "ascending"), (key_name, "ascending")])
        return pa.table(
            {
                key_name: table.column(key_name).cast(key_type),
                EVENT_TIMESTAMP: table.column(app_col),
                **{name: table.column(name) for name in labels},
                LABEL_TIMESTAMP: table.column(EVENT_TIMESTAMP),
            }
        ).cast(
            pa.schema(
                [pa.field(key_name, key_type), pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"))]
                + [
                    pa.field(name, arrow_type(value_type(f.dtype)))
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
        chunk = chunk_rows or self._core.settings.history_chunk_rows
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
            entity_df: columns of the product's join key (integer or string, as the entity) and
                ``event_timestamp`` (timestamp: naive means UTC, any offset is converted to UTC; or
                ISO-8601 strings); optional request-value columns (the product's caller-facing
                request names or the request source's fields, typed as those) for on-demand
                features; other columns pass through.
            feature_service / features: what to retrieve; exactly one.
            full_feature_names: name feature columns ``view__feature`` instead of ``feature``.
            feature_service_version: expected ``version`` tag of the feature service.

        Returns:
            The dataset in the order of ``entity_df``'s rows: the entity columns, then the
            features typed by the Feast schema (int64 / double / string / bool), timestamps in UTC.

        Raises:
            NotFound: unknown feature service, view or feature.
            InvalidArgument: a missing or mistyped join key / ``event_timestamp`` column.
            FailedPrecondition: the feature service's version differs from
                ``feature_service_version`` (both named).
        """
        plan = self._core.plans.get(
            feature_service, features, online=False, expected_version=feature_service_version
        )
        frame, added = self._entity_frame(entity_df, plan.needs_request_data)
        if frame.empty:
            return self._empty_result(entity_df, plan, full_feature_names)
        job = self._core.store.get_historical_features(
            entity_df=frame,
            features=plan.feast_features,
            full_feature_names=False,  # python-mode on-demand outputs are lost with True (Feast 0.67)
            filter_by_created_timestamp=self._core.settings.filter_by_created_timestamp,
        )
        table = job.to_arrow()
        table = table.sort_by(_ROW_INDEX).drop_columns([_ROW_INDEX, *added])
        table = self._cast_output(table, plan)
        if full_feature_names:
            renames = {s.feature: f"{s.view}__{s.feature}" for s in plan.specs}
            table = table.rename_columns([renames.get(c, c) for c in table.column_names])
        return table

    @staticmethod
    def _empty_result(entity_df: pa.Table, plan: Plan, full_feature_names: bool) -> pa.Table:
        fields = [
            pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")) if f.name == EVENT_TIMESTAMP else f
            for f in entity_df.schema
        ]
        fields += [
            pa.field(f"{s.view}__{s.feature}" if full_feature_names else s.feature, arrow_type(s.value_type))
            for s in plan.specs
        ]
        return pa.schema(fields).empty_table()

    def _entity_frame(self, entity_df: pa.Table, needs_request: bool) -> tuple[pd.DataFrame, list[str]]:
        if not isinstance(entity_df, pa.Table):
            raise InvalidArgument("entity_df", f"expected a pyarrow.Table, got {type(entity_df).__name__}")
        layout = self._core.layout
        key_name = layout.entity_key
        key_type = pa.int64() if layout.entity_kind == "int" else pa.string()
        names = entity_df.column_names
        if key_name not in names:
            raise InvalidArgument(key_name, "missing join key column in entity_df")
        key = entity_df.column(key_name)
        if layout.entity_kind == "int" and not pa.types.is_integer(key.type):
            raise InvalidArgument(key_name, f"expected an integer column, got {key.type}")
        if layout.entity_kind == "string" and not (
            pa.types.is_string(key.type) or pa.types.is_large_string(key.type)
        ):
            raise InvalidArgument(key_name, f"expected a string column, got {key.type}")
        if key.null_count:
            raise InvalidArgument(key_name, f"{key.null_count} null join key(s)")
        if EVENT_TIMESTAMP not in names:
            raise InvalidArgument(EVENT_TIMESTAMP, "missing column in entity_df")
        # Each row's timestamp on its own (never one format inferred for the batch: a naive string
        # after one with an offset would be read with that offset, a point-in-time leak).
        ts = utc_timestamps(
            entity_df.column(EVENT_TIMESTAMP),
            field=EVENT_TIMESTAMP,
            naive=self._core.settings.naive_timestamps,
        )
        frame = pd.DataFrame({key_name: key.cast(key_type).to_numpy(zero_copy_only=False)})
        frame[EVENT_TIMESTAMP] = ts.to_pandas().astype("datetime64[us, UTC]")
        added: list[str] = []
        for name in names:
            if name in (key_name, EVENT_TIMESTAMP):
                continue
            target = layout.request_aliases.get(name)
            col = entity_df.column(name)
            if target is not None:
                frame[target] = _request_column(layout.request_source_fields[target], name, col)
                if target != name:
                    added.append(target)
            else:
                frame[name] = col.to_pandas()
        if needs_request:
            for target, kind in layout.request_source_fields.items():
                if target not in frame.columns:
                    frame[target] = pd.array([None] * len(frame), dtype=_PANDAS_TYPES[kind])
                    added.append(target)
        frame[_ROW_INDEX] = np.arange(len(frame), dtype=np.int64)
        return frame, added

    @staticmethod
    def _cast_output(table: pa.Table, plan: Plan) -> pa.Table:
        wanted = {s.feature: ARROW_TYPES.get(s.value_type) for s in plan.specs}
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


_PANDAS_TYPES = {
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "string": "string",
    "timestamp": "object",
}


def _request_column(kind: str, name: str, col: pa.ChunkedArray) -> Any:
    """A request-value column as the nullable pandas array of its request field's kind.

    Raises:
        InvalidArgument: the column's type does not fit ``kind`` (``name`` named).
    """
    t = col.type
    fits = {
        "int": pa.types.is_integer(t) or pa.types.is_floating(t),
        "float": pa.types.is_integer(t) or pa.types.is_floating(t),
        "bool": pa.types.is_boolean(t),
        "string": pa.types.is_string(t) or pa.types.is_large_string(t),
    }.get(kind, False)
    if not (fits or pa.types.is_null(t)):
        words = {"int": "integers", "float": "numbers", "bool": "booleans", "string": "strings"}
        raise InvalidArgument(name, f"request values must be {words.get(kind, kind)}, got {t}")
    return pd.array(col.to_pylist(), dtype=_PANDAS_TYPES[kind])

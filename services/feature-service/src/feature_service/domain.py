"""The feature-service's value types: what the domain API takes and returns (no Feast objects).

Every transport converts its messages to and from these (:mod:`feature_service.convert` for gRPC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

import pyarrow as pa

from feature_service.repo import VERSION_TAG


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


def utc(ts: datetime) -> datetime:
    """A datetime in UTC; naive means UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def value_type(dtype: Any) -> str:
    """The Feast value type name of a Feast dtype (``INT64``, ``DOUBLE``, ...)."""
    return str(dtype.to_value_type().name)


ARROW_TYPES: dict[str, pa.DataType] = {
    "INT64": pa.int64(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "BOOL": pa.bool_(),
    "INT32": pa.int32(),
    "FLOAT": pa.float32(),
}


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a Feast value type name."""
    return ARROW_TYPES[name]

"""Conversions between the gRPC contract (``creditrisk.feature.v1``) and the core's Python types.

Kept apart from :mod:`feature_service.servicer` so that each RPC there stays a few lines. Every
function that reads a request raises :class:`~feature_service.errors.InvalidArgument` naming the
field (in proto field names, e.g. ``entity_rows[2].join_keys.applicant_id``).

Values: ``common.v1.FeatureValue`` is a oneof (int64 / double / string / bool / null). Server to
client, the branch follows the feature's Feast type (INT32 widened to INT64, FLOAT to DOUBLE), and a
null, or a NaN from a backend, is ``null_value``. Client to server, a message with no branch set,
NaN or an infinity is rejected. Timestamps are ``google.protobuf.Timestamp`` (UTC by definition);
inside Arrow entity rows a naive timestamp means UTC (the core converts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk_kit.pages import decode_page_token, encode_page_token, page_limit
from creditrisk_kit.timestamps import from_proto_timestamp
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from feature_service.domain import (
    EntityInfo,
    FeatureServiceInfo,
    FeatureSpec,
    FeatureViewInfo,
    OnlineFeatures,
    PushTarget,
    SourceInfo,
    ValueStatus,
    ViewMaterialization,
)
from feature_service.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_VALUE_TYPES = {
    "INT64": values_pb2.VALUE_TYPE_INT64,
    "INT32": values_pb2.VALUE_TYPE_INT64,
    "DOUBLE": values_pb2.VALUE_TYPE_DOUBLE,
    "FLOAT": values_pb2.VALUE_TYPE_DOUBLE,
    "STRING": values_pb2.VALUE_TYPE_STRING,
    "BOOL": values_pb2.VALUE_TYPE_BOOL,
}
_STATUSES = {
    ValueStatus.PRESENT: pb.FEATURE_STATUS_PRESENT,
    ValueStatus.NULL_VALUE: pb.FEATURE_STATUS_NULL_VALUE,
    ValueStatus.MISSING: pb.FEATURE_STATUS_MISSING,
    ValueStatus.OUTSIDE_TTL: pb.FEATURE_STATUS_OUTSIDE_TTL,
}
_PUSH_TARGETS = {
    pb.PUSH_TARGET_UNSPECIFIED: PushTarget.ONLINE,
    pb.PUSH_TARGET_ONLINE: PushTarget.ONLINE,
    pb.PUSH_TARGET_OFFLINE: PushTarget.OFFLINE,
    pb.PUSH_TARGET_ONLINE_AND_OFFLINE: PushTarget.BOTH,
}
_VIEW_KINDS = {"batch": pb.FEATURE_VIEW_KIND_BATCH, "on_demand": pb.FEATURE_VIEW_KIND_ON_DEMAND}
_SOURCE_KINDS = {
    "file": pb.DATA_SOURCE_KIND_FILE,
    "postgres": pb.DATA_SOURCE_KIND_POSTGRES,
    "request": pb.DATA_SOURCE_KIND_REQUEST,
    "push": pb.DATA_SOURCE_KIND_PUSH,
    "feature_view": pb.DATA_SOURCE_KIND_FEATURE_VIEW,
}


# ---------------------------------------------------------------------- values and times


def value_type(name: str) -> int:
    """The contract's ``ValueType`` of a Feast value type name (``INT64``, ``DOUBLE``, ...)."""
    return _VALUE_TYPES.get(name, values_pb2.VALUE_TYPE_UNSPECIFIED)


def to_value(value: Any, feast_type: str) -> values_pb2.FeatureValue:
    """A Python value as a ``FeatureValue`` whose branch follows ``feast_type``; None / NaN -> null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return values_pb2.FeatureValue(null_value=struct_pb2.NULL_VALUE)
    kind = value_type(feast_type)
    if kind == values_pb2.VALUE_TYPE_INT64:
        return values_pb2.FeatureValue(int64_value=int(value))
    if kind == values_pb2.VALUE_TYPE_DOUBLE:
        return values_pb2.FeatureValue(double_value=float(value))
    if kind == values_pb2.VALUE_TYPE_BOOL:
        return values_pb2.FeatureValue(bool_value=bool(value))
    return values_pb2.FeatureValue(string_value=str(value))


def from_value(value: values_pb2.FeatureValue, field: str) -> int | float | str | bool | None:
    """The Python value of a request's ``FeatureValue`` (null_value -> None).

    Raises:
        InvalidArgument: no branch set, or a NaN / infinite double (naming ``field``).
    """
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, "value has no branch set (int64/double/string/bool/null)")
    if kind == "null_value":
        return None
    result: int | float | str | bool = getattr(value, kind)
    if kind == "double_value" and not math.isfinite(float(result)):
        raise InvalidArgument(field, f"{result} is not a finite double")
    return result


def to_timestamp(ts: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a protobuf Timestamp (naive means UTC); None stays None."""
    if ts is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None))
    return out


def from_timestamp(ts: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A client's protobuf Timestamp as an aware UTC datetime.

    Raises:
        InvalidArgument: naming ``field`` (or ``field.nanos``) when out of range
            (``creditrisk_kit.from_proto_timestamp``).
    """
    return from_proto_timestamp(ts, field=field)


def required_timestamp(owner: Any, name: str, field: str) -> datetime:
    """``owner.<name>`` as a UTC datetime. Raises InvalidArgument naming ``field`` when unset."""
    if not owner.HasField(name):
        raise InvalidArgument(field, "required")
    return from_timestamp(getattr(owner, name), field)


def time_range(value: time_range_pb2.TimeRange, field: str, present: bool) -> tuple[datetime, datetime]:
    """``[start, end)`` of a required TimeRange.

    Raises:
        InvalidArgument: missing range or end, or ``end <= start`` (naming ``field``).
    """
    if not present:
        raise InvalidArgument(field, "required")
    start = required_timestamp(value, "start", f"{field}.start")
    end = required_timestamp(value, "end", f"{field}.end")
    if end <= start:
        raise InvalidArgument(f"{field}.end", f"must be after start ({start.isoformat()})")
    return start, end


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a protobuf Duration."""
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


# ---------------------------------------------------------------------- selections, specs


def selection(request: Any) -> tuple[str | None, list[str] | None, str | None]:
    """``(feature_service, feature_refs, expected_version)`` of a request's ``selection`` oneof.

    Raises:
        InvalidArgument: no selection, or an empty reference list.
    """
    which = request.WhichOneof("selection")
    version = request.feature_service_version or None
    if which == "feature_service":
        if not request.feature_service:
            raise InvalidArgument("feature_service", "must not be empty")
        return request.feature_service, None, version
    if which == "features":
        if not request.features.refs:
            raise InvalidArgument("features.refs", "at least one feature reference")
        return None, list(request.features.refs), None
    raise InvalidArgument("selection", "give a feature_service or features")


def result_name(spec: FeatureSpec, full_feature_names: bool) -> str:
    """A feature's result column name: ``feature`` or ``view__feature``."""
    return f"{spec.view}__{spec.feature}" if full_feature_names else spec.feature


def feature_spec(spec: FeatureSpec, name: str | None = None, description: str = "") -> values_pb2.FeatureSpec:
    """A core FeatureSpec as the contract's (name defaults to the short feature name)."""
    return values_pb2.FeatureSpec(
        name=name or spec.feature, value_type=value_type(spec.value_type), description=description
    )


# ---------------------------------------------------------------------- online


def online_rows(
    request: pb.GetOnlineFeaturesRequest, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entity rows (join keys) and request values of a GetOnlineFeaturesRequest.

    Raises:
        InvalidArgument: no rows, more than ``limit``, or a value with no branch (named).
    """
    if not request.entity_rows:
        raise InvalidArgument("entity_rows", "at least one entity row")
    if len(request.entity_rows) > limit:
        raise InvalidArgument("entity_rows", f"{len(request.entity_rows)} rows, at most {limit} per call")
    keys, values = [], []
    for i, row in enumerate(request.entity_rows):
        keys.append({k: from_value(v, f"entity_rows[{i}].join_keys.{k}") for k, v in row.join_keys.items()})
        values.append(
            {k: from_value(v, f"entity_rows[{i}].request_values.{k}") for k, v in row.request_values.items()}
        )
    return keys, values


_ONE_BYTE = [bytes((i,)) for i in range(128)]
_ROW_VALUE_TAG = b"\x0a"  # OnlineFeatureRow.values = 1, length-delimited
_RESPONSE_ROW_TAG = b"\x12"  # GetOnlineFeaturesResponse.rows = 2, length-delimited


def _length(n: int) -> bytes:
    """A length as a protobuf varint."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _value_fields(values: list[Any], feast_type: str) -> list[bytes]:
    """Per value, ``OnlineFeatureValue.value`` serialized (``to_value``), once per distinct value.

    Distinct means same type and value; floats are serialized one by one (``0.0 == -0.0``).
    """
    out: list[bytes] = []
    cache: dict[tuple[type, Any], bytes] = {}
    serialize = pb.OnlineFeatureValue.SerializeToString
    for value in values:
        if value.__class__ is float:
            out.append(serialize(pb.OnlineFeatureValue(value=to_value(value, feast_type))))
            continue
        key = (value.__class__, value)
        field = cache.get(key)
        if field is None:
            field = cache[key] = serialize(pb.OnlineFeatureValue(value=to_value(value, feast_type)))
        out.append(field)
    return out


_STATUS_FIELDS = {
    status: pb.OnlineFeatureValue(status=code).SerializeToString() for status, code in _STATUSES.items()
}


def online_response(result: OnlineFeatures, full_feature_names: bool) -> pb.GetOnlineFeaturesResponse:
    """The core's online result as a GetOnlineFeaturesResponse, built column-wise and in bulk.

    Each cell is an ``OnlineFeatureValue(value=to_value(..), status=.., event_timestamp=
    to_timestamp(..))``. Rather than ~one message per cell (each copied again into its row), the
    three fields of a cell are serialized by protobuf once per distinct value, status and event
    time (a view's features share their timestamps), concatenated per cell (concatenated
    serializations merge), framed as the repeated ``rows[i].values`` fields and parsed in one call.
    ``tests/test_grpc.py`` checks the result equals the cell-by-cell construction.
    """
    response = pb.GetOnlineFeaturesResponse(
        features=[feature_spec(s, result_name(s, full_feature_names)) for s in result.features],
        feature_service_version=result.feature_service_version,
    )
    if not result.entity_rows:
        return response
    serialize = pb.OnlineFeatureValue.SerializeToString
    stamps: dict[datetime | None, bytes] = {None: b""}
    columns: list[list[bytes]] = []
    for spec, column in zip(result.features, result.columns, strict=True):
        for ts in column.timestamps:
            if ts not in stamps:
                stamps[ts] = serialize(pb.OnlineFeatureValue(event_timestamp=to_timestamp(ts)))
        cells = []
        for value, status, ts in zip(
            _value_fields(column.values, spec.value_type), column.statuses, column.timestamps, strict=True
        ):
            cell = value + _STATUS_FIELDS[status] + stamps[ts]
            cells.append(_ROW_VALUE_TAG + _length(len(cell)) + cell)
        columns.append(cells)
    if not columns:  # no feature selected: one empty row per entity row
        response.rows.extend(pb.OnlineFeatureRow() for _ in result.entity_rows)
        return response
    rows = []
    for row in zip(*columns, strict=True):
        payload = b"".join(row)
        rows.append(_RESPONSE_ROW_TAG + _length(len(payload)) + payload)
    response.MergeFromString(b"".join(rows))
    return response


def online_response_per_cell(
    result: OnlineFeatures, full_feature_names: bool
) -> pb.GetOnlineFeaturesResponse:
    """:func:`online_response` one message per cell (the reference it is tested against)."""
    response = pb.GetOnlineFeaturesResponse(
        features=[feature_spec(s, result_name(s, full_feature_names)) for s in result.features],
        feature_service_version=result.feature_service_version,
    )
    for row in result.values:
        out = response.rows.add()
        for spec, value in zip(result.features, row, strict=True):
            out.values.add(
                value=to_value(value.value, spec.value_type),
                status=_STATUSES[value.status],
                event_timestamp=to_timestamp(value.event_timestamp),
            )
    return response


# ---------------------------------------------------------------------- materialization, push


def materialization(views: Sequence[ViewMaterialization]) -> list[pb.MaterializationSummary]:
    """Per-view summaries, ordered by view name."""
    out = []
    for view in sorted(views, key=lambda v: v.feature_view):
        summary = pb.MaterializationSummary(feature_view=view.feature_view, duration=duration(view.seconds))
        summary.range.end.CopyFrom(to_timestamp(view.end))
        if view.start is not None:
            summary.range.start.CopyFrom(to_timestamp(view.start))
        out.append(summary)
    return out


def push_rows(request: pb.PushRequest) -> list[dict[str, Any]]:
    """The rows of a PushRequest as mappings (``event_timestamp`` / ``created_timestamp`` included).

    Raises:
        InvalidArgument: no rows, a row without event timestamp, or a value with no branch (named).
    """
    if not request.push_source:
        raise InvalidArgument("push_source", "required")
    if not request.rows:
        raise InvalidArgument("rows", "at least one row")
    rows = []
    for i, row in enumerate(request.rows):
        values: dict[str, Any] = {k: from_value(v, f"rows[{i}].values.{k}") for k, v in row.values.items()}
        values["event_timestamp"] = required_timestamp(row, "event_timestamp", f"rows[{i}].event_timestamp")
        if row.HasField("created_timestamp"):
            values["created_timestamp"] = from_timestamp(
                row.created_timestamp, f"rows[{i}].created_timestamp"
            )
        rows.append(values)
    return rows


def push_target(target: int) -> PushTarget:
    """The core's push target of the contract's enum."""
    try:
        return _PUSH_TARGETS[target]
    except KeyError:
        raise InvalidArgument("target", f"unknown push target {target}") from None


# ---------------------------------------------------------------------- listing


def page[T](
    items: Sequence[T], page_size: int, page_token: str, key: Callable[[T], str]
) -> tuple[list[T], str]:
    """One page of ``items`` (sorted by ``key``) after the item named in the opaque ``page_token``.

    The token (:mod:`creditrisk_kit.pages`) carries the last name of the previous page, so a page
    stays correct when items are added or removed between calls.

    Returns:
        The page and the next token ("" on the last page).

    Raises:
        InvalidArgument: a negative page size or a token that does not decode.
    """
    size = page_limit(page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
    after = decode_page_token(page_token, str) or ""
    rest = [item for item in sorted(items, key=key) if key(item) > after]
    chunk = rest[:size]
    return chunk, encode_page_token(key(chunk[-1])) if len(rest) > size else ""


def has_tags(tags: dict[str, str], wanted: Any) -> bool:
    """Whether ``tags`` carries every key and value of ``wanted``."""
    return all(tags.get(k) == v for k, v in wanted.items())


def _entity(info: EntityInfo) -> pb.Entity:
    return pb.Entity(
        name=info.name,
        join_key=info.join_key,
        value_type=value_type(info.value_type),
        description=info.description,
    )


def _source(info: SourceInfo) -> pb.DataSource:
    return pb.DataSource(
        name=info.name,
        kind=_SOURCE_KINDS.get(info.kind, pb.DATA_SOURCE_KIND_UNSPECIFIED),
        location=info.location,
        timestamp_field=info.timestamp_field,
        created_timestamp_column=info.created_timestamp_column,
        schema=[feature_spec(s, s.name) for s in info.schema],
    )


def view_kind(kind: int) -> str | None:
    """The core's kind name of a FeatureViewKind filter (None: every kind; "" matches nothing)."""
    if kind == pb.FEATURE_VIEW_KIND_UNSPECIFIED:
        return None
    return next((name for name, value in _VIEW_KINDS.items() if value == kind), "")


def feature_view(info: FeatureViewInfo, entities: dict[str, EntityInfo]) -> pb.FeatureView:
    """A FeatureViewInfo as the contract's FeatureView."""
    out = pb.FeatureView(
        name=info.name,
        version=info.version,
        description=info.description,
        tags=info.tags,
        kind=_VIEW_KINDS.get(info.kind, pb.FEATURE_VIEW_KIND_UNSPECIFIED),
        features=[feature_spec(s) for s in info.features],
        entities=[_entity(entities[e]) for e in info.entities if e in entities],
        ttl=duration(info.ttl.total_seconds()) if info.ttl else None,
        online=info.online,
        sources=[_source(s) for s in info.sources],
        owner=info.owner,
        create_time=to_timestamp(info.created),
        update_time=to_timestamp(info.updated),
    )
    return out


def feature_service(info: FeatureServiceInfo, entities: dict[str, EntityInfo]) -> pb.FeatureService:
    """A FeatureServiceInfo as the contract's FeatureService (features grouped per view)."""
    projections: dict[str, pb.FeatureViewProjection] = {}
    for spec in info.features:
        projection = projections.setdefault(spec.view, pb.FeatureViewProjection(feature_view=spec.view))
        projection.features.append(feature_spec(spec))
    return pb.FeatureService(
        name=info.name,
        version=info.version,
        description=info.description,
        tags=info.tags,
        projections=list(projections.values()),
        entities=[_entity(e) for e in entities.values()],
        request_values=[feature_spec(s, s.name) for s in info.request_fields],
        owner=info.owner,
        create_time=to_timestamp(info.created),
        update_time=to_timestamp(info.updated),
    )

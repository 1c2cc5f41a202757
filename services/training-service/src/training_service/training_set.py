"""Training sets through the feature-service only (``creditrisk.feature.v1.FeatureStoreService``).

A training set is built with ``GetHistoricalFeatures`` and ``LabelledEntities``: the entity rows
are the labelled applications of the label view (the product's ``[label].view``) whose application time lies
in ``[start, end)`` and whose label was known at or before the training cut-off
(``labels_known_at``: the job's creation time, so a training set never holds a label from its
future); each row's features are joined as of its application time (point-in-time correct). The
label columns and ``label_timestamp`` are passed through by the feature-service.

Two queries with the same labelled entities:

1. the model feature service at the requested version: the model inputs;
2. the product's fairness feature service (``[features].fairness_service``; none: no second
   query): the protected attributes, for the approval-rate ratios only. Under the default feature
   policy they are never model inputs (:mod:`training_service.policy`).

Both results are merged on the product's entity key and ``event_timestamp`` into the frame
:func:`training_service.training.train` expects (:class:`~training_service.policy.FrameColumns`):
the entity key (int64 when the product's key is, else string), ``event_timestamp`` and
``label_timestamp`` (UTC), the requested label column renamed to the product's label column when
they differ, integer features as ``Int64``, double
features as ``float64``, categorical ones as ``string`` (types from the header's declared value
types, never from what a backend happened to return).

The calls go through :class:`creditrisk_clients.FeatureServiceClient` (one reassembly of the
historical stream, shared with the other callers of the contract). Errors from the feature-service
are mapped on purpose (:func:`downstream_errors`): NOT_FOUND names the
feature service or label view; a version mismatch (FAILED_PRECONDITION there) is NOT_FOUND of that
version here; UNAVAILABLE stays UNAVAILABLE and DEADLINE_EXCEEDED stays DEADLINE_EXCEEDED (retry);
INVALID_ARGUMENT names the request field that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import grpc
import pandas as pd
import pyarrow as pa
from creditrisk.common.v1 import time_range_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fs_pb
from creditrisk_clients import DownstreamErrors, FeatureServiceClient, invalid_argument, not_found
from creditrisk_kit import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation
from google.protobuf import timestamp_pb2

from training_service.policy import EVENT_TIMESTAMP, LABEL_TIMESTAMP, FrameColumns

_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf timestamp of an aware datetime."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


@dataclass(frozen=True)
class TrainingSetRequest:
    """What training set to build.

    Attributes:
        feature_service: the model feature service's name.
        feature_service_version: its expected version ("" = whatever is registered).
        label_view: label feature view.
        label_column: label column of the view (1 = the positive class), named
            ``columns.label`` in the frame.
        start / end: application-time range ``[start, end)``, aware datetimes.
        labels_known_at: training cut-off: only labels known at or before it.
        columns: the frame's entity key and label columns (the product's).
        fairness_feature_service: feature service of the protected attributes (None: skip).
    """

    feature_service: str
    feature_service_version: str
    label_view: str
    label_column: str
    start: datetime
    end: datetime
    labels_known_at: datetime
    columns: FrameColumns
    fairness_feature_service: str | None = None


@dataclass
class TrainingSet:
    """A point-in-time training frame and where it came from.

    Attributes:
        frame: the frame :func:`training_service.training.train` expects.
        feature_service_version: the version the feature-service joined (its header).
        features: the model feature service's feature columns, in order.
        fairness_features: the protected attributes added from the fairness feature service.
    """

    frame: pd.DataFrame
    feature_service_version: str
    features: list[str] = field(default_factory=list)
    fairness_features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureServiceInfo:
    """A registered feature service: resolved version and feature names (result column names)."""

    name: str
    version: str
    features: tuple[str, ...]


def downstream_errors(*, kind: str, name: str, field_path: str) -> DownstreamErrors:
    """How the feature-service's errors are raised here (see the module docstring).

    Args:
        kind / name: what the call was about, e.g. ``("feature service", <its name>)``.
        field_path: the request field to name for INVALID_ARGUMENT.

    Codes without a mapping keep the original error (INTERNAL upstream).
    """
    return DownstreamErrors(
        "the feature-service",
        on={
            grpc.StatusCode.NOT_FOUND: not_found(kind, name),
            grpc.StatusCode.FAILED_PRECONDITION: not_found(f"{kind} version", name),
            grpc.StatusCode.INVALID_ARGUMENT: invalid_argument(
                field_path, prefix="rejected by the feature-service"
            ),
        },
    )


class TrainingSetSource:
    """Where the training-service reads training sets from: its calls to the feature-service (over
    a :class:`creditrisk_clients.FeatureServiceClient` on a kit ``aio_channel``).

    Args:
        channel: ``creditrisk_kit.aio_channel`` to the feature-service (deadline, retries on
            UNAVAILABLE).
        timeout_s: deadline of one ``GetHistoricalFeatures`` stream (streams have no default).
        max_chunk_rows: rows per result chunk asked for (0: the server's default).
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float = 300.0, max_chunk_rows: int = 0
    ) -> None:
        self._store = FeatureServiceClient(channel, historical_timeout_s=timeout_s)
        self._max_chunk_rows = max_chunk_rows

    async def feature_service(
        self, name: str, expected_version: str = "", *, field_path: str = "spec.feature_service"
    ) -> FeatureServiceInfo:
        """Describe a feature service; check its version.

        Raises:
            NotFound: unknown feature service, or registered version != ``expected_version``.
            Unavailable / DeadlineExceeded: the feature-service cannot be reached in time.
        """
        service = await self._store.get_feature_service(
            name, errors=downstream_errors(kind="feature service", name=name, field_path=field_path)
        )
        if expected_version and service.version != expected_version:
            raise NotFound(
                "feature service version",
                f"{name}:{expected_version}",
                description=f"registered version is {service.version!r}",
            )
        features = tuple(service.features)
        return FeatureServiceInfo(name, service.version, features)

    async def label_view(self, name: str, *, field_path: str = "spec.label.feature_view") -> None:
        """Check that a label feature view exists.

        Raises:
            NotFound: unknown feature view.
        """
        await self._store.get_feature_view(
            name, errors=downstream_errors(kind="label feature view", name=name, field_path=field_path)
        )

    async def historical(
        self, feature_service: str, version: str, request: TrainingSetRequest
    ) -> tuple[fs_pb.HistoricalFeaturesHeader, pa.Table]:
        """One ``GetHistoricalFeatures`` call with labelled entities: (header, result table).

        Raises:
            as :func:`downstream_errors`; Unavailable when the stream breaks its contract (chunk
            protocol, header or summary, row counts, declared columns and types).
        """
        query = fs_pb.HistoricalFeaturesQuery(
            feature_service=feature_service,
            feature_service_version=version,
            label_column=request.label_column,
            max_chunk_rows=self._max_chunk_rows,
            labelled_entities=fs_pb.LabelledEntities(
                label_view=request.label_view,
                application_time_range=time_range_pb2.TimeRange(
                    start=timestamp(request.start), end=timestamp(request.end)
                ),
                labels_known_at=timestamp(request.labels_known_at),
            ),
        )

        result = await self._store.historical_features(
            query,
            errors=downstream_errors(
                kind="feature service", name=feature_service, field_path="spec.application_time_range"
            ),
        )
        return result.header, result.table

    async def training_set(
        self, request: TrainingSetRequest, *, fairness_attributes: tuple[str, ...] = ()
    ) -> TrainingSet:
        """The training frame (see the module docstring).

        Args:
            request: what to build.
            fairness_attributes: protected attributes to take from the fairness feature service.

        Raises:
            FailedPrecondition: no labelled row in the range (known at the cut-off).
            NotFound / Unavailable / DeadlineExceeded / InvalidArgument: see :func:`downstream_errors`.
        """
        header, table = await self.historical(
            request.feature_service, request.feature_service_version, request
        )
        columns = request.columns
        frame = to_frame(table, request.label_column, columns)
        if columns.label not in frame.columns:
            raise InvalidArgument(
                "spec.label.label_column",
                f"{request.label_column!r} is not a column of label view {request.label_view!r}",
            )
        if frame.empty:
            raise FailedPrecondition(
                f"the application-time range [{request.start.isoformat()}, {request.end.isoformat()}) has "
                f"no labelled rows in label view {request.label_view!r} known at "
                f"{request.labels_known_at.isoformat()}",
                [
                    PreconditionViolation(
                        "TRAINING_SET",
                        "spec.application_time_range",
                        "choose a range with labelled applications",
                    )
                ],
            )
        features = [s.name for s in header.features]
        added: list[str] = []
        if request.fairness_feature_service and fairness_attributes:
            f_header, f_table = await self.historical(request.fairness_feature_service, "", request)
            wanted = [
                s.name
                for s in f_header.features
                if s.name in fairness_attributes and s.name not in frame.columns
            ]
            if wanted:
                keys = [columns.entity_key, EVENT_TIMESTAMP]
                extra = to_frame(f_table, request.label_column, columns)[[*keys, *wanted]]
                frame = frame.merge(extra, on=keys, how="left", validate="one_to_one")
                added = wanted
        return TrainingSet(frame, header.feature_service_version, features, added)


def to_frame(table: pa.Table, label_column: str, columns: FrameColumns) -> pd.DataFrame:
    """A result table as the training frame (types of the module docstring, timestamps UTC).

    Args:
        table: a ``GetHistoricalFeatures`` result.
        label_column: the label column asked for; renamed ``columns.label`` when it differs (a
            column of that name already there is replaced).
        columns: the product's frame columns.
    """
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    if label_column != columns.label and label_column in frame.columns:
        frame = frame.drop(columns=[columns.label], errors="ignore")
        frame = frame.rename(columns={label_column: columns.label})
    for column in (EVENT_TIMESTAMP, LABEL_TIMESTAMP):
        if column in frame.columns:
            values = pd.to_datetime(frame[column])
            frame[column] = (
                values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
            )
    key = columns.entity_key
    if key in frame.columns and not frame[key].isna().any():
        frame[key] = frame[key].astype("int64" if columns.entity_type == "int64" else "string")
    return frame

"""TEST DOUBLE (extra ``feature-store``): a contract-level fake of the feature-service
(``FeatureStoreServiceServicer``), shared by the registry-gateway's and the training-service's tests.

Serves the German credit test frame (:mod:`creditrisk_testing.german_credit`) through the parts of
``creditrisk.feature.v1.FeatureStoreService`` those services call, honouring the
contract: ``GetFeatureService`` / ``GetFeatureView`` (NOT_FOUND naming the unknown one),
``GetHistoricalFeatures`` with ``LabelledEntities`` only (application-time range ``[start, end)``,
labels known at or before ``labels_known_at``; FAILED_PRECONDITION naming both versions on a version
mismatch; the stream protocol: one header, Arrow chunks of at most ``max_chunk_rows`` rows encoded
with the kit, one summary). Never used on the production path. ``unavailable = True`` makes every
call answer UNAVAILABLE (a feature-service that is down).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
import pandas as pd
import pyarrow as pa
from creditrisk.common.v1 import arrow_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation, Unavailable
from creditrisk_kit.arrow import encode_chunks

from creditrisk_testing.german_credit import german_credit_frame

LABEL_VIEW = "credit_label"
MODEL_SERVICE = "credit_risk_v1"
FAIRNESS_SERVICE = "credit_risk_fairness_v1"
#: The protected attributes the fairness feature service serves (the feature repo's; the training
#: policy keeps them out of the model's inputs).
PROTECTED_ATTRIBUTES = ("personal_status_and_sex", "foreign_worker")
_ENTITY_COLUMNS = ["applicant_id", "event_timestamp", "creditability", "label_timestamp"]


def _value_type(series: pd.Series) -> values_pb2.ValueType.ValueType:
    if pd.api.types.is_integer_dtype(series.dtype):
        return values_pb2.VALUE_TYPE_INT64
    if pd.api.types.is_float_dtype(series.dtype):
        return values_pb2.VALUE_TYPE_DOUBLE
    return values_pb2.VALUE_TYPE_STRING


class FakeFeatureStoreService(pb_grpc.FeatureStoreServiceServicer):
    """TEST DOUBLE of the feature-service (see the module docstring).

    Args:
        frame: the German credit frame (default: ``german_credit_frame(42)``).
        max_chunk_rows: rows per result chunk when the query leaves it 0 (small: several chunks).
    """

    def __init__(self, frame: pd.DataFrame | None = None, *, max_chunk_rows: int = 200) -> None:
        self.frame = frame if frame is not None else german_credit_frame(seed=42)
        features = [c for c in self.frame.columns if c not in _ENTITY_COLUMNS]
        self.services: dict[str, tuple[str, list[str]]] = {
            MODEL_SERVICE: ("1", [c for c in features if c not in PROTECTED_ATTRIBUTES]),
            FAIRNESS_SERVICE: ("1", [c for c in features if c in PROTECTED_ATTRIBUTES]),
        }
        self.max_chunk_rows = max_chunk_rows
        self.unavailable = False
        self.queries: list[pb.HistoricalFeaturesQuery] = []

    def _check_up(self) -> None:
        if self.unavailable:
            raise Unavailable("fake feature-service: down")

    def _service(self, name: str) -> tuple[str, list[str]]:
        if name not in self.services:
            raise NotFound("feature service", name)
        return self.services[name]

    def _specs(self, names: list[str]) -> list[values_pb2.FeatureSpec]:
        return [values_pb2.FeatureSpec(name=n, value_type=_value_type(self.frame[n])) for n in names]

    async def GetFeatureService(
        self, request: pb.GetFeatureServiceRequest, context: Any
    ) -> pb.GetFeatureServiceResponse:
        self._check_up()
        version, names = self._service(request.name)
        return pb.GetFeatureServiceResponse(
            feature_service=pb.FeatureService(
                name=request.name,
                version=version,
                projections=[pb.FeatureViewProjection(feature_view="all", features=self._specs(names))],
            )
        )

    async def GetFeatureView(
        self, request: pb.GetFeatureViewRequest, context: Any
    ) -> pb.GetFeatureViewResponse:
        self._check_up()
        if request.name != LABEL_VIEW:
            raise NotFound("feature view", request.name)
        return pb.GetFeatureViewResponse(feature_view=pb.FeatureView(name=LABEL_VIEW, online=False))

    async def GetHistoricalFeatures(
        self, request_iterator: AsyncIterator[pb.GetHistoricalFeaturesRequest], context: Any
    ) -> AsyncIterator[pb.GetHistoricalFeaturesResponse]:
        self._check_up()
        messages = [m async for m in request_iterator]
        if not messages or messages[0].WhichOneof("payload") != "query":
            raise InvalidArgument("query", "the first message must be the query")
        query = messages[0].query
        if len(messages) > 1:
            raise InvalidArgument("entity_rows", "no entity rows may be sent with labelled_entities")
        if not query.HasField("labelled_entities"):
            raise InvalidArgument("query.labelled_entities", "this fake serves labelled entities only")
        self.queries.append(query)
        version, names = self._service(query.feature_service)
        if query.feature_service_version and query.feature_service_version != version:
            raise FailedPrecondition(
                f"feature service {query.feature_service!r} is version {version}, "
                f"not {query.feature_service_version}",
                [PreconditionViolation("FEATURE_SERVICE_VERSION", query.feature_service, "retrain")],
            )
        spec = query.labelled_entities
        if spec.label_view != LABEL_VIEW:
            raise NotFound("feature view", spec.label_view)
        start = pd.Timestamp(spec.application_time_range.start.ToDatetime(tzinfo=UTC))
        end = pd.Timestamp(spec.application_time_range.end.ToDatetime(tzinfo=UTC))
        if start >= end:
            raise InvalidArgument("labelled_entities.application_time_range", "end must be after start")
        rows = self.frame[(self.frame["event_timestamp"] >= start) & (self.frame["event_timestamp"] < end)]
        if spec.HasField("labels_known_at"):
            known = pd.Timestamp(spec.labels_known_at.ToDatetime(tzinfo=UTC))
            rows = rows[rows["label_timestamp"] <= known]
        rows = rows.sort_values(["event_timestamp", "applicant_id"])
        table = pa.Table.from_pandas(rows[[*_ENTITY_COLUMNS, *names]], preserve_index=False)
        yield pb.GetHistoricalFeaturesResponse(
            header=pb.HistoricalFeaturesHeader(
                features=self._specs(names),
                entity_columns=_ENTITY_COLUMNS,
                entity_row_count=table.num_rows,
                feature_service_version=version,
            )
        )
        count = 0
        for chunk in encode_chunks(table, max_rows=query.max_chunk_rows or self.max_chunk_rows):
            count += 1
            yield pb.GetHistoricalFeaturesResponse(
                chunk=arrow_pb2.ArrowChunk(
                    arrow_ipc_stream=chunk.payload, row_count=chunk.row_count, sequence=chunk.sequence
                )
            )
        yield pb.GetHistoricalFeaturesResponse(
            summary=pb.HistoricalFeaturesSummary(row_count=table.num_rows, chunk_count=count)
        )


def register(fake: FakeFeatureStoreService) -> Any:
    """The ``register`` callable of the kit's ``ServiceRunner``."""

    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_FeatureStoreServiceServicer_to_server(fake, server)

    return add

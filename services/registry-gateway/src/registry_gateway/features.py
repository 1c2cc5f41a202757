"""The feature-service client (contract ``creditrisk.feature.v1.FeatureStoreService``): the
feature service's definition for the signature check, and the gate window's labelled rows
(``GetHistoricalFeatures`` with ``LabelledEntities``: point-in-time correct, one row per labelled
application, features as of the application time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import grpc
import pandas as pd
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk_kit import FailedPrecondition, NotFound, PreconditionViolation, Unavailable, aio_channel
from creditrisk_kit.arrow import ChunkSequence
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

ENTITY_KEY = "applicant_id"
EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class FeatureServiceDef:
    """A feature service as the feature-service describes it: version and features with types."""

    name: str
    version: str
    features: dict[str, int]  # name -> creditrisk.common.v1.ValueType


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


class FeatureServiceClient:
    """Async client of the feature-service.

    Args:
        address: ``host:port``.
        timeout_s: deadline of one historical retrieval stream.
        max_message_bytes: message limit of the channel.
    """

    def __init__(
        self, address: str, *, timeout_s: float = 120.0, max_message_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._max = max_message_bytes
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> fpb_grpc.FeatureStoreServiceStub:
        if self._channel is None:
            self._channel = aio_channel(self.address, max_message_bytes=self._max)
        return fpb_grpc.FeatureStoreServiceStub(self._channel)

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def serving(self) -> bool:
        """Readiness: the feature-service's overall health is SERVING."""
        assert self._stub() is not None
        assert self._channel is not None
        response = await health_pb2_grpc.HealthStub(self._channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2.0
        )
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def _map(self, exc: grpc.aio.AioRpcError, name: str) -> Exception:
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound("feature service", name, description="unknown to the feature-service")
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return FailedPrecondition(
                f"feature service {name!r}: {exc.details()}",
                [PreconditionViolation("FEATURE_SERVICE_VERSION", name, "register a model trained on it")],
            )
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable("feature-service unavailable")
        return exc

    async def get_feature_service(self, name: str) -> FeatureServiceDef:
        """The registered definition of ``name``.

        Raises:
            NotFound: unknown feature service.
            Unavailable: the feature-service cannot be reached.
        """
        try:
            response = await self._stub().GetFeatureService(fpb.GetFeatureServiceRequest(name=name))
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, name) from exc
        service = response.feature_service
        features = {f.name: f.value_type for p in service.projections for f in p.features}
        for spec in service.request_values:
            features.setdefault(spec.name, spec.value_type)
        return FeatureServiceDef(service.name, service.version, features)

    async def labelled_rows(
        self,
        *,
        feature_service: str,
        version: str,
        label_view: str,
        start: datetime,
        end: datetime,
    ) -> pd.DataFrame:
        """Labelled applications with application time in ``[start, end)`` and their features as of
        then (every label known so far).

        Returns:
            Entity columns (``applicant_id``, ``event_timestamp`` UTC, the label columns,
            ``label_timestamp``) then the feature columns; integer features as float64 (NaN for
            missing), string features as object (None for missing).
        """
        query = fpb.HistoricalFeaturesQuery(
            feature_service=feature_service,
            feature_service_version=version,
            labelled_entities=fpb.LabelledEntities(
                label_view=label_view,
                application_time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
            ),
        )

        async def requests() -> AsyncIterator[fpb.GetHistoricalFeaturesRequest]:
            yield fpb.GetHistoricalFeaturesRequest(query=query)

        chunks = ChunkSequence("chunk")
        header: fpb.HistoricalFeaturesHeader | None = None
        try:
            call = self._stub().GetHistoricalFeatures(requests(), timeout=self.timeout_s)
            async for message in call:
                kind = message.WhichOneof("payload")
                if kind == "header":
                    header = message.header
                elif kind == "chunk":
                    chunks.add(
                        message.chunk.arrow_ipc_stream, message.chunk.row_count, message.chunk.sequence
                    )
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, feature_service) from exc
        table = chunks.table()
        frame = table.to_pandas() if table is not None else pd.DataFrame()
        if header is None:
            raise Unavailable("feature-service sent no header")
        for spec in header.features:
            if spec.name not in frame:
                frame[spec.name] = None
            if spec.value_type in (values_pb2.VALUE_TYPE_INT64, values_pb2.VALUE_TYPE_DOUBLE):
                frame[spec.name] = pd.to_numeric(frame[spec.name], errors="coerce").astype("float64")
            elif spec.value_type == values_pb2.VALUE_TYPE_BOOL:
                frame[spec.name] = frame[spec.name].astype("float64")
            else:
                frame[spec.name] = [
                    None if v is None or (isinstance(v, float) and v != v) else str(v)
                    for v in frame[spec.name]
                ]
        if EVENT_TIMESTAMP in frame and len(frame):
            ts = pd.to_datetime(frame[EVENT_TIMESTAMP])
            frame[EVENT_TIMESTAMP] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        return frame

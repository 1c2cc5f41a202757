"""The feature-service as the registry-gateway uses it (contract
``creditrisk.feature.v1.FeatureStoreService``, through :class:`creditrisk_clients.FeatureServiceClient`):
the feature service's definition for the signature check, and the gate window's labelled rows
(``GetHistoricalFeatures`` with ``LabelledEntities``: point-in-time correct, one row per labelled
application, features as of the application time).

Errors of the feature-service, as the registry-gateway reports them: NOT_FOUND -> NOT_FOUND of the
feature service; FAILED_PRECONDITION (a version mismatch) -> FAILED_PRECONDITION
``FEATURE_SERVICE_VERSION``; UNAVAILABLE and DEADLINE_EXCEEDED -> UNAVAILABLE; other codes
unmapped (INTERNAL here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import grpc
import pandas as pd
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk_clients import DownstreamErrors, not_found
from creditrisk_clients import FeatureServiceClient as FeatureStoreClient
from creditrisk_clients.base import TokenProvider
from creditrisk_kit import FailedPrecondition, PreconditionViolation
from creditrisk_kit.tls import ClientTls
from google.protobuf import timestamp_pb2

EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class FeatureServiceDef:
    """A feature service as the feature-service describes it: version and features with types."""

    name: str
    version: str
    features: dict[str, int]  # name -> creditrisk.common.v1.ValueType (request values included)


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _errors(name: str) -> DownstreamErrors:
    """The feature-service's errors about feature service ``name`` (see the module docstring)."""

    def version_mismatch(exc: grpc.RpcError) -> Exception:
        return FailedPrecondition(
            f"feature service {name!r}: {exc.details()}",
            [PreconditionViolation("FEATURE_SERVICE_VERSION", name, "register a model trained on it")],
        )

    return DownstreamErrors(
        "the feature-service",
        on={
            grpc.StatusCode.NOT_FOUND: not_found(
                "feature service", name, description="unknown to the feature-service"
            ),
            grpc.StatusCode.FAILED_PRECONDITION: version_mismatch,
        },
        deadline_as_unavailable=True,
        unavailable_message="feature-service unavailable",
    )


class FeatureServiceClient:
    """Async client of the feature-service (its channel made on first use, inside the event loop).

    Args:
        address: ``host:port``.
        timeout_s: deadline of one historical retrieval stream.
        max_message_bytes: message limit of the channel.
        tls: TLS of the channel (``ClientTls.from_settings``); None: plaintext.
        token: the gateway's own credential (or a provider of it), sent on every call.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 120.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        tls: ClientTls | None = None,
        token: TokenProvider = "",
    ) -> None:
        self.address = address
        self._tls = tls
        self._token = token
        self.timeout_s = timeout_s
        self._max = max_message_bytes
        self._client: FeatureStoreClient | None = None

    def _store(self) -> FeatureStoreClient:
        if self._client is None:
            self._client = FeatureStoreClient.connect(
                self.address,
                max_message_bytes=self._max,
                historical_timeout_s=self.timeout_s,
                tls=self._tls,
                token=self._token,
            )
        return self._client

    async def close(self) -> None:
        """Close the channel."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def serving(self) -> bool:
        """Readiness: the feature-service's overall health is SERVING."""
        return await self._store().serving(timeout_s=2.0)

    async def get_feature_service(self, name: str) -> FeatureServiceDef:
        """The registered definition of ``name``.

        Raises:
            NotFound: unknown feature service.
            Unavailable: the feature-service cannot be reached.
        """
        definition = await self._store().get_feature_service(name, errors=_errors(name))
        features = dict(definition.features)
        for spec, value_type in definition.request_values.items():
            features.setdefault(spec, value_type)
        return FeatureServiceDef(definition.name, definition.version, features)

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
            Entity columns (the entity's join key, ``event_timestamp`` UTC, the label columns,
            ``label_timestamp``) then the feature columns; integer features as float64 (NaN for
            missing), string features as object (None for missing).

        Raises:
            NotFound / FailedPrecondition / Unavailable: see the module docstring.
        """
        query = fpb.HistoricalFeaturesQuery(
            feature_service=feature_service,
            feature_service_version=version,
            labelled_entities=fpb.LabelledEntities(
                label_view=label_view,
                application_time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
            ),
        )
        result = await self._store().historical_features(query, errors=_errors(feature_service))
        frame = result.to_pandas()
        for spec in result.header.features:
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

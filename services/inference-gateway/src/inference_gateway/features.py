"""Online features from the feature-service (contract ``creditrisk.feature.v1``).

:class:`FeatureClient` reads one entity's row of a Feast feature service (the product's model
feature service, keyed by the product's join key) within a deadline and keeps the feature
service's schema (stored features and request values with their types), read with
``GetFeatureService`` and refreshed every ``schema_ttl_s``. The calls go through
:class:`creditrisk_clients.FeatureServiceClient`, over a channel with no default-deadline
interceptor (every call passes its own timeout: measured cheaper on the hot path, see
docs/benchmarks.md).

Errors of the feature-service, as the gateway reports them (:data:`FEATURE_ERRORS`; the downstream
message is not echoed): UNAVAILABLE and DEADLINE_EXCEEDED -> UNAVAILABLE; FAILED_PRECONDITION (it
serves another feature service version) -> UNAVAILABLE; UNAUTHENTICATED / PERMISSION_DENIED (the
gateway's own credential refused) -> UNAVAILABLE naming the setting
(:class:`~inference_gateway.credential.CredentialRefused`); its own failures (INTERNAL, UNKNOWN,
ABORTED, RESOURCE_EXHAUSTED, DATA_LOSS) -> UNAVAILABLE, a backend failure like a down backend (left
as a raw ``AioRpcError`` it became a 500 whose REST handler re-raises, which also closed the
client's connection); other codes unmapped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk_clients import DownstreamErrors, FeatureServiceClient, dependency_status, unavailable
from creditrisk_clients.base import TokenProvider
from creditrisk_kit import ServiceError
from creditrisk_kit.tls import ClientTls

from inference_gateway.credential import refusal_handlers
from inference_gateway.values import Value, from_proto, to_proto, typed_proto

# Statuses that mean "no usable value": OUTSIDE_TTL counts as missing (issue 8).
_FOUND_ROW = {fpb.FEATURE_STATUS_PRESENT, fpb.FEATURE_STATUS_NULL_VALUE, fpb.FEATURE_STATUS_OUTSIDE_TTL}

_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

#: The feature-service's errors as the gateway reports them (see the module docstring).
FEATURE_ERRORS = DownstreamErrors(
    "feature-service",
    on={
        grpc.StatusCode.FAILED_PRECONDITION: unavailable(
            "feature-service serves another feature service version than the model's"
        ),
        # the gateway's own identity refused: its configuration, not the caller's request
        **refusal_handlers(
            "feature-service",
            accepts="the feature-service's FEATURE_SERVICE_AUTH_API_KEYS_FILE",
            role="read_features",
        ),
    },
    deadline_as_unavailable=True,
    failures_as_unavailable=True,
    unavailable_message="feature-service is unavailable or did not answer within the deadline",
)


@dataclass(frozen=True)
class FeatureSchema:
    """What a feature service serves: feature types and accepted request values (by name)."""

    version: str
    features: dict[str, int]
    request_values: dict[str, int]


@dataclass
class OnlineRow:
    """One applicant's online features.

    Attributes:
        values: feature name -> value; ``None`` for a value that is null, MISSING or OUTSIDE_TTL.
        types: feature name -> declared ValueType.
        known: whether the feature store holds a row for the applicant in any feature view.
        version: feature service version that was read.
    """

    values: dict[str, Value]
    types: dict[str, int]
    known: bool
    version: str = ""
    statuses: dict[str, int] = field(default_factory=dict)


class FeatureClient:
    """Client of ``FeatureStoreService`` (GetOnlineFeatures, GetFeatureService) and its health.

    Args:
        target: the feature-service's ``host:port``.
        feature_service: the Feast feature service read (the product's model feature service).
        join_key: the entity's join key in the feature store (the product's ``[entity].join_key``):
            the name the entity key is sent under.
        deadline_s: deadline of one call, in seconds.
        max_message_bytes: largest gRPC message both ways.
        schema_ttl_s: how long the feature service's schema is cached, in seconds.
        tls: TLS of the channel (None: plaintext).
        token: the gateway's own credential.
    """

    def __init__(
        self,
        target: str,
        feature_service: str,
        *,
        join_key: str,
        deadline_s: float,
        max_message_bytes: int,
        schema_ttl_s: float = 30.0,
        tls: ClientTls | None = None,
        token: TokenProvider = "",
    ) -> None:
        self.target = target
        self.feature_service = feature_service
        self.join_key = join_key
        self.deadline_s = deadline_s
        # Every call below passes its own timeout: no default-deadline interceptor on the hot path.
        self._store = FeatureServiceClient.connect(
            target,
            max_message_bytes=max_message_bytes,
            default_timeout_s=None,
            errors=FEATURE_ERRORS,
            tls=tls,
            token=token,
        )
        self._schema: FeatureSchema | None = None
        self._schema_at = 0.0
        self._schema_ttl_s = schema_ttl_s
        self._schema_lock = asyncio.Lock()

    async def serving(self) -> bool:
        """Whether the feature-service reports SERVING on ``grpc.health.v1`` (readiness)."""
        return await self._store.serving(timeout_s=self.deadline_s)

    async def schema(self) -> FeatureSchema:
        """The feature service's schema (cached ``schema_ttl_s``).

        Raises:
            Unavailable: when the feature-service cannot be reached within the deadline.
        """
        now = time.monotonic()
        if self._schema is not None and now - self._schema_at < self._schema_ttl_s:
            return self._schema
        async with self._schema_lock:
            if self._schema is not None and time.monotonic() - self._schema_at < self._schema_ttl_s:
                return self._schema
            try:
                fs = await self._store.get_feature_service(self.feature_service, timeout_s=self.deadline_s)
            except (ServiceError, grpc.aio.AioRpcError) as exc:
                if self._schema is not None and dependency_status(exc) in _DOWN:  # the last known one
                    return self._schema
                raise
            self._schema = FeatureSchema(fs.version, fs.features, fs.request_values)
            self._schema_at = time.monotonic()
            return self._schema

    async def online(
        self,
        entity_key: int,
        request_values: Mapping[str, Value],
        *,
        version: str = "",
        types: Mapping[str, int] | None = None,
    ) -> OnlineRow:
        """One entity's features, with request values passed to the on-demand feature views.

        Args:
            entity_key: the entity key (sent as the value of :attr:`join_key`).
            request_values: values for the feature service's request sources (already checked).
            version: expected feature service version ("" = whatever is registered).
            types: declared types of the request values.

        Raises:
            Unavailable: feature-service down, or no answer within the deadline.
        """
        row = fpb.EntityRow(join_keys={self.join_key: to_proto(entity_key)})
        for name, value in request_values.items():
            row.request_values[name].CopyFrom(typed_proto(value, (types or {}).get(name, 0)))
        response = await self._store.get_online_features(
            self.feature_service, [row], version=version, timeout_s=self.deadline_s
        )
        values: dict[str, Value] = {}
        types_out: dict[str, int] = {}
        statuses: dict[str, int] = {}
        known = False
        cells = response.rows[0].values if response.rows else []
        for spec, cell in zip(response.features, cells, strict=False):
            statuses[spec.name] = cell.status
            types_out[spec.name] = spec.value_type
            present = cell.status == fpb.FEATURE_STATUS_PRESENT
            values[spec.name] = from_proto(cell.value) if present else None
            # A stored row (event timestamp set) proves the applicant is known; on-demand
            # outputs carry no timestamp and prove nothing.
            if cell.status in _FOUND_ROW and cell.HasField("event_timestamp"):
                known = True
        return OnlineRow(values, types_out, known, response.feature_service_version, statuses)

    async def close(self) -> None:
        await self._store.close()

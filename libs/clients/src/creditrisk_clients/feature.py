"""Client of the feature-service (contract ``creditrisk.feature.v1.FeatureStoreService``).

:class:`FeatureServiceClient` is the one ``grpc.aio`` client of the contract, used by the
registry-gateway (signature check, gate window), the training-service (training sets) and the
inference-gateway (online features on its hot path), and open to product backends:

* ``GetFeatureService`` -> :class:`FeatureServiceDef` (version, feature and request-value types);
  ``GetFeatureView`` -> the view's message;
* ``GetOnlineFeatures`` -> the response message (its cells stay protobuf: the hot path converts
  only what it uses);
* ``GetHistoricalFeatures`` -> :class:`~creditrisk_clients.historical.HistoricalFeatures`, the
  stream reassembled once by :func:`creditrisk_clients.historical.reassemble` (extra ``arrow``:
  pyarrow is imported on this path only, so an online-only caller does not need it);
* ``Push`` -> rows written; ``Materialize`` -> one summary per view loaded;
* ``grpc.health.v1.Health/Check`` -> :meth:`FeatureServiceClient.serving`.

Errors: every call maps the feature-service's status through one
:class:`~creditrisk_clients.errors.DownstreamErrors` (the client's, or the call's ``errors=``):
UNAVAILABLE -> ``Unavailable``, DEADLINE_EXCEEDED -> ``DeadlineExceeded`` by default, other codes
as the caller's handlers say. A historical stream that breaks the contract (the chunk protocol,
header or summary missing, row counts that disagree, declared columns missing or not of their
declared type) raises ``Unavailable``: the feature-service's fault, never the caller's.

Deadlines: :meth:`FeatureServiceClient.connect` makes a kit channel (message limits, retries on
UNAVAILABLE, a default deadline on unary calls unless ``default_timeout_s=None``: a hot path that
passes ``timeout_s`` on every call then has no per-call deadline interceptor). Response streams
get no default deadline: ``historical_timeout_s`` bounds one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from creditrisk.common.v1 import arrow_pb2, time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk_kit.settings import DEFAULT_MAX_MESSAGE_BYTES
from grpc_health.v1 import health_pb2, health_pb2_grpc

from creditrisk_clients.base import ContractClient, TokenProvider
from creditrisk_clients.errors import DownstreamErrors

if TYPE_CHECKING:  # the extra "arrow": imported on the historical path only
    import pyarrow as pa

    from creditrisk_clients.historical import HistoricalFeatures

#: The default mapping of the feature-service's errors (see :mod:`creditrisk_clients.errors`).
FEATURE_SERVICE_ERRORS = DownstreamErrors("the feature-service")


@dataclass(frozen=True)
class FeatureServiceDef:
    """A feature service as the feature-service describes it.

    Attributes:
        name / version: The feature service and its registered version.
        features: Result feature name -> ``ValueType``, in the projections' order.
        request_values: Request value name -> ``ValueType`` (the on-demand views' request sources).
        message: The ``FeatureService`` message itself (projections, tags, ...).
    """

    name: str
    version: str
    features: dict[str, int]
    request_values: dict[str, int]
    message: fpb.FeatureService


def describe(message: fpb.FeatureService) -> FeatureServiceDef:
    """A ``FeatureService`` message as a :class:`FeatureServiceDef`."""
    features = {f.name: int(f.value_type) for p in message.projections for f in p.features}
    requests = {r.name: int(r.value_type) for r in message.request_values}
    return FeatureServiceDef(message.name, message.version, features, requests, message)


class FeatureServiceClient(ContractClient):
    """Async client of ``creditrisk.feature.v1.FeatureStoreService`` (see the module docstring).

    Args:
        channel: A ``grpc.aio`` channel to the feature-service (a kit ``aio_channel``).
        errors: How the feature-service's errors are raised (per call: ``errors=``).
        historical_timeout_s: Deadline of one ``GetHistoricalFeatures`` stream, in seconds.
        owns_channel: Close ``channel`` in :meth:`close`.
        token: The caller's bearer credential or a provider of it (``ContractClient``).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        errors: DownstreamErrors = FEATURE_SERVICE_ERRORS,
        historical_timeout_s: float = 300.0,
        owns_channel: bool = False,
        token: TokenProvider = "",
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel, token=token)
        self.historical_timeout_s = historical_timeout_s
        self._stub = fpb_grpc.FeatureStoreServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    async def serving(self, *, timeout_s: float = 2.0) -> bool:
        """Whether the feature-service reports SERVING on ``grpc.health.v1`` (server as a whole).

        Raises:
            grpc.aio.AioRpcError: The check itself failed (readiness callers count it as not ready).
        """
        response = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def get_feature_service(
        self, name: str, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> FeatureServiceDef:
        """The registered definition of feature service ``name``.

        Raises:
            As ``errors`` maps the feature-service's status (NOT_FOUND for an unknown name).
        """
        try:
            response = await self._stub.GetFeatureService(
                fpb.GetFeatureServiceRequest(name=name), timeout=timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)
        return describe(response.feature_service)

    async def get_feature_view(
        self, name: str, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> fpb.FeatureView:
        """The feature view ``name`` (raises as ``errors`` maps NOT_FOUND and the rest)."""
        try:
            response = await self._stub.GetFeatureView(
                fpb.GetFeatureViewRequest(name=name), timeout=timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)
        view: fpb.FeatureView = response.feature_view
        return view

    async def get_online_features(
        self,
        feature_service: str,
        entity_rows: Sequence[fpb.EntityRow],
        *,
        version: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> fpb.GetOnlineFeaturesResponse:
        """Online features of ``entity_rows`` (join keys and request values per row).

        Args:
            feature_service: The feature service to read.
            entity_rows: One ``EntityRow`` per entity, in the order of the answer's rows.
            version: Expected feature service version ("" = whatever is registered); a mismatch is
                the feature-service's FAILED_PRECONDITION.
            timeout_s: Deadline in seconds (None: the channel's default, if any).

        Returns:
            The response: ``features`` (name, type), one row of cells per entity row.
        """
        request = fpb.GetOnlineFeaturesRequest(
            feature_service=feature_service, entity_rows=entity_rows, feature_service_version=version
        )
        try:
            response: fpb.GetOnlineFeaturesResponse = await self._stub.GetOnlineFeatures(
                request, timeout=timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)
        return response

    async def historical_features(
        self,
        query: fpb.HistoricalFeaturesQuery,
        entity_rows: pa.Table | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> HistoricalFeatures:
        """Point-in-time features for ``query``.

        Args:
            query: The query (feature service, version, ``labelled_entities`` or none).
            entity_rows: The entity rows when the query has no ``labelled_entities``: join keys and
                event timestamps, sent as Arrow chunks within ``max_message_bytes``.
            timeout_s: Deadline of the stream, in seconds (default ``historical_timeout_s``).

        Raises:
            As ``errors`` maps the feature-service's status; as :func:`reassemble` for the stream.
        """
        from creditrisk_kit.arrow import encode_chunks

        from creditrisk_clients.historical import reassemble

        chunks: Iterable[fpb.GetHistoricalFeaturesRequest] = ()
        if entity_rows is not None:
            chunks = (
                fpb.GetHistoricalFeaturesRequest(
                    entity_rows=arrow_pb2.ArrowChunk(
                        arrow_ipc_stream=c.payload, row_count=c.row_count, sequence=c.sequence
                    )
                )
                for c in encode_chunks(entity_rows, max_message_bytes=max_message_bytes)
            )

        async def requests() -> AsyncIterator[fpb.GetHistoricalFeaturesRequest]:
            yield fpb.GetHistoricalFeaturesRequest(query=query)
            for message in chunks:
                yield message

        deadline = self.historical_timeout_s if timeout_s is None else timeout_s
        try:
            return await reassemble(
                self._stub.GetHistoricalFeatures(requests(), timeout=deadline, metadata=self.metadata)
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)

    async def push(
        self,
        push_source: str,
        rows: Iterable[fpb.PushRow],
        *,
        target: fpb.PushTarget.ValueType = fpb.PUSH_TARGET_ONLINE_AND_OFFLINE,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> fpb.PushResponse:
        """Write ``rows`` to push source ``push_source`` (``target``: a ``PushTarget``)."""
        request = fpb.PushRequest(push_source=push_source, rows=rows, target=target)
        try:
            response: fpb.PushResponse = await self._stub.Push(
                request, timeout=timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)
        return response

    async def materialize(
        self,
        event_times: time_range_pb2.TimeRange,
        feature_views: Sequence[str] = (),
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> list[fpb.MaterializationSummary]:
        """Load the offline rows with event times in ``event_times`` into the online store.

        Args:
            event_times: The event-time range ``[start, end)``.
            feature_views: The views to load (empty: every online view).
            timeout_s: Deadline in seconds (None: the channel's default, if any; a large range
                needs more than the default).

        Returns:
            One summary per view materialized, ordered by name.

        Raises:
            As ``errors`` maps INVALID_ARGUMENT (missing or inverted range), NOT_FOUND (unknown
            view), FAILED_PRECONDITION (a view that is not online) and the rest.
        """
        request = fpb.MaterializeRequest(range=event_times, feature_views=list(feature_views))
        response = await self.unary(self._stub.Materialize, request, timeout_s=timeout_s, errors=errors)
        return list(response.views)


def entity_row(
    join_keys: Mapping[str, values_pb2.FeatureValue],
    request_values: Mapping[str, values_pb2.FeatureValue] | None = None,
) -> fpb.EntityRow:
    """An ``EntityRow`` of join keys and request values (``FeatureValue`` messages)."""
    row = fpb.EntityRow()
    for name, value in join_keys.items():
        row.join_keys[name].CopyFrom(value)
    for name, value in (request_values or {}).items():
        row.request_values[name].CopyFrom(value)
    return row

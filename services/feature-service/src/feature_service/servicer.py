"""The gRPC transport of the feature-service: ``creditrisk.feature.v1.FeatureStoreService`` (grpc.aio).

Each RPC converts the request (:mod:`feature_service.convert`, :mod:`feature_service.historical`),
calls :class:`~feature_service.core.FeatureStoreCore` in a worker thread (Feast is synchronous;
``asyncio.to_thread`` copies the context, so the RPC's trace continues into the core), and converts
the result. The exception: small online reads, which run on the event loop where the online store
reads without blocking (see ``_INLINE_ROWS``). Domain errors carry their status; the kit's
``ErrorInterceptor`` maps them and turns anything else into INTERNAL without a traceback on the wire.
Every GetOnlineFeatures / GetHistoricalFeatures call leaves one record on the
``feature_service.access`` logger (who, which entity keys, never a value: :func:`_record`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit.access_log import outcome_of, record_access
from creditrisk_kit.auth import MethodPolicy, Role, current_principal

from feature_service import convert, historical
from feature_service.core import FeatureStoreCore
from feature_service.errors import InvalidArgument
from feature_service.settings import FeatureServiceSettings

#: Online reads of at most this many entity rows run on the event loop where the store reads without
#: blocking (``FeatureStoreCore.get_online_features_async``: no worker-thread hop, the gateway's case
#: of one applicant); larger batches (up to ``max_online_entity_rows``) keep their CPU-heavy
#: conversion off the loop in a worker thread.
_INLINE_ROWS = 16

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name

POLICY = MethodPolicy.for_service(
    SERVICE_NAME,
    {
        "GetOnlineFeatures": Role.READ_FEATURES,
        "GetHistoricalFeatures": Role.READ_FEATURES,
        "ListFeatureServices": Role.READ_FEATURES,
        "GetFeatureService": Role.READ_FEATURES,
        "ListFeatureViews": Role.READ_FEATURES,
        "GetFeatureView": Role.READ_FEATURES,
        "Push": Role.WRITE_FEATURES,
        "Materialize": Role.WRITE_FEATURES,
        "MaterializeIncremental": Role.WRITE_FEATURES,
    },
)
"""What each RPC needs (the kit's auth, default deny): reads (features and the catalogue)
``read_features``; writes (push, materialization) ``write_features``."""


ACCESS_LOGGER = logging.getLogger("feature_service.access")
"""The access log of feature reads (the kit's :mod:`creditrisk_kit.access_log`)."""


def _entity_id(keys: dict[str, Any]) -> Any:
    """One entity row's id: the value of its only join key, else the mapping of them."""
    return next(iter(keys.values())) if len(keys) == 1 else dict(keys)


def _record(method: str, request: Any, ids: list[Any], row_count: int, error: BaseException | None) -> None:
    """The access record of a feature read (``feature_service.access``): the caller's subject,
    the method, the feature service or refs asked, the entity keys (first 100 and
    ``entity_keys_count``), the rows returned and the outcome; never a feature value."""
    which = request.WhichOneof("selection") if request is not None else None
    record_access(
        ACCESS_LOGGER,
        method,
        current_principal(),
        ids,
        outcome_of(error),
        feature_service=request.feature_service if which == "feature_service" else "",
        feature_refs=list(request.features.refs) if which == "features" else [],
        row_count=row_count if error is None else 0,
    )


class FeatureStoreServiceServicer(pb_grpc.FeatureStoreServiceServicer):
    """Every RPC of ``FeatureStoreService`` over one core.

    Args:
        core: the domain API.
        settings: message size and chunk defaults (default: the core's settings).
    """

    def __init__(self, core: FeatureStoreCore, settings: FeatureServiceSettings | None = None) -> None:
        self.core = core
        self.settings = settings or core.settings

    async def GetOnlineFeatures(
        self, request: pb.GetOnlineFeaturesRequest, context: Any
    ) -> pb.GetOnlineFeaturesResponse:
        keys: list[dict[str, Any]] = []
        error: BaseException | None = None
        try:
            service, refs, version = convert.selection(request)
            keys, values = convert.online_rows(request, self.settings.max_online_entity_rows)
            if len(keys) > _INLINE_ROWS:  # a large batch converts in a worker thread, not on the loop
                return await asyncio.to_thread(
                    self._online, keys, values, service, refs, version, request.full_feature_names
                )
            result = await self.core.online.get_online_features_async(keys, values, service, refs, version)
            return convert.online_response(result, request.full_feature_names)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _record("GetOnlineFeatures", request, [_entity_id(k) for k in keys], len(keys), error)

    def _online(
        self,
        keys: list[dict[str, Any]],
        values: list[dict[str, Any]],
        service: str | None,
        refs: list[str] | None,
        version: str | None,
        full_feature_names: bool,
    ) -> pb.GetOnlineFeaturesResponse:
        """Read and convert in one worker-thread hop (keeps the event loop free meanwhile)."""
        result = self.core.online.get_online_features(keys, values, service, refs, version)
        return convert.online_response(result, full_feature_names)

    async def GetHistoricalFeatures(
        self, request_iterator: AsyncIterator[pb.GetHistoricalFeaturesRequest], context: Any
    ) -> AsyncIterator[pb.GetHistoricalFeaturesResponse]:
        started, stream = time.perf_counter(), aiter(request_iterator)
        query: pb.HistoricalFeaturesQuery | None = None
        ids: list[Any] = []
        row_count = 0
        error: BaseException | None = None
        try:
            query = await historical.read_query(stream)
            service, refs, version = convert.selection(query)
            specs, resolved = await asyncio.to_thread(
                self.core.historical.selection, service, refs, version, query.full_feature_names
            )
            rows = await historical.read_entity_rows(stream, query, self.core)
            ids = await asyncio.to_thread(self._entity_ids, rows.table)
            table = await asyncio.to_thread(
                self.core.historical.get_historical_table,
                rows.table,
                service,
                refs,
                query.full_feature_names,
                version,
            )
            row_count = table.num_rows
            table = historical.restore_timestamp(table, rows)
            yield historical.header(specs, table, resolved)
            count = 0
            max_rows = query.max_chunk_rows or self.settings.history_chunk_rows
            async for chunk in historical.chunks(
                table, max_message_bytes=self.settings.max_message_bytes, max_rows=max_rows
            ):
                count += 1
                yield chunk
            summary = pb.HistoricalFeaturesSummary(row_count=table.num_rows, chunk_count=count)
            summary.duration.CopyFrom(convert.duration(time.perf_counter() - started))
            yield pb.GetHistoricalFeaturesResponse(summary=summary)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _record("GetHistoricalFeatures", query, ids, row_count, error)

    def _entity_ids(self, table: Any) -> list[Any]:
        """The entity keys of a historical query's rows: its join-key columns (the project's
        entities'), one id per row (a mapping when a row has several keys); never other columns."""
        join_keys = {e.join_key for e in self.core.catalogue.entities().values()}
        columns = [c for c in table.column_names if c in join_keys]
        return [_entity_id(row) for row in table.select(columns).to_pylist()]

    async def Materialize(self, request: pb.MaterializeRequest, context: Any) -> pb.MaterializeResponse:
        start, end = convert.time_range(request.range, "range", request.HasField("range"))
        views = list(request.feature_views) or None
        result = await asyncio.to_thread(self.core.writes.materialize, start, end, views)
        return pb.MaterializeResponse(views=convert.materialization(result.views))

    async def MaterializeIncremental(
        self, request: pb.MaterializeIncrementalRequest, context: Any
    ) -> pb.MaterializeIncrementalResponse:
        end = convert.required_timestamp(request, "end_time", "end_time")
        views = list(request.feature_views) or None
        result = await asyncio.to_thread(self.core.writes.materialize_incremental, end, views)
        return pb.MaterializeIncrementalResponse(views=convert.materialization(result.views))

    async def Push(self, request: pb.PushRequest, context: Any) -> pb.PushResponse:
        rows = convert.push_rows(request)
        target = convert.push_target(request.target)
        result = await asyncio.to_thread(self.core.writes.push, request.push_source, rows, target)
        return pb.PushResponse(rows_written=result.rows)

    async def ListFeatureServices(
        self, request: pb.ListFeatureServicesRequest, context: Any
    ) -> pb.ListFeatureServicesResponse:
        infos = await asyncio.to_thread(self.core.catalogue.list_feature_services)
        infos = [i for i in infos if convert.has_tags(i.tags, request.tags)]
        items, token = convert.page(infos, request.page_size, request.page_token, key=lambda i: i.name)
        entities = await asyncio.to_thread(self.core.catalogue.entities)
        return pb.ListFeatureServicesResponse(
            feature_services=[convert.feature_service(i, entities) for i in items], next_page_token=token
        )

    async def GetFeatureService(
        self, request: pb.GetFeatureServiceRequest, context: Any
    ) -> pb.GetFeatureServiceResponse:
        if not request.name:
            raise InvalidArgument("name", "required")
        info = await asyncio.to_thread(self.core.catalogue.describe_feature_service, request.name)
        entities = await asyncio.to_thread(self.core.catalogue.entities)
        return pb.GetFeatureServiceResponse(feature_service=convert.feature_service(info, entities))

    async def ListFeatureViews(
        self, request: pb.ListFeatureViewsRequest, context: Any
    ) -> pb.ListFeatureViewsResponse:
        kind = convert.view_kind(request.kind)
        used: set[str] | None = None
        if request.feature_service:
            service = await asyncio.to_thread(
                self.core.catalogue.describe_feature_service, request.feature_service
            )
            used = set(service.feature_views)
        infos = [
            i
            for i in await asyncio.to_thread(self.core.catalogue.list_feature_views)
            if (kind is None or i.kind == kind)
            and (used is None or i.name in used)
            and convert.has_tags(i.tags, request.tags)
        ]
        items, token = convert.page(infos, request.page_size, request.page_token, key=lambda i: i.name)
        entities = await asyncio.to_thread(self.core.catalogue.entities)
        return pb.ListFeatureViewsResponse(
            feature_views=[convert.feature_view(i, entities) for i in items], next_page_token=token
        )

    async def GetFeatureView(
        self, request: pb.GetFeatureViewRequest, context: Any
    ) -> pb.GetFeatureViewResponse:
        if not request.name:
            raise InvalidArgument("name", "required")
        info = await asyncio.to_thread(self.core.catalogue.describe_feature_view, request.name)
        entities = await asyncio.to_thread(self.core.catalogue.entities)
        return pb.GetFeatureViewResponse(feature_view=convert.feature_view(info, entities))

"""The thin gRPC layer of ``creditrisk.registry.v1.ModelRegistryService``: authenticate, convert,
call the core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk.registry.v1 import registry_service_pb2_grpc as pb_grpc
from creditrisk_kit import InvalidArgument

from registry_gateway import audit as au
from registry_gateway.auth import Authenticator, Role
from registry_gateway.core import RegistryCore

SERVICE_NAME = "creditrisk.registry.v1.ModelRegistryService"


def _page(size: int, token: str, default: int, maximum: int) -> tuple[int, int]:
    if size < 0:
        raise InvalidArgument("page_size", "must be >= 0")
    try:
        offset = au.decode_page_token(token)
    except ValueError as exc:
        raise InvalidArgument("page_token", str(exc)) from exc
    return offset, min(size or default, maximum)


def _next(offset: int, limit: int, more: bool) -> str:
    return au.encode_page_token(offset + limit) if more else ""


class RegistryServicer(pb_grpc.ModelRegistryServiceServicer):  # type: ignore[misc]
    """Each method: the caller from the bearer token (role checked), then the core."""

    def __init__(self, core: RegistryCore, auth: Authenticator) -> None:
        self.core = core
        self.auth = auth

    async def RegisterModelVersion(self, request: pb.RegisterModelVersionRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.PROMOTER, "RegisterModelVersion")
        return pb.RegisterModelVersionResponse(model_version=await self.core.register(caller, request))

    async def ListRegisteredModels(self, request: pb.ListRegisteredModelsRequest, context: Any) -> Any:
        self.auth.authorize(context, Role.VIEWER, "ListRegisteredModels")
        offset, limit = _page(request.page_size, request.page_token, 50, 1000)
        models, more = await self.core.list_models(offset, limit)
        return pb.ListRegisteredModelsResponse(
            registered_models=models, next_page_token=_next(offset, limit, more)
        )

    async def ListModelVersions(self, request: pb.ListModelVersionsRequest, context: Any) -> Any:
        self.auth.authorize(context, Role.VIEWER, "ListModelVersions")
        offset, limit = _page(request.page_size, request.page_token, 50, 100)
        versions, more = await self.core.list_versions(request.name, offset, limit)
        return pb.ListModelVersionsResponse(
            model_versions=versions, next_page_token=_next(offset, limit, more)
        )

    async def GetModelVersion(self, request: pb.GetModelVersionRequest, context: Any) -> Any:
        self.auth.authorize(context, Role.VIEWER, "GetModelVersion")
        return pb.GetModelVersionResponse(model_version=await self.core.get_version(request.model))

    async def SetAlias(self, request: pb.SetAliasRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.PROMOTER, "SetAlias")
        return pb.SetAliasResponse(change=await self.core.set_alias(caller, request))

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.ADMIN, "DeleteAlias")
        return pb.DeleteAliasResponse(change=await self.core.delete_alias(caller, request))

    async def EvaluatePromotion(self, request: pb.EvaluatePromotionRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.VIEWER, "EvaluatePromotion")
        return pb.EvaluatePromotionResponse(gate=await self.core.evaluate(caller, request))

    async def PromoteModelVersion(self, request: pb.PromoteModelVersionRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.PROMOTER, "PromoteModelVersion")
        gate, change, version = await self.core.promote(caller, request)
        return pb.PromoteModelVersionResponse(gate=gate, change=change, model_version=version)

    async def RollbackChampion(self, request: pb.RollbackChampionRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.ADMIN, "RollbackChampion")
        change, version = await self.core.rollback(caller, request)
        return pb.RollbackChampionResponse(change=change, model_version=version)

    async def WatchAliases(self, request: pb.WatchAliasesRequest, context: Any) -> AsyncIterator[Any]:
        caller = self.auth.authorize(context, Role.VIEWER, "WatchAliases")
        async for message in self.core.watch(caller, request):
            yield message

    async def ListAuditRecords(self, request: pb.ListAuditRecordsRequest, context: Any) -> Any:
        caller = self.auth.authorize(context, Role.VIEWER, "ListAuditRecords")
        offset, limit = _page(request.page_size, request.page_token, 50, 1000)
        start = end = None
        if request.HasField("time_range"):
            start = request.time_range.start.ToDatetime(tzinfo=UTC)
            end = request.time_range.end.ToDatetime(tzinfo=UTC)
            if end <= start:
                raise InvalidArgument("time_range", "end must be after start")
        flt = au.AuditFilter(
            model_name=request.model_name,
            actions=[int(a) for a in request.actions],
            actor=request.actor,
            alias=request.alias,
            start=start,
            end=end,
        )
        records, more = await self.core.list_audit(caller, flt, offset, limit)
        return pb.ListAuditRecordsResponse(audit_records=records, next_page_token=_next(offset, limit, more))


def register(servicer: RegistryServicer) -> Any:
    """The ``register`` callable of the kit's ``ServiceRunner``."""

    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server)

    return add

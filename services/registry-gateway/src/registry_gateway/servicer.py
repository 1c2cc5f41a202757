"""The thin gRPC layer of ``creditrisk.registry.v1.ModelRegistryService``: the caller (checked
by the kit's auth interceptor against :data:`registry_gateway.auth.POLICY` before the method
runs), convert the request (:mod:`registry_gateway.convert`), call the core's job, convert the
result. Domain errors carry their status; the kit's ``ErrorInterceptor`` maps them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk.registry.v1 import registry_service_pb2_grpc as pb_grpc
from creditrisk_kit.pages import (
    decode_page_token,
    encode_page_token,
    next_offset_token,
    offset_page,
    page_limit,
)

from registry_gateway import convert
from registry_gateway.auth import SERVICE_NAME
from registry_gateway.auth import caller as current_caller
from registry_gateway.core import RegistryCore

__all__ = ["SERVICE_NAME", "RegistryServicer", "register"]


class RegistryServicer(pb_grpc.ModelRegistryServiceServicer):  # type: ignore[misc]
    """Each method: the caller (authenticated and role-checked by the kit), then the core's job."""

    def __init__(self, core: RegistryCore) -> None:
        self.core = core

    async def RegisterModelVersion(self, request: pb.RegisterModelVersionRequest, context: Any) -> Any:
        who = current_caller()
        version = await self.core.registration.register(who, convert.register_request(request))
        return pb.RegisterModelVersionResponse(model_version=convert.model_version(version))

    async def ListRegisteredModels(self, request: pb.ListRegisteredModelsRequest, context: Any) -> Any:
        offset, limit = offset_page(request.page_size, request.page_token, default=50, maximum=1000)
        models, more = await self.core.registry.list_models(offset, limit)
        return pb.ListRegisteredModelsResponse(
            registered_models=[convert.registered_model(m) for m in models],
            next_page_token=next_offset_token(offset, limit, more),
        )

    async def ListModelVersions(self, request: pb.ListModelVersionsRequest, context: Any) -> Any:
        offset, limit = offset_page(request.page_size, request.page_token, default=50, maximum=100)
        versions, more = await self.core.registry.list_versions(request.name, offset, limit)
        return pb.ListModelVersionsResponse(
            model_versions=[convert.model_version(v) for v in versions],
            next_page_token=next_offset_token(offset, limit, more),
        )

    async def GetModelVersion(self, request: pb.GetModelVersionRequest, context: Any) -> Any:
        version = await self.core.registry.get_version(convert.version_selector(request.model))
        return pb.GetModelVersionResponse(model_version=convert.model_version(version))

    async def SetAlias(self, request: pb.SetAliasRequest, context: Any) -> Any:
        who = current_caller()
        change = await self.core.aliases.set_alias(
            who, request.name, request.alias, request.version, request.reason
        )
        return pb.SetAliasResponse(change=convert.alias_change(change))

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Any) -> Any:
        who = current_caller()
        change = await self.core.aliases.delete_alias(who, request.name, request.alias, request.reason)
        return pb.DeleteAliasResponse(change=convert.alias_change(change))

    async def RevokeModelVersion(self, request: pb.RevokeModelVersionRequest, context: Any) -> Any:
        who = current_caller()
        record = await self.core.aliases.revoke(who, request.name, request.version, request.reason)
        return pb.RevokeModelVersionResponse(record=convert.audit_record(record))

    async def EvaluatePromotion(self, request: pb.EvaluatePromotionRequest, context: Any) -> Any:
        who = current_caller()
        decision = await self.core.gate.evaluate(who, request.name, request.version, request.alias)
        return pb.EvaluatePromotionResponse(gate=convert.gate_result(decision))

    async def PromoteModelVersion(self, request: pb.PromoteModelVersionRequest, context: Any) -> Any:
        who = current_caller()
        decision, change, version = await self.core.aliases.promote(
            who, request.name, request.version, request.alias, request.force, request.reason
        )
        return pb.PromoteModelVersionResponse(
            gate=convert.gate_result(decision),
            change=convert.alias_change(change),
            model_version=convert.model_version(version),
        )

    async def RollbackChampion(self, request: pb.RollbackChampionRequest, context: Any) -> Any:
        who = current_caller()
        to_version = request.to_version if request.HasField("to_version") else None
        change, version = await self.core.aliases.rollback(who, request.name, request.reason, to_version)
        return pb.RollbackChampionResponse(
            change=convert.alias_change(change), model_version=convert.model_version(version)
        )

    async def WatchAliases(self, request: pb.WatchAliasesRequest, context: Any) -> AsyncIterator[Any]:
        who = current_caller()
        async for item in self.core.aliases.watch(who, list(request.model_names), list(request.aliases)):
            yield convert.watch_response(item)

    async def ListAuditRecords(self, request: pb.ListAuditRecordsRequest, context: Any) -> Any:
        who = current_caller()
        limit = page_limit(request.page_size, default=50, maximum=1000)
        before = decode_page_token(request.page_token, int)  # the previous page's last sequence
        flt = convert.audit_filter(request)
        records, last = await self.core.trail.records(who, flt, before, limit)
        return pb.ListAuditRecordsResponse(
            audit_records=[convert.audit_record(r) for r in records],
            next_page_token=encode_page_token(last) if last is not None else "",
        )


def register(servicer: RegistryServicer) -> Any:
    """The ``register`` callable of the kit's ``ServiceRunner``."""

    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server)

    return add

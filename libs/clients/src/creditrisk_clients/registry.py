"""Client of the registry-gateway (contract ``creditrisk.registry.v1.ModelRegistryService``).

:class:`RegistryClient` carries the caller's bearer token (``authorization: Bearer <token>``) on
every call; the gateway checks the role each RPC needs (viewer: reads, ``EvaluatePromotion``,
``WatchAliases``; promoter: ``RegisterModelVersion``, ``SetAlias``, ``PromoteModelVersion``; admin:
``DeleteAlias``, ``RollbackChampion``, a forced promotion), PERMISSION_DENIED below it.

* Reads: ``GetModelVersion`` -> the ``ModelVersion`` (by number or by alias);
  ``ListRegisteredModels`` / ``ListModelVersions`` / ``ListAuditRecords`` -> one page,
  ``(items, next page token or "")``.
* Writes: ``RegisterModelVersion`` -> the new ``ModelVersion``; ``SetAlias`` / ``DeleteAlias`` ->
  the ``AliasChange``; ``EvaluatePromotion`` -> the ``GateResult`` (a dry run);
  ``PromoteModelVersion`` -> the response (gate, change, version), a refusal by the gate raised as
  :class:`GateRefused` carrying the ``GateResult``; ``RollbackChampion`` -> the response.
* ``WatchAliases`` -> the response stream as it comes (a snapshot, then changes). Its errors are
  the stream's own ``grpc.aio.AioRpcError``: a watcher decides on the code whether and when to
  reconnect, and a stream has no default deadline.

Unary errors are mapped by :class:`~creditrisk_clients.errors.DownstreamErrors` (default:
UNAVAILABLE -> ``Unavailable``, DEADLINE_EXCEEDED -> ``DeadlineExceeded``, other codes as the
caller's handlers say, else the ``grpc.aio.AioRpcError`` unchanged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import grpc
import grpc.aio
from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_kit.errors import FailedPrecondition, PreconditionViolation
from google.protobuf.message import Message
from grpc_status import rpc_status

from creditrisk_clients.base import ContractClient, TokenProvider
from creditrisk_clients.errors import DownstreamErrors

#: The default mapping of the registry-gateway's errors (see :mod:`creditrisk_clients.errors`).
REGISTRY_ERRORS = DownstreamErrors("the registry-gateway")


class GateRefused(FailedPrecondition):
    """The promotion gate refused a version (the gateway's FAILED_PRECONDITION with a
    ``GateResult`` detail). Re-raised by a service, it is that service's FAILED_PRECONDITION with
    the same details: a ``PROMOTION_GATE`` violation naming the gate's rule, and the ``GateResult``.

    Attributes:
        gate: The gate's result (scores, delta and confidence interval, reasons).
    """

    def __init__(self, message: str, gate: rpb.GateResult) -> None:
        subject = f"{gate.model_name}/{gate.challenger.version}"
        super().__init__(message, [PreconditionViolation("PROMOTION_GATE", subject, gate.rule)])
        self.gate = gate

    def details(self) -> list[Message]:
        return [*super().details(), self.gate]


def gate_refusal(exc: grpc.RpcError) -> rpb.GateResult | None:
    """The ``GateResult`` of a FAILED_PRECONDITION from ``PromoteModelVersion``, else None (another
    code, or a precondition other than the gate's, e.g. too few labelled rows)."""
    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    status = rpc_status.from_call(exc)
    for detail in status.details if status else []:
        if detail.Is(rpb.GateResult.DESCRIPTOR):
            gate = rpb.GateResult()
            detail.Unpack(gate)
            return gate
    return None


class RegistryClient(ContractClient):
    """Async client of ``creditrisk.registry.v1.ModelRegistryService`` (see the module docstring).

    Every unary method takes ``timeout_s`` (deadline in seconds; None: the channel's default, if
    any) and ``errors`` (how this call's errors are raised; None: the client's).

    Args:
        channel: A ``grpc.aio`` channel to the registry-gateway (a kit ``aio_channel``).
        token: The caller's bearer token ("" sends no ``authorization`` header).
        errors: How the registry-gateway's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        token: TokenProvider = "",
        errors: DownstreamErrors = REGISTRY_ERRORS,
        owns_channel: bool = False,
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel, token=token)
        self._stub = rpb_grpc.ModelRegistryServiceStub(channel)

    async def get_model_version(
        self,
        name: str,
        version: int = 0,
        *,
        alias: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.ModelVersion:
        """Model version ``version`` of ``name``, or the one ``alias`` points to.

        Args:
            name: The registered model.
            version: The version number (used when ``alias`` is empty).
            alias: An alias of the model, e.g. ``champion``.
            timeout_s: Deadline in seconds (None: the channel's default, if any).

        Raises:
            ValueError: Neither ``version`` (>= 1) nor ``alias`` given.
            As ``errors`` maps the registry-gateway's status (NOT_FOUND for an unknown version).
        """
        if alias:
            model = refs_pb2.ModelRef(name=name, alias=alias)
        elif version >= 1:
            model = refs_pb2.ModelRef(name=name, version=version)
        else:
            raise ValueError(f"a model version number >= 1 or an alias is needed, got {version!r}")
        request = rpb.GetModelVersionRequest(model=model)
        response = await self.unary(self._stub.GetModelVersion, request, timeout_s=timeout_s, errors=errors)
        found: rpb.ModelVersion = response.model_version
        return found

    def watch_aliases(
        self, model_names: Sequence[str], aliases: Sequence[str] = ()
    ) -> AsyncIterator[rpb.WatchAliasesResponse]:
        """The ``WatchAliases`` stream of ``model_names`` (all their aliases when ``aliases`` is
        empty): a snapshot first, then one message per change; iterate it with ``async for``.

        Raises (while iterating):
            grpc.aio.AioRpcError: The stream failed (the caller decides on its code).
        """
        stream: AsyncIterator[rpb.WatchAliasesResponse] = self._stub.WatchAliases(
            rpb.WatchAliasesRequest(model_names=list(model_names), aliases=list(aliases)),
            metadata=self.metadata,
        )
        return stream

    async def list_registered_models(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[rpb.RegisteredModel], str]:
        """One page of registered models and the next page's token ("" on the last page)."""
        request = rpb.ListRegisteredModelsRequest(page_size=page_size, page_token=page_token)
        response = await self.unary(
            self._stub.ListRegisteredModels, request, timeout_s=timeout_s, errors=errors
        )
        return list(response.registered_models), str(response.next_page_token)

    async def list_model_versions(
        self,
        name: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[rpb.ModelVersion], str]:
        """One page of the versions of ``name`` and the next page's token ("" on the last page).

        Raises:
            As ``errors`` maps NOT_FOUND (no such registered model) and the rest.
        """
        request = rpb.ListModelVersionsRequest(name=name, page_size=page_size, page_token=page_token)
        response = await self.unary(self._stub.ListModelVersions, request, timeout_s=timeout_s, errors=errors)
        return list(response.model_versions), str(response.next_page_token)

    async def register_model_version(
        self,
        run_id: str,
        model_name: str,
        feature_service: refs_pb2.FeatureServiceRef,
        *,
        artifact_path: str = "model",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.ModelVersion:
        """Register the MLflow run's artifact ``artifact_path`` as a new version of ``model_name``
        after the gateway's checks (role promoter).

        Raises:
            As ``errors`` maps INVALID_ARGUMENT (a missing field), NOT_FOUND (unknown run or
            artifact), FAILED_PRECONDITION (a failed registration check, named), PERMISSION_DENIED.
        """
        request = rpb.RegisterModelVersionRequest(
            run_id=run_id,
            artifact_path=artifact_path,
            registered_model_name=model_name,
            feature_service=feature_service,
            description=description,
            tags=dict(tags or {}),
        )
        response = await self.unary(
            self._stub.RegisterModelVersion, request, timeout_s=timeout_s, errors=errors
        )
        version: rpb.ModelVersion = response.model_version
        return version

    async def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.AliasChange:
        """Point ``alias`` of ``name`` at ``version`` (not ``champion``: that moves through
        :meth:`promote_model_version` or :meth:`rollback_champion`); the audited change."""
        request = rpb.SetAliasRequest(name=name, alias=alias, version=version, reason=reason)
        response = await self.unary(self._stub.SetAlias, request, timeout_s=timeout_s, errors=errors)
        change: rpb.AliasChange = response.change
        return change

    async def delete_alias(
        self,
        name: str,
        alias: str,
        *,
        reason: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.AliasChange:
        """Remove ``alias`` of ``name`` (role admin; ``reason`` required); the audited change
        (NOT_FOUND for an unset alias)."""
        request = rpb.DeleteAliasRequest(name=name, alias=alias, reason=reason)
        response = await self.unary(self._stub.DeleteAlias, request, timeout_s=timeout_s, errors=errors)
        change: rpb.AliasChange = response.change
        return change

    async def evaluate_promotion(
        self,
        name: str,
        version: int,
        *,
        alias: str = "champion",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.GateResult:
        """Run the promotion gate of ``version`` against ``alias`` without changing anything."""
        request = rpb.EvaluatePromotionRequest(name=name, version=version, alias=alias)
        response = await self.unary(self._stub.EvaluatePromotion, request, timeout_s=timeout_s, errors=errors)
        gate: rpb.GateResult = response.gate
        return gate

    async def promote_model_version(
        self,
        name: str,
        version: int,
        *,
        alias: str = "champion",
        force: bool = False,
        reason: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.PromoteModelVersionResponse:
        """Run the gate and, if it passes (or ``force``), point ``alias`` at ``version``.

        Returns:
            The gate's result, the audited alias change and the promoted version.

        Raises:
            GateRefused: The gate refused (its ``GateResult`` attached; the refusal is audited).
            As ``errors`` maps any other status (NOT_FOUND, FAILED_PRECONDITION other than the
            gate's, PERMISSION_DENIED, UNAVAILABLE...).
        """
        request = rpb.PromoteModelVersionRequest(
            name=name, version=version, alias=alias, force=force, reason=reason
        )
        try:
            response: rpb.PromoteModelVersionResponse = await self._stub.PromoteModelVersion(
                request, metadata=self.metadata, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            gate = gate_refusal(exc)
            if gate is not None:
                raise GateRefused(exc.details() or "the promotion gate refused the version", gate) from exc
            (errors or self.errors).raise_for(exc)
        return response

    async def rollback_champion(
        self,
        name: str,
        to_version: int | None = None,
        *,
        reason: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.RollbackChampionResponse:
        """Point ``champion`` back at ``to_version`` (None: the one it held before, from the audit
        trail; role admin; ``reason`` required); the change and the version now champion.

        Raises:
            As ``errors`` maps NOT_FOUND, FAILED_PRECONDITION (no previous champion),
            INVALID_ARGUMENT (empty reason) and the rest.
        """
        request = rpb.RollbackChampionRequest(name=name, reason=reason)
        if to_version is not None:
            request.to_version = to_version
        response: rpb.RollbackChampionResponse = await self.unary(
            self._stub.RollbackChampion, request, timeout_s=timeout_s, errors=errors
        )
        return response

    async def list_audit_records(
        self,
        *,
        model_name: str = "",
        actions: Sequence[rpb.AuditAction.ValueType] = (),
        actor: str = "",
        alias: str = "",
        time_range: time_range_pb2.TimeRange | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[rpb.AuditRecord], str]:
        """One page of audit records (filters: empty = no filter) and the next page's token."""
        request = rpb.ListAuditRecordsRequest(
            page_size=page_size,
            page_token=page_token,
            model_name=model_name,
            actions=list(actions),
            actor=actor,
            alias=alias,
            time_range=time_range,
        )
        response = await self.unary(self._stub.ListAuditRecords, request, timeout_s=timeout_s, errors=errors)
        return list(response.audit_records), str(response.next_page_token)

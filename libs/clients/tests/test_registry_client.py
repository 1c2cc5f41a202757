"""RegistryClient against an in-process ModelRegistryService on port 0: reads, the alias stream,
and the write side (registration, aliases, the gate, rollback, audit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_clients import DownstreamErrors, GateRefused, dependency_status, not_found
from creditrisk_clients.registry import RegistryClient
from creditrisk_kit import FailedPrecondition, NotFound, PermissionDenied, Unavailable
from google.protobuf.message import Message


class _Refused(FailedPrecondition):
    """The gateway's refusal: FAILED_PRECONDITION with the GateResult in the status details."""

    def __init__(self, gate: rpb.GateResult) -> None:
        super().__init__("promotion gate refused credit-risk/2: " + "; ".join(gate.reasons))
        self.gate = gate

    def details(self) -> list[Message]:
        return [*super().details(), self.gate]


def _gate(version: int, passed: bool) -> rpb.GateResult:
    return rpb.GateResult(
        rule="non_inferiority",
        model_name="credit-risk",
        alias="champion",
        challenger=rpb.GateScore(version=version, roc_auc=0.70 if not passed else 0.80),
        champion=rpb.GateScore(version=1, roc_auc=0.78),
        passed=passed,
        reasons=["delta -0.08 below the margin -0.02" if not passed else "delta +0.02 within the margin"],
    )


class _Registry(rpb_grpc.ModelRegistryServiceServicer):  # type: ignore[misc]
    """Model ``credit-risk`` versions 1-2, ``champion`` -> 2; records each call's authorization."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []
        self.down = False
        self.registered: list[Any] = []
        self.rollbacks: list[Any] = []

    async def GetModelVersion(self, request: Any, context: Any) -> Any:
        self.authorization.append(dict(context.invocation_metadata() or ()).get("authorization"))
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        model = request.model
        version = 2 if model.alias == "champion" else model.version
        if model.name != "credit-risk" or version not in (1, 2):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model version {model.name}/{version}")
        return rpb.GetModelVersionResponse(
            model_version=rpb.ModelVersion(name=model.name, version=version, run_id=f"run{version}")
        )

    def _promoter(self, context: Any) -> None:
        token = dict(context.invocation_metadata() or ()).get("authorization")
        self.authorization.append(token)
        if token != "Bearer promoter-token":
            raise PermissionDenied("this call needs the promoter role")

    async def RegisterModelVersion(self, request: Any, context: Any) -> Any:
        self._promoter(context)
        self.registered.append(request)
        version = rpb.ModelVersion(name=request.registered_model_name, version=3, run_id=request.run_id)
        version.tags.update(request.tags)
        return rpb.RegisterModelVersionResponse(model_version=version)

    async def ListModelVersions(self, request: Any, context: Any) -> Any:
        if request.name != "credit-risk":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"registered model {request.name!r}")
        versions = [rpb.ModelVersion(name="credit-risk", version=v) for v in (2, 1)]
        start = int(request.page_token or 0)
        end = start + (request.page_size or 50)
        return rpb.ListModelVersionsResponse(
            model_versions=versions[start:end], next_page_token=str(end) if end < len(versions) else ""
        )

    async def SetAlias(self, request: Any, context: Any) -> Any:
        self._promoter(context)
        return rpb.SetAliasResponse(
            change=rpb.AliasChange(model_name=request.name, alias=request.alias, to_version=request.version)
        )

    async def EvaluatePromotion(self, request: Any, context: Any) -> Any:
        return rpb.EvaluatePromotionResponse(gate=_gate(request.version, request.version != 2))

    async def PromoteModelVersion(self, request: Any, context: Any) -> Any:
        self._promoter(context)
        gate = _gate(request.version, request.version != 2)
        if not gate.passed and not request.force:
            raise _Refused(gate)
        if request.version == 9:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model version credit-risk/9")
        change = rpb.AliasChange(model_name=request.name, alias=request.alias, from_version=1)
        change.to_version = request.version
        return rpb.PromoteModelVersionResponse(gate=gate, change=change)

    async def RollbackChampion(self, request: Any, context: Any) -> Any:
        self.rollbacks.append(request)
        to = request.to_version if request.HasField("to_version") else 1
        change = rpb.AliasChange(model_name=request.name, alias="champion", to_version=to)
        return rpb.RollbackChampionResponse(change=change)

    async def WatchAliases(self, request: Any, context: Any) -> Any:
        self.authorization.append(dict(context.invocation_metadata() or ()).get("authorization"))
        snapshot = rpb.WatchAliasesResponse()
        snapshot.snapshot.aliases.add(model_name=request.model_names[0], alias="champion", version=2)
        yield snapshot
        change = rpb.WatchAliasesResponse()
        change.change.model_name = request.model_names[0]
        change.change.alias = "champion"
        change.change.to_version = 3
        yield change


@pytest.fixture
async def registry(serve: Any) -> AsyncIterator[tuple[_Registry, RegistryClient]]:
    servicer = _Registry()
    port = await serve(
        "creditrisk.registry.v1.ModelRegistryService",
        lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server),
    )
    client = RegistryClient.connect(f"127.0.0.1:{port}", token="viewer-token")
    yield servicer, client
    await client.close()


async def test_model_version_by_number_and_alias_with_the_bearer_token(registry: Any) -> None:
    servicer, client = registry
    assert (await client.get_model_version("credit-risk", 1)).run_id == "run1"
    assert (await client.get_model_version("credit-risk", alias="champion")).version == 2
    assert servicer.authorization == ["Bearer viewer-token"] * 2
    with pytest.raises(ValueError, match="version number"):
        await client.get_model_version("credit-risk")


async def test_errors_map_as_the_caller_says(registry: Any) -> None:
    servicer, client = registry
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await client.get_model_version("credit-risk", 9)
    assert raw.value.code() is grpc.StatusCode.NOT_FOUND
    errors = DownstreamErrors(
        "the registry-gateway", on={grpc.StatusCode.NOT_FOUND: not_found("model version", "credit-risk/9")}
    )
    with pytest.raises(NotFound) as missing:
        await client.get_model_version("credit-risk", 9, errors=errors)
    assert missing.value.name == "credit-risk/9"
    servicer.down = True
    with pytest.raises(Unavailable) as down:
        await client.get_model_version("credit-risk", 1, timeout_s=5)
    assert dependency_status(down.value) is grpc.StatusCode.UNAVAILABLE


async def test_watch_aliases_yields_the_snapshot_then_changes(registry: Any) -> None:
    servicer, client = registry
    messages = [m async for m in client.watch_aliases(["credit-risk"], ["champion"])]
    assert messages[0].snapshot.aliases[0].version == 2
    assert (messages[1].change.alias, messages[1].change.to_version) == ("champion", 3)
    assert servicer.authorization == ["Bearer viewer-token"]


@pytest.fixture
async def promoter(serve: Any) -> AsyncIterator[tuple[_Registry, RegistryClient]]:
    servicer = _Registry()
    port = await serve(
        "creditrisk.registry.v1.ModelRegistryService",
        lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server),
    )
    client = RegistryClient.connect(f"127.0.0.1:{port}", token="promoter-token")
    yield servicer, client
    await client.close()


async def test_register_sends_the_request_and_the_token(promoter: Any, registry: Any) -> None:
    servicer, client = promoter
    version = await client.register_model_version(
        "run7",
        "credit-risk",
        refs_pb2.FeatureServiceRef(name="credit_risk_v1"),
        description="nightly",
        tags={"pipelines.request_id": "job-1/register"},
    )
    assert (version.version, version.run_id, version.tags["pipelines.request_id"]) == (
        3,
        "run7",
        "job-1/register",
    )
    sent = servicer.registered[0]
    assert (sent.artifact_path, sent.feature_service.name, sent.description) == (
        "model",
        "credit_risk_v1",
        "nightly",
    )
    assert servicer.authorization == ["Bearer promoter-token"]
    _, viewer = registry
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await viewer.register_model_version("run7", "credit-risk", refs_pb2.FeatureServiceRef(name="x"))
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_list_versions_pages_and_set_alias(promoter: Any) -> None:
    _servicer, client = promoter
    page, token = await client.list_model_versions("credit-risk", page_size=1)
    assert [v.version for v in page] == [2]
    assert token == "1"
    rest, token = await client.list_model_versions("credit-risk", page_size=1, page_token=token)
    assert [v.version for v in rest] == [1]
    assert token == ""
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await client.list_model_versions("other")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    change = await client.set_alias("credit-risk", "challenger", 2, reason="shadow")
    assert (change.alias, change.to_version) == ("challenger", 2)


async def test_a_refusal_by_the_gate_is_gate_refused_with_its_result(promoter: Any) -> None:
    _servicer, client = promoter
    assert not (await client.evaluate_promotion("credit-risk", 2)).passed
    with pytest.raises(GateRefused) as refused:
        await client.promote_model_version("credit-risk", 2, reason="nightly")
    gate = refused.value.gate
    assert (gate.passed, gate.challenger.version) == (False, 2)
    assert gate.reasons == ["delta -0.08 below the margin -0.02"]
    assert "promotion gate refused" in refused.value.message
    assert dependency_status(refused.value) is grpc.StatusCode.FAILED_PRECONDITION
    # Re-raised by a service: its own FAILED_PRECONDITION, the same GateResult in the details.
    assert refused.value.grpc_status_code() is grpc.StatusCode.FAILED_PRECONDITION
    assert gate in refused.value.details()
    assert [v.subject for v in refused.value.violations] == ["credit-risk/2"]
    promoted = await client.promote_model_version("credit-risk", 2, force=True, reason="override")
    assert promoted.change.to_version == 2
    ok = await client.promote_model_version("credit-risk", 3)
    assert (ok.gate.passed, ok.change.from_version, ok.change.to_version) == (True, 1, 3)
    errors = DownstreamErrors(
        "the registry-gateway", on={grpc.StatusCode.NOT_FOUND: not_found("model version", "credit-risk/9")}
    )
    with pytest.raises(NotFound):  # another error is mapped as the caller says
        await client.promote_model_version("credit-risk", 9, errors=errors)


async def test_rollback_to_the_previous_or_an_explicit_version(promoter: Any) -> None:
    servicer, client = promoter
    back = await client.rollback_champion("credit-risk", reason="incident 12")
    assert back.change.to_version == 1
    assert not servicer.rollbacks[0].HasField("to_version")
    explicit = await client.rollback_champion("credit-risk", 2, reason="incident 12")
    assert explicit.change.to_version == 2
    assert servicer.rollbacks[1].to_version == 2


async def test_a_token_provider_is_read_at_each_call(serve: Any) -> None:
    servicer = _Registry()
    port = await serve(
        "creditrisk.registry.v1.ModelRegistryService",
        lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server),
    )
    current = ["first-key"]
    async with RegistryClient.connect(f"127.0.0.1:{port}", token=lambda: current[0]) as client:
        await client.get_model_version("credit-risk", 1)
        current[0] = "rotated-key"  # e.g. a CredentialSource whose file was replaced
        await client.get_model_version("credit-risk", 1)
    assert servicer.authorization == ["Bearer first-key", "Bearer rotated-key"]

"""RegistryClient against an in-process ModelRegistryService on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_clients import DownstreamErrors, dependency_status, not_found
from creditrisk_clients.registry import RegistryClient
from creditrisk_kit import NotFound, Unavailable


class _Registry(rpb_grpc.ModelRegistryServiceServicer):  # type: ignore[misc]
    """Model ``credit-risk`` versions 1-2, ``champion`` -> 2; records each call's authorization."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []
        self.down = False

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

"""The registry-gateway as its own process, with the REAL feature-service, MLflow and training-service,
called through the client package only.

The session trains one model through the training-service (``e2e_stack.trained_run``), registers
it through the gateway (checks against the feature service, digests, fast scorer) and promotes it
as the first champion: the gate scores it on the run's held-out gate window, fetched from the
feature-service, and the absolute floor passes. Then: GetModelVersion by alias ``champion``; a
second registration of the same run (same spec and seed) is refused by the gate with its figures
(equal AUC: the point estimate is not above 0); no token is UNAUTHENTICATED, a viewer promoting is
PERMISSION_DENIED.
"""

from __future__ import annotations

import time

import grpc
import pytest
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk.registry.v1 import registry_service_pb2_grpc as pb_grpc
from e2e_stack import (
    MODEL_NAME,
    PROMOTER_TOKEN,
    VIEWER_TOKEN,
    Stack,
    bearer,
    first_champion,
    register,
    stack_channel,
)
from grpc_status import rpc_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _gate_detail(error: grpc.RpcError) -> pb.GateResult:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(pb.GateResult.DESCRIPTOR):
            gate = pb.GateResult()
            detail.Unpack(gate)
            return gate
    raise AssertionError(f"no GateResult in the status details: {status}")


def test_register_and_promote_the_first_champion(stack: Stack) -> None:
    began = time.monotonic()
    champion = first_champion(stack)
    job, registered, promoted = champion["job"], champion["registered"], champion["promoted"]

    # registration: lineage, signature, threshold and digests recorded by the gateway
    assert registered.name == MODEL_NAME
    assert registered.run_id == job.result.mlflow_run_id
    assert registered.status == pb.MODEL_VERSION_STATUS_READY
    assert registered.lineage.feature_service.name == "credit_risk_v1"
    assert registered.decision_threshold == pytest.approx(job.result.decision_threshold)
    assert {c.name for c in registered.signature.inputs} >= {"credit_amount", "monthly_installment"}
    assert any(k.startswith("model/") for k in registered.artifact_digests)
    assert registered.tags["registry.fast_scorer"] == "checked"
    assert registered.registered_by == "e2e-pipeline"

    # the first champion: scored by the gateway on the gate window, the floor passes
    gate = promoted.gate
    assert gate.passed, list(gate.reasons)
    assert not gate.HasField("delta")
    assert gate.absolute_floor == pytest.approx(0.70)
    assert gate.challenger.version == registered.version
    assert gate.challenger.roc_auc >= gate.absolute_floor
    assert gate.window_row_count >= 30
    assert gate.reasons
    assert promoted.change.to_version == registered.version
    assert not promoted.change.HasField("from_version")
    assert "champion" in promoted.model_version.aliases

    with stack_channel(stack.target("registry-gateway")) as channel:
        stub = pb_grpc.ModelRegistryServiceStub(channel)
        by_alias = stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=MODEL_NAME, alias="champion")),
            metadata=bearer(VIEWER_TOKEN),
            timeout=30,
        ).model_version
        assert by_alias.version == stack.cache["champion_version"]
        assert "champion" in by_alias.aliases
        assert by_alias.run_id == job.result.mlflow_run_id
    print(
        f"registry e2e (first champion, shared with the gateway e2e): {time.monotonic() - began:.1f} s; "
        f"gate AUC "
        f"{gate.challenger.roc_auc:.4f} on {gate.window_row_count} rows (floor {gate.absolute_floor})"
    )


def test_an_equal_challenger_is_refused_with_figures(stack: Stack) -> None:
    champion = first_champion(stack)
    again = register(stack, champion["job"].result.mlflow_run_id)  # same run: same spec and seed
    assert again.version != champion["registered"].version
    with stack_channel(stack.target("registry-gateway")) as channel:
        stub = pb_grpc.ModelRegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.PromoteModelVersion(
                pb.PromoteModelVersionRequest(name=MODEL_NAME, version=again.version),
                metadata=bearer(PROMOTER_TOKEN),
                timeout=300,
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "promotion gate refused" in (refused.value.details() or "")
        gate = _gate_detail(refused.value)
        assert not gate.passed
        assert gate.delta == pytest.approx(0.0, abs=1e-12)
        assert gate.challenger.roc_auc == pytest.approx(gate.champion.roc_auc)
        assert gate.champion.version == stack.cache["champion_version"]
        assert gate.window_row_count >= 30
        # the champion did not move
        holder = stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=MODEL_NAME, alias="champion")),
            metadata=bearer(VIEWER_TOKEN),
            timeout=30,
        ).model_version
        assert holder.version == stack.cache["champion_version"]


def test_callers_need_a_token_and_the_role(stack: Stack) -> None:
    with stack_channel(stack.target("registry-gateway")) as channel:
        stub = pb_grpc.ModelRegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.ListRegisteredModels(pb.ListRegisteredModelsRequest(), timeout=30)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ListRegisteredModels(pb.ListRegisteredModelsRequest(), metadata=bearer("nope"), timeout=30)
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as viewer:
            stub.PromoteModelVersion(
                pb.PromoteModelVersionRequest(name=MODEL_NAME, version=1),
                metadata=bearer(VIEWER_TOKEN),
                timeout=30,
            )
        assert viewer.value.code() == grpc.StatusCode.PERMISSION_DENIED

"""The registry-gateway in process against real ``mlflow server`` processes, on both profiles
(embedded: SQLite MLflow backend + SQLite audit store; real: PostgreSQL for both)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import tempfile
from pathlib import Path
from typing import Any

import grpc
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ADMIN, PROMOTER, VIEWER, Stack, unique
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_testing.german_credit import german_credit_frame
from google.rpc import error_details_pb2
from grpc_status import rpc_status

FS = refs_pb2.FeatureServiceRef(name="credit_risk_v1", version="1")


async def register(stack: Stack, name: str, fixture: str, *, metadata: Any = PROMOTER) -> pb.ModelVersion:
    response = await stack.stub.RegisterModelVersion(
        pb.RegisterModelVersionRequest(
            run_id=stack.runs[fixture], artifact_path="model", registered_model_name=name, feature_service=FS
        ),
        metadata=metadata,
    )
    return response.model_version


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def details(exc: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(exc)
    assert status is not None
    out = []
    for any_detail in status.details:
        for kind in (
            pb.GateResult,
            error_details_pb2.ErrorInfo,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
            error_details_pb2.BadRequest,
        ):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                out.append(message)
    return out


def gate_of(exc: grpc.aio.AioRpcError) -> pb.GateResult:
    return next(d for d in details(exc) if isinstance(d, pb.GateResult))


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    return next(d.reason for d in details(exc) if isinstance(d, error_details_pb2.ErrorInfo))


def show(label: str, gate: pb.GateResult) -> None:
    print(f"\nGATE {label}: passed={gate.passed} rows={gate.window_row_count} " + " | ".join(gate.reasons))


# --- registration -------------------------------------------------------------------------------


async def test_register_records_lineage_digests_and_reads_back(stack: Stack) -> None:
    name = unique("credit-risk")
    mv = await register(stack, name, "good")
    assert mv.version == 1
    assert mv.status == pb.MODEL_VERSION_STATUS_READY
    assert mv.registered_by == "pipeline"
    assert mv.lineage.run_id == stack.runs["good"]
    assert mv.lineage.feature_service.name == "credit_risk_v1"
    assert mv.lineage.feature_service.version == "1"
    assert len(mv.lineage.training_dataset.digest) > 0
    assert mv.lineage.code_version
    assert mv.lineage.experiment_id
    assert 0 < mv.decision_threshold < 1
    assert "test_roc_auc" in mv.metrics
    assert "fast_scorer_max_abs_diff" in mv.metrics
    assert {"model/MLmodel", "model/model.skops", "fast_scorer/model.onnx", "fast_scorer/scorer.json"} <= set(
        mv.artifact_digests
    )
    assert mv.tags["registry.sha256.model/model.skops"] == mv.artifact_digests["model/model.skops"]
    assert mv.tags["registry.fast_scorer"] == "checked"
    assert float(mv.tags["registry.fast_scorer.max_abs_diff"]) <= float(
        mv.tags["registry.fast_scorer.tolerance"]
    )
    names = {c.name for c in mv.signature.inputs}
    assert "credit_amount" in names
    assert "personal_status_and_sex" not in names
    assert not any(c.required for c in mv.signature.inputs)
    # the digest is the file's as the model-server downloads it
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=stack.core.artifact_location(mv.source), dst_path=tmp, tracking_uri=stack.mlflow_url
        )
        digest = hashlib.sha256((Path(path) / "model.skops").read_bytes()).hexdigest()
    assert digest == mv.artifact_digests["model/model.skops"]

    got = (
        await stack.stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, version=1)), metadata=VIEWER
        )
    ).model_version
    assert got.artifact_digests == mv.artifact_digests
    await register(stack, name, "equal")
    listed = await stack.stub.ListModelVersions(
        pb.ListModelVersionsRequest(name=name, page_size=1), metadata=VIEWER
    )
    assert [v.version for v in listed.model_versions] == [2]
    assert listed.next_page_token
    rest = await stack.stub.ListModelVersions(
        pb.ListModelVersionsRequest(name=name, page_size=1, page_token=listed.next_page_token),
        metadata=VIEWER,
    )
    assert [v.version for v in rest.model_versions] == [1]
    assert not rest.next_page_token
    models = await stack.stub.ListRegisteredModels(
        pb.ListRegisteredModelsRequest(page_size=1000), metadata=VIEWER
    )
    ours = next(m for m in models.registered_models if m.name == name)
    assert ours.latest_version == 2
    audit = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, actions=[pb.AUDIT_ACTION_REGISTER]), metadata=VIEWER
    )
    assert [(r.to_version, r.actor, r.role) for r in audit.audit_records] == [
        (2, "pipeline", pb.ROLE_PROMOTER),
        (1, "pipeline", pb.ROLE_PROMOTER),
    ]


async def test_registration_checks_refuse_bad_runs(stack: Stack) -> None:
    name = unique("checks")
    exc = await failure(register(stack, name, "mismatch"))
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fast scorer" in exc.details()
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id="0" * 32, artifact_path="model", registered_model_name=name, feature_service=FS
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert "0" * 32 in exc.details()
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id=stack.runs["good"],
                artifact_path="nope",
                registered_model_name=name,
                feature_service=FS,
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in exc.details()
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id=stack.runs["good"],
                artifact_path="model",
                registered_model_name=name,
                feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_fairness_v1"),
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "lineage" in exc.details()
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                artifact_path="model", registered_model_name=name, feature_service=FS
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_id" in exc.details()


def _notebook_run(
    tracking_uri: str, *, drop: str | None, extra: str | None, signature: bool = True, rows: bool = True
) -> str:
    """A model logged by hand from a notebook (bring your own model), with lineage recorded and
    (``rows``) its training rows as ``training_set/training_rows.parquet``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = german_credit_frame(42)
    skip = {
        "applicant_id",
        "event_timestamp",
        "label_timestamp",
        "creditability",
        "personal_status_and_sex",
        "foreign_worker",
    }
    columns = [c for c in frame.columns if c not in skip and c != drop]
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in columns if c not in numeric]
    x = pd.DataFrame({c: frame[c].astype("float64") for c in numeric})
    for c in categorical:
        x[c] = frame[c].astype(object)
    if extra:
        x[extra] = 1.0
        numeric.append(extra)
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(), numeric),
                        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(x, frame["creditability"])
    sig = ModelSignature(
        inputs=Schema([ColSpec("double" if c in numeric else "string", c, required=False) for c in x.columns])
    )
    import skops.io

    trusted = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipe)))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("notebook")
    with mlflow.start_run(
        tags={"feature_service.name": "credit_risk_v1", "feature_service.version": "1"}
    ) as run:
        mlflow.log_input(mlflow.data.from_pandas(x.head(50), name="notebook-rows"), context="training")
        if rows:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "training_rows.parquet"
                x.assign(creditability=frame["creditability"]).to_parquet(path, index=False)
                mlflow.log_artifact(str(path), artifact_path="training_set")
        mlflow.sklearn.log_model(
            pipe,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=sig if signature else None,
            metadata={"decision_threshold": 0.3},
            pip_requirements=["scikit-learn==1.9.*", "skops"],
        )
    return run.info.run_id


async def test_bring_your_own_model_goes_through_the_same_checks(stack: Stack) -> None:
    name = unique("notebook")
    bad = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop="age_in_years", extra="shoe_size")
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id=bad, artifact_path="model", registered_model_name=name, feature_service=FS
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "missing_feature: age_in_years" in exc.details()
    assert "extra_input: shoe_size" in exc.details()
    nosig = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop=None, extra=None, signature=False)
    exc = await failure(
        stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id=nosig, artifact_path="model", registered_model_name=name, feature_service=FS
            ),
            metadata=PROMOTER,
        )
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no signature" in exc.details()
    good = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop=None, extra=None)
    mv = (
        await stack.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                run_id=good, artifact_path="model", registered_model_name=name, feature_service=FS
            ),
            metadata=PROMOTER,
        )
    ).model_version
    assert mv.version == 1
    assert mv.tags["registry.fast_scorer"] == "absent"
    assert "model/model.skops" in mv.artifact_digests
    assert mv.decision_threshold == pytest.approx(0.3)


# --- the gate -----------------------------------------------------------------------------------


async def test_first_champion_must_pass_the_floor(stack: Stack) -> None:
    name = unique("first")
    noise = await register(stack, name, "noise")
    good = await register(stack, name, "good")
    exc = await failure(
        stack.stub.PromoteModelVersion(
            pb.PromoteModelVersionRequest(name=name, version=noise.version), metadata=PROMOTER
        )
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "below the floor 0.7" in exc.details()
    gate = gate_of(exc)
    show(f"{stack.profile} first champion (noise)", gate)
    assert not gate.passed
    assert not gate.HasField("champion")
    assert gate.absolute_floor == pytest.approx(0.70)
    assert not gate.HasField("delta")
    assert gate.window_row_count >= 30
    response = await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=good.version), metadata=PROMOTER
    )
    show(f"{stack.profile} first champion (good)", response.gate)
    assert response.gate.passed
    assert response.gate.challenger.roc_auc >= 0.70
    assert response.change.to_version == good.version
    assert not response.change.HasField("from_version")
    assert response.model_version.aliases == ["champion"]
    refusals = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, actions=[pb.AUDIT_ACTION_REFUSE]), metadata=VIEWER
    )
    [refusal] = refusals.audit_records
    assert refusal.to_version == noise.version
    assert refusal.figures["challenger_auc"] < 0.70


async def test_equal_challenger_is_refused_point_estimate_not_above_zero(stack: Stack) -> None:
    name = unique("equal")
    good = await register(stack, name, "good")
    equal = await register(stack, name, "equal")
    await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=good.version), metadata=PROMOTER
    )
    exc = await failure(
        stack.stub.PromoteModelVersion(
            pb.PromoteModelVersionRequest(name=name, version=equal.version), metadata=PROMOTER
        )
    )
    gate = gate_of(exc)
    show(f"{stack.profile} equal", gate)
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert gate.delta == 0.0
    assert gate.ci_lower == 0.0
    assert gate.ci_upper == 0.0
    assert "point estimate +0.0000 is not above 0" in exc.details()
    assert gate.resamples >= 1000
    assert gate.confidence_level == pytest.approx(0.95)
    champion = await stack.stub.GetModelVersion(
        pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, alias="champion")), metadata=VIEWER
    )
    assert champion.model_version.version == good.version


async def test_better_challenger_promoted_after_forced_champion_then_rollback(stack: Stack) -> None:
    name = unique("better")
    noise = await register(stack, name, "noise")
    good = await register(stack, name, "good")
    force = pb.PromoteModelVersionRequest(
        name=name, version=noise.version, force=True, reason="incident drill"
    )
    exc = await failure(stack.stub.PromoteModelVersion(force, metadata=PROMOTER))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    no_reason = pb.PromoteModelVersionRequest(name=name, version=noise.version, force=True)
    exc = await failure(stack.stub.PromoteModelVersion(no_reason, metadata=ADMIN))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in exc.details()
    forced = await stack.stub.PromoteModelVersion(force, metadata=ADMIN)
    assert not forced.gate.passed
    assert forced.change.action == pb.AUDIT_ACTION_FORCE_PROMOTE
    dry = await stack.stub.EvaluatePromotion(
        pb.EvaluatePromotionRequest(name=name, version=good.version), metadata=VIEWER
    )
    promoted = await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=good.version), metadata=PROMOTER
    )
    show(f"{stack.profile} better", promoted.gate)
    assert promoted.gate.passed
    assert promoted.gate.delta > 0
    assert promoted.gate.ci_lower > -0.02
    assert promoted.gate.delta == dry.gate.delta
    assert promoted.gate.ci_lower == dry.gate.ci_lower
    assert promoted.gate.champion.version == noise.version
    assert promoted.change.from_version == noise.version
    assert promoted.change.to_version == good.version
    exc = await failure(
        stack.stub.RollbackChampion(pb.RollbackChampionRequest(name=name, reason="x"), metadata=PROMOTER)
    )
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    exc = await failure(stack.stub.RollbackChampion(pb.RollbackChampionRequest(name=name), metadata=ADMIN))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    rolled = await stack.stub.RollbackChampion(
        pb.RollbackChampionRequest(name=name, reason="bad canary"), metadata=ADMIN
    )
    assert rolled.change.from_version == good.version
    assert rolled.change.to_version == noise.version
    assert rolled.model_version.aliases == ["champion"]
    trail = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, alias="champion"), metadata=VIEWER
    )
    assert [r.action for r in trail.audit_records] == [
        pb.AUDIT_ACTION_ROLLBACK,
        pb.AUDIT_ACTION_PROMOTE,
        pb.AUDIT_ACTION_FORCE_PROMOTE,
    ]
    assert trail.audit_records[2].reason == "incident drill"
    assert trail.audit_records[2].actor == "alice"
    assert trail.audit_records[1].figures["delta"] == pytest.approx(promoted.gate.delta)
    first = unique("lonely")
    await register(stack, first, "good")
    exc = await failure(
        stack.stub.RollbackChampion(pb.RollbackChampionRequest(name=first, reason="x"), metadata=ADMIN)
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_worse_challenger_is_refused(stack: Stack) -> None:
    name = unique("worse")
    good = await register(stack, name, "good")
    noise = await register(stack, name, "noise")
    await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=good.version), metadata=PROMOTER
    )
    exc = await failure(
        stack.stub.PromoteModelVersion(
            pb.PromoteModelVersionRequest(name=name, version=noise.version), metadata=PROMOTER
        )
    )
    gate = gate_of(exc)
    show(f"{stack.profile} worse", gate)
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert gate.delta < 0
    assert gate.ci_lower < -0.02
    assert not gate.passed
    assert f"{gate.delta:+.4f}" in exc.details()
    assert gate.champion.version == good.version
    assert gate.challenger.version == noise.version


# --- aliases, not found, auth --------------------------------------------------------------------


async def test_aliases_not_found_and_immediate_reads(stack: Stack) -> None:
    name = unique("alias")
    v1 = await register(stack, name, "good")
    v2 = await register(stack, name, "equal")
    ref = refs_pb2.ModelRef(name=name, alias="challenger")
    for version in (v1.version, v2.version, v1.version):
        await stack.stub.SetAlias(
            pb.SetAliasRequest(name=name, alias="challenger", version=version), metadata=PROMOTER
        )
        got = await stack.stub.GetModelVersion(pb.GetModelVersionRequest(model=ref), metadata=VIEWER)
        assert got.model_version.version == version
    exc = await failure(
        stack.stub.SetAlias(pb.SetAliasRequest(name=name, alias="champion", version=1), metadata=ADMIN)
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    exc = await failure(
        stack.stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, alias="ghost")), metadata=VIEWER
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(exc) == "ALIAS_NOT_FOUND"
    assert f"{name}@ghost" in exc.details()
    exc = await failure(
        stack.stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=f"{name}-nope", alias="champion")),
            metadata=VIEWER,
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(exc) == "MODEL_NOT_FOUND"
    assert f"{name}-nope" in exc.details()
    exc = await failure(
        stack.stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, version=99)), metadata=VIEWER
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(exc) == "VERSION_NOT_FOUND"
    exc = await failure(
        stack.stub.GetModelVersion(
            pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name)), metadata=VIEWER
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    exc = await failure(
        stack.stub.SetAlias(pb.SetAliasRequest(name=name, alias="challenger", version=99), metadata=PROMOTER)
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    delete = pb.DeleteAliasRequest(name=name, alias="challenger", reason="retired")
    exc = await failure(stack.stub.DeleteAlias(delete, metadata=PROMOTER))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    change = (await stack.stub.DeleteAlias(delete, metadata=ADMIN)).change
    assert change.from_version == v1.version
    assert not change.HasField("to_version")
    exc = await failure(stack.stub.GetModelVersion(pb.GetModelVersionRequest(model=ref), metadata=VIEWER))
    assert reason_of(exc) == "ALIAS_NOT_FOUND"
    exc = await failure(stack.stub.DeleteAlias(delete, metadata=ADMIN))
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    exc = await failure(
        stack.stub.ListModelVersions(pb.ListModelVersionsRequest(name=f"{name}-nope"), metadata=VIEWER)
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert f"{name}-nope" in exc.details()


async def test_auth_errors(stack: Stack) -> None:
    request = pb.ListRegisteredModelsRequest()
    exc = await failure(stack.stub.ListRegisteredModels(request))
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    exc = await failure(
        stack.stub.ListRegisteredModels(request, metadata=(("authorization", "Bearer wrong"),))
    )
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    exc = await failure(
        stack.stub.ListRegisteredModels(request, metadata=(("authorization", "viewer-token"),))
    )
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    exc = await failure(register(stack, unique("auth"), "good", metadata=VIEWER))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    exc = await failure(
        stack.stub.DeleteAlias(pb.DeleteAliasRequest(name="x", alias="y", reason="z"), metadata=PROMOTER)
    )
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    await stack.stub.ListRegisteredModels(request, metadata=VIEWER)


async def test_watch_aliases_snapshot_then_changes_in_order(stack: Stack) -> None:
    name = unique("watch")
    v1 = await register(stack, name, "good")
    v2 = await register(stack, name, "equal")
    await stack.stub.SetAlias(
        pb.SetAliasRequest(name=name, alias="challenger", version=v1.version), metadata=PROMOTER
    )
    call = stack.stub.WatchAliases(pb.WatchAliasesRequest(model_names=[name]), metadata=VIEWER)
    first = await call.read()
    assert [(b.alias, b.version) for b in first.snapshot.aliases] == [("challenger", v1.version)]
    await stack.stub.SetAlias(
        pb.SetAliasRequest(name=name, alias="challenger", version=v2.version), metadata=PROMOTER
    )
    await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=v1.version), metadata=PROMOTER
    )
    await stack.stub.DeleteAlias(
        pb.DeleteAliasRequest(name=name, alias="challenger", reason="done"), metadata=ADMIN
    )
    changes = [(await asyncio.wait_for(call.read(), 30)).change for _ in range(3)]
    call.cancel()
    assert [(c.alias, c.action, c.to_version if c.HasField("to_version") else None) for c in changes] == [
        ("challenger", pb.AUDIT_ACTION_SET_ALIAS, v2.version),
        ("champion", pb.AUDIT_ACTION_PROMOTE, v1.version),
        ("challenger", pb.AUDIT_ACTION_DELETE_ALIAS, None),
    ]
    sequences = [c.sequence for c in changes]
    assert sequences == sorted(sequences)
    assert sequences[0] > first.snapshot.sequence
    assert all(c.audit_record_id for c in changes)
    exc = await failure(
        stack.stub.WatchAliases(pb.WatchAliasesRequest(model_names=["no-such-model"]), metadata=VIEWER).read()
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND


async def test_fifty_parallel_registrations_and_alias_moves(stack: Stack) -> None:
    name = unique("parallel")
    await register(stack, name, "good")
    results = await asyncio.gather(*(register(stack, name, "good") for _ in range(50)))
    versions = sorted(mv.version for mv in results)
    assert versions == list(range(2, 52))
    moves = await asyncio.gather(
        *(
            stack.stub.SetAlias(
                pb.SetAliasRequest(name=name, alias="challenger", version=v), metadata=PROMOTER
            )
            for v in versions[:20]
        )
    )
    sequences = sorted(m.change.sequence for m in moves)
    assert len(set(sequences)) == 20
    last = max(moves, key=lambda m: m.change.sequence).change
    got = await stack.stub.GetModelVersion(
        pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, alias="challenger")), metadata=VIEWER
    )
    assert got.model_version.version == last.to_version
    listed = await stack.stub.ListModelVersions(
        pb.ListModelVersionsRequest(name=name, page_size=100), metadata=VIEWER
    )
    assert sorted(v.version for v in listed.model_versions) == list(range(1, 52))
    holders = [v.version for v in listed.model_versions if "challenger" in v.aliases]
    assert holders == [last.to_version]
    # each move's from_version is the previous move's to_version: the moves were serialized
    ordered = sorted((m.change for m in moves), key=lambda c: c.sequence)
    for before, after in itertools.pairwise(ordered):
        assert after.from_version == before.to_version


async def test_audit_pagination_and_filters(stack: Stack) -> None:
    name = unique("audit")
    for _ in range(3):
        await register(stack, name, "good")
    page = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, page_size=2), metadata=VIEWER
    )
    assert len(page.audit_records) == 2
    assert page.next_page_token
    rest = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, page_size=2, page_token=page.next_page_token),
        metadata=VIEWER,
    )
    assert [r.to_version for r in [*page.audit_records, *rest.audit_records]] == [3, 2, 1]
    assert all(len(r.trace_id) == 32 for r in page.audit_records)
    none = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, actor="alice"), metadata=VIEWER
    )
    assert not none.audit_records
    exc = await failure(
        stack.stub.ListAuditRecords(pb.ListAuditRecordsRequest(page_token="garbage"), metadata=VIEWER)
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    exc = await failure(
        stack.stub.ListAuditRecords(pb.ListAuditRecordsRequest(page_size=-1), metadata=VIEWER)
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_gate_bootstrap_is_seeded_and_paired() -> None:
    from registry_gateway import gate

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    a = gate.paired_bootstrap_delta(y, p, p, resamples=1000, seed=1)
    assert np.all(a == 0.0)
    better = np.where(y == 1, p + 0.3, p)
    one = gate.paired_bootstrap_delta(y, better, p, resamples=1000, seed=5)
    two = gate.paired_bootstrap_delta(y, better, p, resamples=1000, seed=5)
    assert np.array_equal(one, two)
    assert one.mean() > 0
    from sklearn.metrics import roc_auc_score

    assert gate.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))

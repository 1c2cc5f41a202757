"""The closed loop end to end: the Kubeflow pipelines under kfp.local against the real services.

Every service runs as its own process (its own stack, so that versions and aliases start from
nothing: the session stack's champion belongs to the other tests). The pipelines run in their own
environment (``pipelines/.venv/bin/python -m creditrisk_pipelines.local``: the development
environment has no kfp), as ``make demo`` runs them. The world around the platform (applicants on a
simulated clock, their outcomes later) is ``scripts/closed_loop.py``.

Fixtures whose outcome is known in advance, in order (each test needs the one before):

1. the training pipeline on the ingested data promotes the **first champion** (v1), and the
   gateway's champion slot serves it;
2. a deliberately weak challenger (one depth-1 boosting iteration, integer hyperparameters) is
   **refused** by the gate (v2), and v1 stays;
3. the monitoring pipeline on a **normal** replay raises no trigger: no retraining;
4. the monitoring pipeline on a **shifted** replay (covariate shift and a new default pattern)
   detects drift and the AUC drop, runs the training pipeline on the newer data, and the gate
   **promotes** the retrained challenger (v3), which the slot then serves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from creditrisk.common.v1 import refs_pb2, serving_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_devstack import Supervisor
from e2e_stack import (
    GATEWAY_KEY,
    MODEL_NAME,
    PROMOTER_TOKEN,
    ROOT,
    VIEWER_TOKEN,
    Stack,
    authed_channel,
    bearer,
    gateway_channel,
    stack_channel,
)

sys.path.insert(0, str(ROOT / "scripts"))
import closed_loop as world
import stack_keys

pytestmark = pytest.mark.e2e

PIPELINES_PYTHON = ROOT / "pipelines" / ".venv" / "bin" / "python"
NORMAL_START = datetime(2025, 2, 1, tzinfo=UTC)
SHIFT_START = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stack of its own: every service, the champion slot and the gateway (these two without
    waiting: the slot is ready only once a champion exists, which the first pipeline makes)."""
    if not PIPELINES_PYTHON.exists():
        pytest.fail(f"{PIPELINES_PYTHON} is missing: run `make setup` first", pytrace=False)
    workdir = tmp_path_factory.mktemp("closed-loop")
    with Supervisor(workdir / "logs") as supervisor:
        stack = Stack(supervisor, workdir)
        for name in ("feature-service", "mlflow", "training-service", "registry-gateway", "drift-service"):
            stack.target(name)
        stack.prepared.add("model-server-champion")  # its champion comes from the pipeline
        for name in ("model-server-champion", "inference-gateway"):
            stack.start(name, wait=False)
        yield {"stack": stack, "workdir": workdir, "rows": world.load_rows(), "runs": 0}


def _arguments(loop: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    targets = loop["stack"].targets
    return {
        "feature_service": targets["feature-service"],
        "training_service": targets["training-service"],
        "registry": targets["registry-gateway"],
        "inference_gateway": targets["inference-gateway"],
        "model_name": MODEL_NAME,
        "experiment_name": "credit-risk-pipelines-e2e",
        "algorithm": "hist_gradient_boosting",
        "hyperparameters_json": json.dumps({"max_iter": 100}),
        "cv_folds": 2,
        "cv_repeats": 1,
        "rollout_timeout_s": 240.0,
        **overrides,
    }


def run_pipeline(loop: dict[str, Any], pipeline: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run a pipeline with kfp.local in the pipelines' environment; its result JSON."""
    loop["runs"] += 1
    out = loop["workdir"] / f"{loop['runs']}-{pipeline}.json"
    key_file = stack_keys.key_file(loop["workdir"], "pipeline")  # written by the stack (e2e_stack)
    completed = subprocess.run(
        [
            str(PIPELINES_PYTHON),
            "-m",
            "creditrisk_pipelines.local",
            pipeline,
            "--arguments",
            json.dumps(arguments),
            "--output",
            str(out),
            "--pipeline-root",
            str(loop["workdir"] / f"kfp-{loop['runs']}"),
        ],
        cwd=ROOT / "pipelines",
        # the pipeline's key as a file, as on a cluster (a mounted Secret): kfp.local's components
        # inherit this environment; the key is no pipeline argument (kfp logs those)
        env={**os.environ, "CREDITRISK_CREDENTIAL_FILE": str(key_file)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    (loop["workdir"] / f"{loop['runs']}-{pipeline}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        pytest.fail(
            f"{pipeline} pipeline failed ({completed.returncode}):\n{completed.stderr[-4000:]}", pytrace=False
        )
    return json.loads(out.read_text())


def _task(result: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Output parameters of the task whose path ends with ``suffix`` (sub-pipeline tasks included)."""
    matches = [values for path, values in result["tasks"].items() if path.split("/")[-1] == suffix]
    assert len(matches) == 1, f"{suffix}: {sorted(result['tasks'])}"
    return matches[0]


def _champion(loop: dict[str, Any]) -> rpb.ModelVersion:
    with stack_channel(loop["stack"].targets["registry-gateway"]) as channel:
        return (
            rpb_grpc.ModelRegistryServiceStub(channel)
            .GetModelVersion(
                rpb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=MODEL_NAME, alias="champion")),
                metadata=bearer(VIEWER_TOKEN),
                timeout=30,
            )
            .model_version
        )


def _served(loop: dict[str, Any]) -> tuple[int, bool]:
    with gateway_channel(loop["stack"].targets["inference-gateway"]) as channel:
        models = ipb_grpc.InferenceServiceStub(channel).ListServingModels(
            ipb.ListServingModelsRequest(), timeout=10
        )
    (champion,) = [m for m in models.models if m.slot == serving_pb2.SERVING_SLOT_CHAMPION]
    return int(champion.model_version), champion.ready


def _audit(loop: dict[str, Any]) -> list[rpb.AuditRecord]:
    with stack_channel(loop["stack"].targets["registry-gateway"]) as channel:
        return list(
            rpb_grpc.ModelRegistryServiceStub(channel)
            .ListAuditRecords(
                rpb.ListAuditRecordsRequest(model_name=MODEL_NAME), metadata=bearer(VIEWER_TOKEN), timeout=30
            )
            .audit_records
        )


@pytest.mark.timeout(1200)
def test_training_pipeline_promotes_the_first_champion(loop: dict[str, Any]) -> None:
    result = run_pipeline(loop, "training", _arguments(loop, run_name="first-champion"))
    outputs = result["outputs"]
    assert outputs["version"] == 1
    assert outputs["promoted"] is True
    assert outputs["champion_version"] == 1
    assert "floor" in outputs["gate_reasons"]
    # each stage did its part
    assert _task(result, "materialize")["views"] >= 4
    assert _task(result, "train")["run_id"] == outputs["run_id"]
    assert _task(result, "train")["test_roc_auc"] > 0.6
    assert _task(result, "register")["Output"] == 1
    assert _task(result, "confirm-rollout")["Output"] is True
    # and the services agree: the registry's champion is the run's model, the slot serves it
    champion = _champion(loop)
    assert champion.version == 1
    assert champion.run_id == outputs["run_id"]
    assert _served(loop) == (1, True)
    loop["first_run_id"] = outputs["run_id"]


@pytest.mark.timeout(1200)
def test_a_weak_challenger_is_refused_by_the_gate(loop: dict[str, Any]) -> None:
    weak = json.dumps({"max_iter": 1, "max_depth": 1})  # one stump: far below the champion
    result = run_pipeline(loop, "training", _arguments(loop, run_name="weak", hyperparameters_json=weak))
    outputs = result["outputs"]
    assert outputs["version"] == 2
    assert outputs["promoted"] is False
    assert outputs["champion_version"] == 1
    figures = json.loads(_task(result, "promote")["figures_json"])
    assert figures["delta"] < 0
    assert outputs["gate_reasons"]
    assert _task(result, "confirm-rollout")["Output"] is True  # v1 still serves
    assert _champion(loop).version == 1
    assert _served(loop) == (1, True)
    refusal = _audit(loop)[0]
    assert refusal.action == rpb.AUDIT_ACTION_REFUSE
    assert refusal.to_version == 2
    # the integer hyperparameters reached the training-service as integers
    with authed_channel(loop["stack"].targets["training-service"]) as channel:
        job = (
            tpb_grpc.TrainingServiceStub(channel)
            .GetTrainingJob(tpb.GetTrainingJobRequest(job_id=_task(result, "train")["job_id"]), timeout=30)
            .job
        )
    params = job.spec.model.hyperparameters
    assert params["max_iter"].WhichOneof("kind") == "int64_value"
    assert params["max_iter"].int64_value == 1
    assert params["max_depth"].int64_value == 1


def _replay(loop: dict[str, Any], stream: world.Stream) -> None:
    targets = loop["stack"].targets
    assert world.push_features(targets["feature-service"], stream, PROMOTER_TOKEN) == len(stream.applicants)
    world.score(targets["inference-gateway"], stream, GATEWAY_KEY)
    assert {a.model_version for a in stream.applicants} == {1}
    assert world.wait_logged(targets["drift-service"], MODEL_NAME, stream, PROMOTER_TOKEN) == len(
        stream.applicants
    )
    written, joined = world.deliver_labels(
        targets["feature-service"], targets["drift-service"], stream, PROMOTER_TOKEN
    )
    assert written == len(stream.applicants)
    assert joined == len(stream.applicants)


def _monitoring(loop: dict[str, Any], stream: world.Stream, **overrides: Any) -> dict[str, Any]:
    arguments = _arguments(
        loop,
        drift_service=loop["stack"].targets["drift-service"],
        window_start=world.iso(stream.start),
        window_end=world.iso(stream.end),
        training_start=world.iso(stream.start),
        training_end=world.iso(stream.end),
        **overrides,
    )
    return run_pipeline(loop, "monitoring", arguments)


@pytest.mark.timeout(900)
def test_monitoring_a_normal_replay_does_not_retrain(loop: dict[str, Any]) -> None:
    stream = world.make_stream(loop["rows"], world.NORMAL, 200, NORMAL_START, 20, 100_001, seed=11)
    _replay(loop, stream)
    result = _monitoring(loop, stream)
    outputs = result["outputs"]
    assert outputs["retrain"] is False
    assert outputs["trigger_count"] == 0
    assert outputs["dataset_drift"] is False
    assert outputs["labelled"] == 200
    assert not any(path.endswith("train") for path in result["tasks"])  # the sub-pipeline never ran
    assert _champion(loop).version == 1


@pytest.mark.timeout(1500)
def test_monitoring_a_shifted_replay_retrains_and_the_gate_promotes(loop: dict[str, Any]) -> None:
    stream = world.make_stream(loop["rows"], world.SHIFTED, 300, SHIFT_START, 30, 200_001, seed=12)
    _replay(loop, stream)
    result = _monitoring(loop, stream, gate_window_days=10, run_name="retrained-after-shift")
    outputs = result["outputs"]
    assert outputs["retrain"] is True
    assert outputs["dataset_drift"] is True
    assert outputs["trigger_count"] >= 1
    assert outputs["labelled"] == 300
    assert outputs["roc_auc"] < 0.5  # the champion ranks the new defaulters as safe
    assert "dataset drift:" in outputs["trigger_reasons"]
    assert "ROC AUC" in outputs["trigger_reasons"]  # the AUC-drop policy fired too (labels arrived)
    # the training sub-pipeline ran on the newer data, and the gate promoted its model
    promote = _task(result, "promote")
    assert promote["promoted"] is True
    assert promote["champion_version"] == 3
    figures = json.loads(promote["figures_json"])
    assert figures["delta"] > 0
    assert figures["ci_lower"] > 0
    assert _task(result, "confirm-rollout")["Output"] is True
    champion = _champion(loop)
    assert champion.version == 3
    assert champion.run_id == _task(result, "train")["run_id"]
    assert _served(loop) == (3, True)
    assert _audit(loop)[0].action == rpb.AUDIT_ACTION_PROMOTE
    # a new application of the new regime is now scored by v3
    fresh = world.make_stream(
        loop["rows"], world.SHIFTED, 5, SHIFT_START.replace(month=4), 1, 300_001, seed=13
    )
    world.push_features(loop["stack"].targets["feature-service"], fresh, PROMOTER_TOKEN)
    world.score(loop["stack"].targets["inference-gateway"], fresh, GATEWAY_KEY)
    assert {a.model_version for a in fresh.applicants} == {3}


def test_the_replays_are_the_fixtures_they_claim() -> None:
    """No services: the streams' regimes as documented (a guard on the fixtures themselves)."""
    rows = world.load_rows()
    normal = world.make_stream(rows, world.NORMAL, 200, NORMAL_START, 20, 100_001, seed=11)
    shifted = world.make_stream(rows, world.SHIFTED, 300, SHIFT_START, 30, 200_001, seed=12)
    assert normal.start == NORMAL_START
    assert normal.end <= SHIFT_START
    short = [a.label for a in shifted.applicants if a.attributes["duration_in_month"] < 18]
    long = [a.label for a in shifted.applicants if a.attributes["duration_in_month"] >= 18]
    assert 0.8 < sum(short) / len(short) <= 0.95  # short loans default (10% of outcomes flipped)
    assert 0.05 <= sum(long) / len(long) < 0.2
    mean_age = sum(a.attributes["age_in_years"] for a in shifted.applicants) / 300
    assert mean_age > sum(a.attributes["age_in_years"] for a in normal.applicants) / 200 + 7
    with pytest.raises(ValueError, match="before the data's last date"):
        world.make_stream(rows, world.NORMAL, 5, datetime(2024, 6, 1, tzinfo=UTC), 1, 1, seed=0)

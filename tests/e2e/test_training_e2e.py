"""The training-service as its own process, with the REAL feature-service (embedded profile) and a
real ``mlflow server``, called through the client package only.

The stack ingests the German credit data, starts the feature-service, the MLflow tracking server
(ready on ``/health``) and ``python -m training_service`` (ready when both answer). The test starts
a training job over gRPC, watches it to SUCCEEDED, and checks through MLflow's REST API that the run
exists with its training dataset input (digest and feature-service source) and its logged model.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk.training.v1 import training_service_pb2_grpc as pb_grpc
from e2e_stack import VERIFY, Stack, authed_channel, mlflow_auth
from google.protobuf import timestamp_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def test_train_through_the_feature_service_into_mlflow(stack: Stack) -> None:
    began = time.monotonic()
    target = stack.target("training-service")
    mlflow_url = f"https://{stack.targets['mlflow']}"
    spec = pb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1", version="1"),
        label=pb.LabelSource(feature_view="credit_label", label_column="creditability"),
        application_time_range=time_range_pb2.TimeRange(
            start=_ts(datetime(2023, 1, 1, tzinfo=UTC)), end=_ts(datetime(2025, 1, 1, tzinfo=UTC))
        ),
        model=pb.ModelSpec(
            algorithm=pb.ALGORITHM_HIST_GRADIENT_BOOSTING,
            hyperparameters={"max_iter": pb.ParameterValue(int64_value=100)},
        ),
        evaluation=pb.EvaluationProtocol(cv_folds=3, cv_repeats=1),
        seed=42,
        run_name="e2e",
    )
    with authed_channel(target) as channel:  # the pipeline's key: train
        stub = pb_grpc.TrainingServiceStub(channel)
        started = stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec, request_id="e2e-1"), timeout=30)
        final = None
        for message in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=started.job_id), timeout=120):
            final = message.job
        assert final is not None
        assert final.state == pb.TRAINING_JOB_STATE_SUCCEEDED, final.error
    result = final.result
    assert result.row_counts.total == 1000  # every German credit application has a known label
    assert result.metrics["cv_roc_auc_mean"] > 0.7
    assert result.decision_threshold > 0

    reader = mlflow_auth("drift-service")  # MLflow's basic-auth app: a reader of runs and artifacts
    run = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/runs/get",
        params={"run_id": result.mlflow_run_id},
        auth=reader,
        verify=VERIFY,
    ).json()["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["hp.max_iter"] == "100"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["feature_service.name"] == "credit_risk_v1"
    assert tags["training_service.job_id"] == final.id
    (dataset_input,) = run["inputs"]["dataset_inputs"]
    assert dataset_input["dataset"]["digest"] == result.training_dataset.digest
    assert dataset_input["dataset"]["source_type"] == "feature_service"
    assert json.loads(dataset_input["dataset"]["source"])["feature_service"] == "credit_risk_v1"
    # the model (an MLflow 3 logged model, output of the run) and the training rows as Parquet
    (model_output,) = run["outputs"]["model_outputs"]
    model = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/logged-models/{model_output['model_id']}", auth=reader, verify=VERIFY
    ).json()["model"]
    assert model["info"]["name"] == "model"
    assert model["info"]["source_run_id"] == result.mlflow_run_id
    artifacts = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": result.mlflow_run_id, "path": "training_set"},
        auth=reader,
        verify=VERIFY,
    ).json()
    assert [f["path"] for f in artifacts["files"]] == ["training_set/training_rows.parquet"]
    print(f"training e2e: {time.monotonic() - began:.1f} s (stack start included)")

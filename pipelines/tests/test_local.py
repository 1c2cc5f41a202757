"""The components for real under kfp.local (SubprocessRunner, no venv): each task a subprocess of
this environment, as ``make demo`` runs them, against contract-level fakes of the services."""

from pathlib import Path

import pytest
from conftest import FakeTrainingService
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from kfp import dsl, local


@pytest.fixture
def kfp_local(tmp_path: Path, credential: str) -> Path:
    """kfp.local on ``tmp_path``, the pipeline's key file in the environment (the components'
    subprocesses inherit it)."""
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True
    )
    return tmp_path


def _train(training_service: str, hyperparameters_json: str):  # type: ignore[no-untyped-def]
    from creditrisk_pipelines import components

    return components.train(
        training_service=training_service,
        feature_service_name="credit_risk_v1",
        feature_service_version="1",
        label_view="credit_label",
        label_column="creditability",
        start="2023-01-01T00:00:00Z",
        end="2025-01-01T00:00:00Z",
        algorithm="hist_gradient_boosting",
        hyperparameters_json=hyperparameters_json,
        cv_folds=3,
        cv_repeats=1,
        test_fraction=0.2,
        gate_window_days=60,
        seed=7,
        experiment_name="e",
        run_name="r",
        pipeline_job_id="job-123",
        timeout_s=60.0,
    )


def test_an_integer_hyperparameter_reaches_the_training_service_as_an_int(  # type: ignore[no-untyped-def]
    kfp_local, serve, credential
) -> None:
    fake = FakeTrainingService()
    target = serve(lambda server: tpb_grpc.add_TrainingServiceServicer_to_server(fake, server))
    task = _train(target, '{"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 16}')
    (request,) = fake.requests
    params = request.spec.model.hyperparameters
    assert params["max_iter"].WhichOneof("kind") == "int64_value"
    assert params["max_iter"].int64_value == 100
    assert params["max_leaf_nodes"].WhichOneof("kind") == "int64_value"
    assert params["max_leaf_nodes"].int64_value == 16
    assert params["learning_rate"].WhichOneof("kind") == "double_value"
    # the other integer parameters cross kfp's parameter path as integers too
    assert request.spec.evaluation.cv_folds == 3
    assert request.spec.seed == 7
    assert request.request_id == "job-123/train"
    assert task.outputs["run_id"] == "run-abc"
    assert task.outputs["test_roc_auc"] == pytest.approx(0.77)
    assert fake.tokens == {f"Bearer {credential}"}  # read from CREDITRISK_CREDENTIAL_FILE


def test_why_hyperparameters_are_json_and_not_a_dict(kfp_local) -> None:  # type: ignore[no-untyped-def]
    """kfp passes a dict parameter as a protobuf Struct: its integers arrive as floats."""

    @dsl.component(base_image="python:3.12", install_kfp_package=False)
    def kind_of(params: dict) -> str:
        return type(params["max_iter"]).__name__

    assert kind_of(params={"max_iter": 100}).output == "float"


def test_bad_input_fails_the_task_naming_the_parameter(kfp_local, serve, capfd) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTrainingService()
    target = serve(lambda server: tpb_grpc.add_TrainingServiceServicer_to_server(fake, server))
    with pytest.raises(RuntimeError, match="train"):
        _train(target, '{"max_iter": [1]}')
    assert (
        "hyperparameters_json['max_iter'] = [1]: give a number, a string or a boolean"
        in capfd.readouterr().out
    )
    assert fake.requests == []  # nothing reached the service

"""MLflow logging against a real ``mlflow server`` started by the test: the embedded profile
(SQLite) and the real profile (PostgreSQL; fails, never skips, when it is down); the logged model
scored in the model-server's environment (numpy 1.26, protobuf 5.29) identically to 1e-12."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from creditrisk_kit.errors import FailedPrecondition
from creditrisk_products import Product
from mlflow import MlflowClient
from training_service.modelling import predict_default, to_model_input
from training_service.spec import Algorithm, ModelSpec
from training_service.tracking import PARQUET_PATH, log_training_run
from training_service.training import OOF_COLUMN, TrainingOutcome, TrainingSpec, train

MODEL_SERVER_PYTHON = Path(__file__).resolve().parents[2] / "model-server" / ".venv" / "bin" / "python"
TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def _log(outcome: TrainingOutcome, uri: str, experiment: str) -> object:
    return log_training_run(
        outcome,
        tracking_uri=uri,
        experiment_name=experiment,
        feature_service="credit_risk_v1",
        feature_service_version="1",
        run_name=f"test-{outcome.spec.model.algorithm.value.lower()}",
        tags={"test": "true"},
    )


def _check_run(uri: str, outcome: TrainingOutcome, logged: object, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logged.run_id)  # type: ignore[attr-defined]
    data = run.data
    assert data.params["algorithm"] == outcome.spec.model.algorithm.value
    assert data.params["seed"] == "7"
    assert data.params["excluded_features"] == "personal_status_and_sex,foreign_worker"
    assert (data.params["cost_false_negative"], data.params["cost_false_positive"]) == ("5.0", "1.0")
    for name in (
        "cv_roc_auc_mean",
        "cv_roc_auc_std",
        "test_roc_auc",
        "test_ks",
        "decision_threshold",
        "test_expected_cost",
        "fast_scorer_max_abs_diff",
        "fast_scorer_tolerance",
        "fairness_foreign_worker_min_approval_ratio",
    ):
        assert name in data.metrics, name
    assert data.metrics["decision_threshold"] == pytest.approx(outcome.threshold)
    assert data.tags["feature_service.name"] == "credit_risk_v1"
    assert data.tags["feature_service.version"] == "1"
    assert data.tags["algorithm"] == outcome.spec.model.algorithm.value
    assert data.tags["code_version"]
    assert data.tags["feature_policy.default"] == "true"
    # dataset input with digest and source
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.digest == logged.dataset_digest
    assert len(dataset.digest) >= 8
    assert dataset.source_type == "feature_service"
    assert json.loads(dataset.source)["feature_service"] == "credit_risk_v1"
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    # the rows as Parquet, with the out-of-fold scores
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{logged.run_id}/{PARQUET_PATH}", dst_path=str(tmp_path), tracking_uri=uri
        )
    )  # type: ignore[attr-defined]
    rows = pd.read_parquet(local)
    assert len(rows) == outcome.row_counts["train"]
    assert rows[OOF_COLUMN].to_numpy() == pytest.approx(outcome.training_rows[OOF_COLUMN].to_numpy())
    assert {"applicant_id", "event_timestamp", "creditability", "foreign_worker"} <= set(rows.columns)
    # artifacts were uploaded through the server (mlflow-artifacts:/ URI)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    # model: signature (optional doubles and strings), skops with exactly the needed trusted types
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info(logged.model_uri)  # type: ignore[attr-defined]
    inputs_schema = info.signature.inputs
    kinds = {c.name: (c.type.name, c.required) for c in inputs_schema.inputs}
    assert kinds["credit_amount"] == ("double", False)
    assert kinds["purpose"] == ("string", False)
    assert "foreign_worker" not in kinds
    flavor = info.flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    expected_trusted = {
        Algorithm.HIST_GRADIENT_BOOSTING: [TREE_PREDICTOR],
        Algorithm.LOGISTIC_REGRESSION: ["numpy.dtype"],
        Algorithm.RANDOM_FOREST: ["numpy.dtype", "sklearn.tree._tree.Tree"],
        Algorithm.SOFT_VOTING_ENSEMBLE: [
            "numpy.dtype",
            TREE_PREDICTOR,
            "sklearn.tree._tree.Tree",
            "sklearn.utils._bunch.Bunch",
        ],
    }[outcome.spec.model.algorithm]
    assert flavor["skops_trusted_types"] == expected_trusted
    model_dir = Path(
        mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=str(tmp_path / "m"), tracking_uri=uri)
    )  # type: ignore[attr-defined]
    skops_file = model_dir / "model.skops"
    assert sorted(skops.io.get_untrusted_types(file=skops_file)) == expected_trusted
    loaded = skops.io.load(skops_file, trusted=expected_trusted)
    x = to_model_input(outcome.test_rows, outcome.schema)
    assert np.array_equal(predict_default(loaded, x), predict_default(outcome.pipeline, x))
    assert info.metadata["decision_threshold"] == pytest.approx(outcome.threshold)
    assert info.metadata["positive_class"] == "bad (creditability = 1)"
    # fast scorer artifacts
    files = {f.path for f in client.list_artifacts(logged.run_id, "fast_scorer")}  # type: ignore[attr-defined]
    assert files == {"fast_scorer/model.onnx", "fast_scorer/scorer.json", "fast_scorer/onnx_scorer.py"}


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.slow  # a model logged to and read back from an MLflow server, per algorithm
def test_log_embedded(
    mlflow_embedded: str, trained: dict[Algorithm, TrainingOutcome], algorithm: Algorithm, tmp_path: Path
) -> None:
    outcome = trained[algorithm]
    logged = _log(outcome, mlflow_embedded, "training-service-test")
    _check_run(mlflow_embedded, outcome, logged, tmp_path)


@pytest.mark.real
def test_log_real_profile(
    mlflow_real: str, trained: dict[Algorithm, TrainingOutcome], tmp_path: Path
) -> None:
    outcome = trained[Algorithm.HIST_GRADIENT_BOOSTING]
    logged = _log(outcome, mlflow_real, "training-service-test-real")
    _check_run(mlflow_real, outcome, logged, tmp_path)


@pytest.mark.slow  # an MLflow server
def test_no_labelled_rows_logs_nothing(
    mlflow_embedded: str, credit_frame: pd.DataFrame, german: Product
) -> None:
    experiment = "training-service-empty"
    spec = dataclasses.replace(
        TrainingSpec.for_product(german, model=ModelSpec(Algorithm.LOGISTIC_REGRESSION)),
        application_time_range=(pd.Timestamp("2030-01-01", tz="UTC"), pd.Timestamp("2031-01-01", tz="UTC")),
    )

    def train_then_log() -> None:  # the job runner's order: train, and only then log
        outcome = train(credit_frame, spec)
        _log(outcome, mlflow_embedded, experiment)

    with pytest.raises(FailedPrecondition):
        train_then_log()
    client = MlflowClient(tracking_uri=mlflow_embedded)
    found = client.get_experiment_by_name(experiment)
    assert found is None or not client.search_runs([found.experiment_id])


CROSS_ENV_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd, mlflow, mlflow.sklearn
    uri, model_uri, rows_path, out_path = sys.argv[1:5]
    mlflow.set_tracking_uri(uri)
    x = pd.read_parquet(rows_path)
    for c in x.columns:
        if x[c].dtype != np.float64:
            x[c] = pd.Series([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                              for v in x[c].tolist()], dtype=object)
    model = mlflow.sklearn.load_model(model_uri)
    p_sklearn = model.predict_proba(x)[:, list(model.classes_).index(1)]
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    p_pyfunc = np.asarray(pyfunc.predict(x))[:, 1]
    np.save(out_path, np.stack([p_sklearn, p_pyfunc]))
    print(json.dumps({"numpy": np.__version__, "mlflow": mlflow.__version__}))
    """
)


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.slow  # a model-server environment process per algorithm
def test_cross_environment_scores_identical(
    mlflow_embedded: str,
    trained: dict[Algorithm, TrainingOutcome],
    credit_frame: pd.DataFrame,
    algorithm: Algorithm,
    tmp_path: Path,
) -> None:
    assert MODEL_SERVER_PYTHON.exists(), (
        f"model-server environment missing: {MODEL_SERVER_PYTHON} (make setup)"
    )
    outcome = trained[algorithm]
    logged = _log(outcome, mlflow_embedded, "training-service-cross-env")
    x = to_model_input(credit_frame, outcome.schema)
    rows_path = tmp_path / "rows.parquet"
    x.to_parquet(rows_path)
    here = predict_default(outcome.pipeline, x)
    out = tmp_path / "scores.npy"
    script = tmp_path / "score.py"
    script.write_text(CROSS_ENV_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    done = subprocess.run(
        [str(MODEL_SERVER_PYTHON), str(script), mlflow_embedded, logged.model_uri, str(rows_path), str(out)],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=180,
        env={**env, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    assert versions["numpy"].startswith("1.26"), versions
    there = np.load(out)
    assert there.shape == (2, 1000)
    assert np.max(np.abs(there[0] - here)) <= 1e-12
    assert np.max(np.abs(there[1] - here)) <= 1e-12
    assert sys.executable != str(MODEL_SERVER_PYTHON)

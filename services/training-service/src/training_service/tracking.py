"""MLflow logging of a training outcome against a tracking server (``mlflow server``).

One run holds: params (resolved hyperparameters, protocol, seed, policy); metrics (CV mean/std,
out-of-fold and test metrics, threshold, expected cost, approval-rate ratios, fast-scorer fidelity,
row counts); tags (feature service name and version, code version, algorithm, feature policy, gate
window); the training dataset as an MLflow dataset input (source = the feature service, digest of
the rows) and the rows themselves as Parquet (``training_set/training_rows.parquet``, with the
out-of-fold ``probability_of_default``: the drift reference); the scikit-learn model (skops
format, signature, input example, decision threshold in its metadata); the ONNX fast scorer
(``fast_scorer/``: ``model.onnx``, ``scorer.json``, ``onnx_scorer.py``).

skops trusted types: computed from the fitted pipeline with ``skops.io.get_untrusted_types`` and
checked against :data:`creditrisk_model_artifacts.TRUSTED_TYPES_ALLOWED` - the types our
pipelines need and nothing else - by :func:`creditrisk_model_artifacts.needed_trusted_types`. Any
other type fails the logging: no blanket trust; a run records exactly the types its own pipeline
needs. The logged ``fast_scorer/onnx_scorer.py`` is :mod:`creditrisk_model_artifacts.onnx_scorer`.

MLflow's fluent API keeps the active run and tracking URI per process; call
:func:`log_training_run` from one thread at a time per process.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from creditrisk_model_artifacts import FAST_SCORER_DIR, needed_trusted_types, onnx_scorer
from mlflow.data.dataset_source import DatasetSource
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from training_service.fast_scorer import TOLERANCE
from training_service.modelling import FeatureSchema, to_model_input
from training_service.training import TrainingOutcome

MODEL_NAME = "model"
PARQUET_PATH = "training_set/training_rows.parquet"


class FeatureServiceDatasetSource(DatasetSource):
    """Dataset source: a point-in-time training set of a feature service (``GetHistoricalFeatures``).

    Args:
        feature_service: the feature service's name.
        version: its version.
        start / end: application-time range (ISO 8601), may be empty.
    """

    def __init__(self, feature_service: str, version: str, start: str = "", end: str = "") -> None:
        self.feature_service = feature_service
        self.version = version
        self.start = start
        self.end = end

    @staticmethod
    def _get_source_type() -> str:
        return "feature_service"

    def load(self, **kwargs: Any) -> Any:
        raise NotImplementedError("load the rows from the run's Parquet artifact or the feature-service")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> FeatureServiceDatasetSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_service": self.feature_service,
            "version": self.version,
            "application_time_start": self.start,
            "application_time_end": self.end,
        }

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> FeatureServiceDatasetSource:
        return cls(
            source_dict["feature_service"],
            source_dict["version"],
            source_dict.get("application_time_start", ""),
            source_dict.get("application_time_end", ""),
        )


@dataclass(frozen=True)
class LoggedRun:
    """Where a training outcome was logged.

    Attributes:
        run_id / experiment_id: MLflow ids.
        model_uri: ``runs:/<run id>/model``.
        dataset_name / dataset_digest / dataset_source: the dataset input.
        trusted_types: skops trusted types recorded with the model.
    """

    run_id: str
    experiment_id: str
    model_uri: str
    dataset_name: str
    dataset_digest: str
    dataset_source: str
    trusted_types: tuple[str, ...]


def code_version() -> str:
    """The git commit of the repository (``-dirty`` when modified), else the package version."""
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return f"training-service=={metadata.version('training-service')}"


def model_signature(schema: FeatureSchema) -> ModelSignature:
    """Inputs: every feature optional, ``double`` or ``string``; output: ``predict_proba`` ``[-1, 2]``
    float64 (column 1 = P(default)). What this declares is what the model-server hands the model."""
    inputs = Schema([ColSpec(kind, name, required=False) for name, kind in schema.features])
    outputs = Schema([TensorSpec(np.dtype(np.float64), (-1, 2), "probabilities")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _iso(ts: pd.Timestamp | None) -> str:
    return "" if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def training_dataset_frame(outcome: TrainingOutcome) -> pd.DataFrame:
    """The training rows as logged: every frame column (protected attributes included for fairness
    monitoring) plus the out-of-fold ``probability_of_default``, timestamps in UTC."""
    return outcome.training_rows.copy()


def log_training_run(
    outcome: TrainingOutcome,
    *,
    tracking_uri: str,
    experiment_name: str,
    feature_service: str,
    feature_service_version: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedRun:
    """Log a training outcome as one MLflow run on the tracking server at ``tracking_uri``.

    Args:
        outcome: what :func:`training_service.training.train` returned.
        tracking_uri: e.g. ``http://127.0.0.1:5000``.
        experiment_name: created if missing.
        feature_service: the model feature service's name.
        feature_service_version: its version.
        run_name: MLflow run name (generated when None).
        tags: extra run tags.

    Returns:
        Ids and URIs of what was logged.

    Raises:
        creditrisk_model_artifacts.UntrustedModel (a ValueError): the model needs a skops type
            outside the allow-list.
        mlflow.exceptions.MlflowException: the tracking server refused or failed.
    """
    trusted = needed_trusted_types(outcome.pipeline)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment(experiment_name)
    spec = outcome.spec
    protocol = spec.evaluation
    start, end = spec.application_time_range
    run_tags = {
        "feature_service.name": feature_service,
        "feature_service.version": feature_service_version,
        "code_version": code_version(),
        "algorithm": spec.model.algorithm.value,
        "gate_window.start": _iso(outcome.gate_window.start),
        "gate_window.end": _iso(outcome.gate_window.end),
        "gate_window.first_application": _iso(outcome.gate_window.first),
        "gate_window.last_application": _iso(outcome.gate_window.last),
        "fast_scorer.tolerance": str(TOLERANCE),
        **spec.policy.as_tags(),
        **(tags or {}),
    }
    if outcome.fast_scorer is not None:
        run_tags["fast_scorer.within_tolerance"] = str(outcome.fast_scorer.max_abs_diff <= TOLERANCE).lower()
    params: dict[str, Any] = {f"hp.{k}": v for k, v in outcome.hyperparameters.items()}
    params.update(
        {
            "algorithm": spec.model.algorithm.value,
            "seed": outcome.seed,
            "cv_folds": protocol.cv_folds,
            "cv_repeats": protocol.cv_repeats,
            "test_fraction": protocol.test_fraction,
            "gate_window_days": protocol.gate_window_days,
            "application_time_start": _iso(start),
            "application_time_end": _iso(end),
            "features": ",".join(outcome.schema.names),
            "excluded_features": ",".join(spec.policy.excluded),
            "cost_false_negative": spec.costs.false_negative,
            "cost_false_positive": spec.costs.false_positive,
        }
    )
    label, positive = spec.policy.columns.label, spec.policy.columns.positive_class
    rows = training_dataset_frame(outcome)
    source = FeatureServiceDatasetSource(feature_service, feature_service_version, _iso(start), _iso(end))
    dataset = mlflow.data.from_pandas(
        rows, source=source, targets=label, name=f"{feature_service}-training", predictions=None
    )
    model_input = to_model_input(outcome.training_rows, outcome.schema)
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        mlflow.log_params(params)
        metrics = {k: v for k, v in outcome.metrics.items() if v is not None and np.isfinite(v)}
        metrics["fast_scorer_tolerance"] = TOLERANCE
        mlflow.log_metrics(metrics)
        for i, fold in enumerate(outcome.fold_metrics):
            mlflow.log_metrics({f"fold_{k}": v for k, v in fold.items()}, step=i)
        mlflow.log_input(dataset, context="training")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            parquet = tmp_path / Path(PARQUET_PATH).name
            rows.to_parquet(parquet, index=False)
            mlflow.log_artifact(str(parquet), artifact_path=str(Path(PARQUET_PATH).parent))
            (tmp_path / "fairness.json").write_text(json.dumps(outcome.fairness, indent=2, sort_keys=True))
            mlflow.log_artifact(str(tmp_path / "fairness.json"), artifact_path="evaluation")
            if outcome.fast_scorer is not None:
                scorer_dir = tmp_path / FAST_SCORER_DIR
                scorer_dir.mkdir()
                (scorer_dir / "model.onnx").write_bytes(outcome.fast_scorer.onnx_model)
                meta = {**outcome.fast_scorer.meta(), "decision_threshold": outcome.threshold}
                (scorer_dir / "scorer.json").write_text(json.dumps(meta, indent=2))
                (scorer_dir / "onnx_scorer.py").write_text(Path(onnx_scorer.__file__).read_text())
                mlflow.log_artifacts(str(scorer_dir), artifact_path=FAST_SCORER_DIR)
        mlflow.sklearn.log_model(
            outcome.pipeline,
            name=MODEL_NAME,
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=model_signature(outcome.schema),
            input_example=model_input.head(3),
            pyfunc_predict_fn="predict_proba",
            metadata={
                "decision_threshold": outcome.threshold,
                "decision_rule": "reject when probability_of_default >= decision_threshold",
                "positive_class": f"{positive} ({label} = 1)",
                "feature_service": f"{feature_service}:{feature_service_version}",
                "fast_scorer_artifact": FAST_SCORER_DIR,
            },
        )
    return LoggedRun(
        run_id=run.info.run_id,
        experiment_id=experiment.experiment_id,
        model_uri=f"runs:/{run.info.run_id}/{MODEL_NAME}",
        dataset_name=dataset.name,
        dataset_digest=dataset.digest,
        dataset_source=json.dumps(source.to_dict()),
        trusted_types=tuple(trusted),
    )

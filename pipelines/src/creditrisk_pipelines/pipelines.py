"""The two pipelines: ``training`` and ``monitoring`` (kfp v2 DSL).

training: materialize -> train (an MLflow run) -> register (the registry-gateway's checks) ->
promote through the gate (the promote role) -> confirm rollout (the gateway's champion slot serves
the champion after the gate).

monitoring: drift and performance over a window -> decide (did the drift-service's policy raise a
trigger?) -> if so, the training pipeline, as a sub-pipeline of the same run.

Every service's address is a parameter, so the same compiled YAML runs against any deployment.
The pipeline's credential is not: each component reads it from its environment when it runs
(:mod:`creditrisk_pipelines.credential`, ``CREDITRISK_CREDENTIAL_FILE`` or
``CREDITRISK_CREDENTIAL``), one identity (register, promote, write_features, train,
read_monitoring, read_registry on the gateway) never logged with the run's parameters nor stored
in its spec.
Every task that calls a service has caching off (its result depends on the services' state: a
cached drift or promotion would be stale) and retries (:data:`RETRY`) on top of the channels'
own UNAVAILABLE retries; the pure ``decide`` step is cached. kfp.local ignores both (kfp's docs):
they are checked on the compiled YAML.
"""

from typing import NamedTuple

from kfp import dsl

from creditrisk_pipelines import components as c

#: Task-level retries: attempts after the first, and the backoff (first delay, growth, cap).
RETRY = {"num_retries": 2, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "300s"}


class TrainingOutputs(NamedTuple):
    """Outputs of the training pipeline."""

    run_id: str
    version: int
    promoted: bool
    champion_version: int
    gate_reasons: str


class MonitoringOutputs(NamedTuple):
    """Outputs of the monitoring pipeline (the training sub-pipeline's are in its own tasks)."""

    retrain: bool
    dataset_drift: bool
    trigger_count: int
    trigger_reasons: str
    report_urls: str
    roc_auc: float
    labelled: int


def _service_task(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    task.set_caching_options(enable_caching=False)
    task.set_retry(**RETRY)
    return task


@dsl.pipeline(
    name="credit-risk-training",
    description="Materialize, train (MLflow run), register (checks), promote (gate), confirm rollout.",
)
def training(
    feature_service: str,
    training_service: str,
    registry: str,
    inference_gateway: str,
    model_name: str = "credit-risk",
    feature_service_name: str = "credit_risk_v1",
    feature_service_version: str = "",
    label_view: str = "credit_label",
    label_column: str = "creditability",
    materialize_start: str = "2022-01-01T00:00:00Z",
    materialize_end: str = "",
    training_start: str = "2023-01-01T00:00:00Z",
    training_end: str = "2025-01-01T00:00:00Z",
    algorithm: str = "hist_gradient_boosting",
    hyperparameters_json: str = "{}",
    cv_folds: int = 0,
    cv_repeats: int = 0,
    test_fraction: float = -1.0,
    gate_window_days: int = 0,
    seed: int = 42,
    experiment_name: str = "",
    run_name: str = "",
    training_timeout_s: float = 1800.0,
    rollout_timeout_s: float = 300.0,
    traceparent: str = "",
) -> TrainingOutputs:
    """The training pipeline. Its credential comes from the components' environment
    (:mod:`creditrisk_pipelines.credential`), never from a parameter.

    Args:
        feature_service: feature-service gRPC target (``host:port``).
        training_service: training-service gRPC target.
        registry: registry-gateway gRPC target.
        inference_gateway: inference-gateway gRPC target (rollout confirmation).
        model_name: registered model name.
        feature_service_name: Feast feature service to train on; ``feature_service_version``
            empty means the registered one.
        label_view: label feature view; ``label_column`` its label (1 = bad).
        materialize_start: ISO 8601 start of the event times to materialize.
        materialize_end: ISO 8601 end of them; empty means the run's current time.
        training_start: ISO 8601 start of the application times to train on.
        training_end: ISO 8601 end of them (exclusive).
        algorithm: ``logistic_regression``, ``hist_gradient_boosting``, ``random_forest`` or
            ``soft_voting_ensemble``.
        hyperparameters_json: JSON object of hyperparameters (``{"max_iter": 100}``: integers
            stay integers).
        cv_folds: cross-validation folds; 0 = the training-service's default (so for
            ``cv_repeats`` and ``gate_window_days``; a negative ``test_fraction`` likewise).
        seed: random seed of splits and estimator.
        experiment_name: MLflow experiment; empty = the service's default.
        run_name: MLflow run name; empty = generated.
        training_timeout_s: how long to wait for the training job, in seconds.
        rollout_timeout_s: how long to wait for the champion slot, in seconds.
        traceparent: W3C traceparent of the run's root span; empty = a trace derived from the run's
            job id (:mod:`creditrisk_pipelines.tracing`).
    """
    run = {"traceparent": traceparent, "pipeline_job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    loaded = _service_task(
        c.materialize(
            feature_service=feature_service,
            start=materialize_start,
            end=materialize_end,
            **run,
        ),
        "materialize",
    )
    trained = _service_task(
        c.train(
            training_service=training_service,
            feature_service_name=feature_service_name,
            feature_service_version=feature_service_version,
            label_view=label_view,
            label_column=label_column,
            start=training_start,
            end=training_end,
            algorithm=algorithm,
            hyperparameters_json=hyperparameters_json,
            cv_folds=cv_folds,
            cv_repeats=cv_repeats,
            test_fraction=test_fraction,
            gate_window_days=gate_window_days,
            seed=seed,
            experiment_name=experiment_name,
            run_name=run_name,
            timeout_s=training_timeout_s,
            **run,
        ),
        "train",
    ).after(loaded)
    registered = _service_task(
        c.register(
            registry=registry,
            run_id=trained.outputs["run_id"],
            model_name=model_name,
            feature_service_name=feature_service_name,
            **run,
        ),
        "register",
    )
    promoted = _service_task(
        c.promote(
            registry=registry,
            model_name=model_name,
            version=registered.output,
            **run,
        ),
        "promote",
    )
    _service_task(
        c.confirm_rollout(
            inference_gateway=inference_gateway,
            model_name=model_name,
            version=promoted.outputs["champion_version"],
            timeout_s=rollout_timeout_s,
            **run,
        ),
        "confirm-rollout",
    )
    return TrainingOutputs(
        run_id=trained.outputs["run_id"],
        version=registered.output,
        promoted=promoted.outputs["promoted"],
        champion_version=promoted.outputs["champion_version"],
        gate_reasons=promoted.outputs["reasons"],
    )


@dsl.pipeline(
    name="credit-risk-monitoring",
    description="Drift and performance of a window; the training pipeline when a trigger fired.",
)
def monitoring(
    drift_service: str,
    feature_service: str,
    training_service: str,
    registry: str,
    inference_gateway: str,
    window_start: str,
    window_end: str,
    model_version: int = 0,
    force_retrain: bool = False,
    model_name: str = "credit-risk",
    feature_service_name: str = "credit_risk_v1",
    feature_service_version: str = "",
    label_view: str = "credit_label",
    label_column: str = "creditability",
    materialize_start: str = "2022-01-01T00:00:00Z",
    materialize_end: str = "",
    training_start: str = "2023-01-01T00:00:00Z",
    training_end: str = "2025-01-01T00:00:00Z",
    algorithm: str = "hist_gradient_boosting",
    hyperparameters_json: str = "{}",
    cv_folds: int = 0,
    cv_repeats: int = 0,
    test_fraction: float = -1.0,
    gate_window_days: int = 0,
    seed: int = 42,
    experiment_name: str = "",
    run_name: str = "",
    training_timeout_s: float = 1800.0,
    rollout_timeout_s: float = 300.0,
    traceparent: str = "",
) -> MonitoringOutputs:
    """The monitoring pipeline. Its credential comes from the components' environment
    (:mod:`creditrisk_pipelines.credential`), never from a parameter.

    Args:
        drift_service: drift-service gRPC target.
        window_start: ISO 8601 start of the monitored window (prediction event times).
        window_end: ISO 8601 end of it (exclusive).
        model_version: version monitored; 0 = every version with predictions in the window.
        force_retrain: retrain even when no trigger fired.
        Others: as the training pipeline's, passed to it when it runs (``training_start`` /
            ``training_end``: the newer data to retrain on; ``traceparent``: the run's trace,
            shared by the training sub-pipeline).
    """
    run = {"traceparent": traceparent, "pipeline_job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    drift = _service_task(
        c.compute_drift(
            drift_service=drift_service,
            model_name=model_name,
            model_version=model_version,
            start=window_start,
            end=window_end,
            **run,
        ),
        "compute-drift",
    )
    performance = _service_task(
        c.compute_performance(
            drift_service=drift_service,
            model_name=model_name,
            model_version=model_version,
            start=window_start,
            end=window_end,
            **run,
        ),
        "compute-performance",
    )
    decided = c.decide(trigger_count=drift.outputs["trigger_count"], force_retrain=force_retrain)
    decided.set_display_name("decide").set_caching_options(enable_caching=True)
    decided.after(performance)
    with dsl.If(decided.output == True, name="retrain"):  # noqa: E712 - a kfp condition
        training(
            feature_service=feature_service,
            training_service=training_service,
            registry=registry,
            inference_gateway=inference_gateway,
            model_name=model_name,
            feature_service_name=feature_service_name,
            feature_service_version=feature_service_version,
            label_view=label_view,
            label_column=label_column,
            materialize_start=materialize_start,
            materialize_end=materialize_end,
            training_start=training_start,
            training_end=training_end,
            algorithm=algorithm,
            hyperparameters_json=hyperparameters_json,
            cv_folds=cv_folds,
            cv_repeats=cv_repeats,
            test_fraction=test_fraction,
            gate_window_days=gate_window_days,
            seed=seed,
            experiment_name=experiment_name,
            run_name=run_name,
            training_timeout_s=training_timeout_s,
            rollout_timeout_s=rollout_timeout_s,
            traceparent=traceparent,
        ).set_display_name("training-pipeline")
    return MonitoringOutputs(
        retrain=decided.output,
        dataset_drift=drift.outputs["dataset_drift"],
        trigger_count=drift.outputs["trigger_count"],
        trigger_reasons=drift.outputs["reasons"],
        report_urls=drift.outputs["report_urls"],
        roc_auc=performance.outputs["roc_auc"],
        labelled=performance.outputs["labelled"],
    )


#: The pipelines by the name ``make pipelines`` and the local runner use.
PIPELINES = {"training": training, "monitoring": monitoring}

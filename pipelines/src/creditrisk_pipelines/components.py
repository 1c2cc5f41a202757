"""The pipelines' lightweight Python components: each a self-contained function (imports inside)
calling one function of :mod:`creditrisk_pipelines.ops`, which holds the gRPC calls.

They run in the pipelines' image (:func:`creditrisk_pipelines.pipelines_image`, which has this
package and its locked environment installed: ``install_kfp_package=False``, so the compiled YAML
never pip-installs anything), and locally with ``kfp.local.SubprocessRunner(use_venv=False)`` in
the pipelines' own environment (``pipelines/.venv``).

No component takes the pipeline's credential as a parameter (kfp logs, passes on the command line
and stores every parameter): each one that calls a service reads it from its environment when it
runs (:func:`creditrisk_pipelines.credential.pipeline_credential`: ``CREDITRISK_CREDENTIAL_FILE``
or ``CREDITRISK_CREDENTIAL``) and fails naming both when neither is set.

No ``from __future__ import annotations`` here: kfp reads the annotations as types.
"""

from typing import NamedTuple

from kfp import dsl

from creditrisk_pipelines import pipelines_image

IMAGE = pipelines_image()


def _component(func):  # type: ignore[no-untyped-def]
    return dsl.component(base_image=IMAGE, install_kfp_package=False)(func)


@_component
def materialize(
    feature_service: str, start: str, end: str, pipeline_job_id: str, traceparent: str = ""
) -> NamedTuple("MaterializeOutputs", views=int, rows_written=int):
    """Materialize every online feature view over event times ``[start, end)`` (ISO 8601; an empty
    ``end`` means now), as the pipeline's identity (write_features; the credential from the
    environment). Outputs: the number of views and rows written."""
    from collections import namedtuple
    from datetime import UTC, datetime

    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    until = end or datetime.now(UTC).isoformat()
    with component_span("materialize", traceparent, pipeline_job_id):
        summary = ops.materialize(feature_service, start, until, token=token)
    print(f"materialized {summary['views']} in {summary['seconds']} s")
    return namedtuple("MaterializeOutputs", ["views", "rows_written"])(
        len(summary["views"]), int(summary["rows_written"])
    )


@_component
def train(
    training_service: str,
    feature_service_name: str,
    feature_service_version: str,
    label_view: str,
    label_column: str,
    start: str,
    end: str,
    algorithm: str,
    hyperparameters_json: str,
    cv_folds: int,
    cv_repeats: int,
    test_fraction: float,
    gate_window_days: int,
    seed: int,
    experiment_name: str,
    run_name: str,
    pipeline_job_id: str,
    timeout_s: float,
    traceparent: str = "",
) -> NamedTuple("TrainOutputs", run_id=str, job_id=str, model_uri=str, test_roc_auc=float, metrics_json=str):
    """Train through the training-service (StartTrainingJob, then watch it to its end) as the
    pipeline's identity (train; the credential from the environment): an MLflow run, not a
    registered model. Idempotent per pipeline job (request id ``<job id>/train``)."""
    import json
    from collections import namedtuple

    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    request = ops.TrainingRequest(
        feature_service_name=feature_service_name,
        feature_service_version=feature_service_version,
        label_view=label_view,
        label_column=label_column,
        start=start,
        end=end,
        algorithm=algorithm,
        hyperparameters_json=hyperparameters_json,
        cv_folds=cv_folds,
        cv_repeats=cv_repeats,
        test_fraction=test_fraction,
        gate_window_days=gate_window_days,
        seed=seed,
        experiment_name=experiment_name,
        run_name=run_name,
        tags={"pipelines.job_id": pipeline_job_id},
    )
    with component_span("train", traceparent, pipeline_job_id):
        outcome = ops.train(training_service, request, f"{pipeline_job_id}/train", timeout_s, token=token)
    print(f"job {outcome.job_id}: run {outcome.run_id}, test ROC AUC {outcome.metrics.get('test_roc_auc')}")
    return namedtuple("TrainOutputs", ["run_id", "job_id", "model_uri", "test_roc_auc", "metrics_json"])(
        outcome.run_id,
        outcome.job_id,
        outcome.model_uri,
        float(outcome.metrics.get("test_roc_auc", -1.0)),
        json.dumps(outcome.metrics, sort_keys=True),
    )


@_component
def register(
    registry: str,
    run_id: str,
    model_name: str,
    feature_service_name: str,
    pipeline_job_id: str,
    traceparent: str = "",
) -> int:
    """Register the run's model through the registry-gateway (its checks) as the pipeline's
    identity (register; the credential from the environment); returns the version. Idempotent per
    pipeline job (version tag ``pipelines.request_id``)."""
    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    with component_span("register", traceparent, pipeline_job_id):
        version = ops.register(
            registry, token, run_id, model_name, feature_service_name, f"{pipeline_job_id}/register"
        )
    print(f"registered {model_name} v{version} from run {run_id}")
    return version


@_component
def promote(
    registry: str,
    model_name: str,
    version: int,
    pipeline_job_id: str,
    traceparent: str = "",
) -> NamedTuple("PromoteOutputs", promoted=bool, champion_version=int, reasons=str, figures_json=str):
    """Promote ``version`` to champion through the registry-gateway's gate (promote role; the
    credential from the environment). A refusal is an outcome (``promoted`` False, the gate's
    reasons), not a failure."""
    import json
    from collections import namedtuple

    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    with component_span("promote", traceparent, pipeline_job_id):
        outcome = ops.promote(registry, token, model_name, version)
    verdict = "PROMOTED" if outcome.promoted else "REFUSED"
    print(f"{model_name} v{version}: {verdict}; champion v{outcome.champion_version}")
    for reason in outcome.reasons:
        print(f"  {reason}")
    return namedtuple("PromoteOutputs", ["promoted", "champion_version", "reasons", "figures_json"])(
        outcome.promoted,
        outcome.champion_version,
        "\n".join(outcome.reasons),
        json.dumps(outcome.figures, sort_keys=True),
    )


@_component
def confirm_rollout(
    inference_gateway: str,
    model_name: str,
    version: int,
    timeout_s: float,
    pipeline_job_id: str,
    traceparent: str = "",
) -> bool:
    """Wait until the inference-gateway's champion slot serves ``version`` and is ready (fails
    after ``timeout_s``), asking as the pipeline's identity (read_registry on the gateway; the
    credential from the environment); ``version`` 0 (no champion) confirms nothing and returns
    False."""
    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    with component_span("confirm-rollout", traceparent, pipeline_job_id):
        result = ops.confirm_rollout(inference_gateway, model_name, version, timeout_s, token=token)
    print(f"champion slot: {result}")
    return bool(result["confirmed"])


@_component
def compute_drift(
    drift_service: str,
    model_name: str,
    model_version: int,
    start: str,
    end: str,
    pipeline_job_id: str,
    traceparent: str = "",
) -> NamedTuple(
    "DriftOutputs",
    dataset_drift=bool,
    drift_share=float,
    trigger_count=int,
    reasons=str,
    report_urls=str,
    rows=int,
):
    """Data and prediction drift of the window ``[start, end)`` (drift-service ComputeDrift
    against each version's training dataset; ``model_version`` 0 = every version), as the
    pipeline's identity (read_monitoring; the credential from the environment)."""
    from collections import namedtuple

    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    with component_span("compute-drift", traceparent, pipeline_job_id):
        drift = ops.compute_drift(drift_service, model_name, model_version, start, end, token=token)
    print(f"drift: {drift}")
    return namedtuple(
        "DriftOutputs", ["dataset_drift", "drift_share", "trigger_count", "reasons", "report_urls", "rows"]
    )(
        drift["dataset_drift"],
        float(drift["drift_share"]),
        len(drift["trigger_ids"]),
        "\n".join(drift["trigger_reasons"]),
        "\n".join(drift["report_urls"]),
        int(drift["rows"]),
    )


@_component
def compute_performance(
    drift_service: str,
    model_name: str,
    model_version: int,
    start: str,
    end: str,
    pipeline_job_id: str,
    traceparent: str = "",
) -> NamedTuple("PerformanceOutputs", roc_auc=float, labelled=int, predictions=int):
    """Performance over the labelled predictions of the window (drift-service GetPerformance) as
    the pipeline's identity (read_monitoring; the credential from the environment); ``roc_auc`` is
    -1 when it could not be computed."""
    from collections import namedtuple

    from creditrisk_pipelines import ops
    from creditrisk_pipelines.credential import pipeline_credential
    from creditrisk_pipelines.tracing import component_span

    token = pipeline_credential()
    with component_span("compute-performance", traceparent, pipeline_job_id):
        performance = ops.compute_performance(
            drift_service, model_name, model_version, start, end, token=token
        )
    print(f"performance: {performance}")
    return namedtuple("PerformanceOutputs", ["roc_auc", "labelled", "predictions"])(
        float(performance["roc_auc"]), int(performance["labelled"]), int(performance["predictions"])
    )


@_component
def decide(trigger_count: int, force_retrain: bool) -> bool:
    """Retrain iff the drift-service's policy raised a trigger event (or ``force_retrain``).

    One boolean output: kfp.local (2.17) skips a ``dsl.If`` on a named output of a NamedTuple
    component (the condition never holds), while it evaluates one on a single output correctly.
    """
    from creditrisk_pipelines import ops

    retrain, reason = ops.decide(trigger_count, force_retrain)
    print(f"retrain={retrain}: {reason}")
    return retrain

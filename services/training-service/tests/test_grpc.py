"""The training-service over gRPC, in process: the server on port 0, a real ``mlflow server`` (the
``mlflow_embedded`` fixture) and a contract-level TEST DOUBLE of the feature-service
(:class:`creditrisk_testing.feature_store.FakeFeatureStoreService`, also on port 0)
serving the German credit test frame through ``GetHistoricalFeatures`` with labelled entities."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pandas as pd
import pytest
from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk.training.v1 import training_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, ServiceSettings, aio_channel, wait_until_serving
from creditrisk_products import Product
from creditrisk_testing.feature_store import FakeFeatureStoreService
from creditrisk_testing.feature_store import register as register_fake
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mlflow import MlflowClient
from training_service import readiness
from training_service.convert import Defaults
from training_service.jobs import TrainingJobs
from training_service.servicer import SERVICE_NAME, register
from training_service.training_set import TrainingSetSource

pytestmark = pytest.mark.timeout(120)
HGB = pb.ALGORITHM_HIST_GRADIENT_BOOSTING
LR = pb.ALGORITHM_LOGISTIC_REGRESSION
TERMINAL = {pb.TRAINING_JOB_STATE_SUCCEEDED, pb.TRAINING_JOB_STATE_FAILED, pb.TRAINING_JOB_STATE_CANCELLED}


def _ts(year: int, month: int = 1, day: int = 1) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(datetime(year, month, day, tzinfo=UTC))
    return out


def make_spec(
    algorithm: int = HGB,
    hyperparameters: dict[str, pb.ParameterValue] | None = None,
    *,
    start: int = 2023,
    end: int = 2025,
    folds: int = 3,
    repeats: int = 1,
    version: str = "1",
    feature_service: str = "credit_risk_v1",
) -> pb.TrainingJobSpec:
    return pb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name=feature_service, version=version),
        label=pb.LabelSource(feature_view="credit_label", label_column="creditability"),
        application_time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
        model=pb.ModelSpec(algorithm=algorithm, hyperparameters=hyperparameters or {}),
        evaluation=pb.EvaluationProtocol(
            cv_folds=folds, cv_repeats=repeats, test_fraction=0.2, gate_window_days=60
        ),
        seed=7,
    )


@dataclass
class Service:
    stub: pb_grpc.TrainingServiceStub
    channel: grpc.aio.Channel
    jobs: TrainingJobs
    fake: FakeFeatureStoreService
    tracking_uri: str
    experiment: str

    async def watch(self, job_id: str) -> list[pb.TrainingJob]:
        return [
            m.job
            async for m in self.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id), timeout=90)
        ]

    async def wait_for(self, job_id: str, predicate: object) -> pb.TrainingJob:
        async for message in self.stub.WatchTrainingJob(
            pb.WatchTrainingJobRequest(job_id=job_id), timeout=60
        ):
            if predicate(message.job):  # type: ignore[operator]
                return message.job
        raise AssertionError("the stream ended first")


def _settings() -> ServiceSettings:
    return ServiceSettings(host="127.0.0.1", port=0, health_check_interval_s=0.2, grace_period_s=1)


@pytest.fixture
async def service(
    credit_frame: pd.DataFrame, mlflow_embedded: str, german: Product
) -> AsyncIterator[Service]:
    fake = FakeFeatureStoreService(credit_frame)
    fake_runner = ServiceRunner(
        _settings(),
        service_names=["creditrisk.feature.v1.FeatureStoreService"],
        register=register_fake(fake),
        instrument=False,
    )
    fs_port = await fake_runner.start()
    fs_channel = aio_channel(f"127.0.0.1:{fs_port}", instrument=False)
    experiment = f"test-grpc-{uuid.uuid4().hex[:8]}"
    jobs = TrainingJobs(
        TrainingSetSource(fs_channel),
        product=german,
        tracking_uri=mlflow_embedded,
        defaults=Defaults(experiment_name=experiment),
        max_concurrent_jobs=1,
    )
    runner = ServiceRunner(
        _settings(),
        service_names=[SERVICE_NAME],
        register=register(jobs),
        readiness_checks={
            "mlflow": lambda: readiness.mlflow_ready(mlflow_embedded),
            "feature-service": lambda: readiness.feature_service_ready(fs_channel),
        },
        instrument=False,
    )
    port = await runner.start()
    channel = aio_channel(f"127.0.0.1:{port}", instrument=False)
    await wait_until_serving(channel, SERVICE_NAME, timeout_s=10)
    try:
        yield Service(pb_grpc.TrainingServiceStub(channel), channel, jobs, fake, mlflow_embedded, experiment)
    finally:
        jobs.begin_shutdown(0)
        await runner.stop()
        await jobs.close(timeout_s=10)
        await channel.close()
        await fs_channel.close()
        await fake_runner.stop()


def _bad_request_fields(exc: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(exc)
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields |= {v.field for v in bad.field_violations}
    return fields


@pytest.mark.slow  # an MLflow server
async def test_start_watch_succeeds_with_mlflow_run(service: Service, credit_frame: pd.DataFrame) -> None:
    spec = make_spec(
        HGB,
        {"max_iter": pb.ParameterValue(int64_value=40), "learning_rate": pb.ParameterValue(double_value=0.1)},
    )
    started = await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
    assert started.job_id
    assert started.job.id == started.job_id
    assert started.job.state in (pb.TRAINING_JOB_STATE_QUEUED, pb.TRAINING_JOB_STATE_RUNNING)
    # the echoed spec: defaults resolved, the int hyperparameter still an int (issue 9)
    echoed = started.job.spec
    assert echoed.feature_service.version == "1"
    assert echoed.model.hyperparameters["max_iter"].WhichOneof("kind") == "int64_value"
    assert echoed.model.hyperparameters["max_iter"].int64_value == 40
    assert echoed.model.hyperparameters["max_leaf_nodes"].int64_value == 8
    assert echoed.model.hyperparameters["learning_rate"].double_value == 0.1
    assert echoed.experiment_name == service.experiment
    assert list(echoed.excluded_features.features) == ["personal_status_and_sex", "foreign_worker"]

    snapshots = await service.watch(started.job_id)
    final = snapshots[-1]
    assert final.state == pb.TRAINING_JOB_STATE_SUCCEEDED, final.error
    assert final.progress == 1.0
    assert all(s.state not in TERMINAL for s in snapshots[:-1])
    progress = [s.progress for s in snapshots]
    assert progress == sorted(progress)
    stages = {s.stage for s in snapshots}
    assert {pb.TRAINING_STAGE_FITTING, pb.TRAINING_STAGE_LOGGING} <= stages
    assert any(s.message.startswith("repeat 1, fold") for s in snapshots)

    result = final.result
    assert result.mlflow_run_id
    assert result.model_uri == f"runs:/{result.mlflow_run_id}/model"
    for name in (
        "cv_roc_auc_mean",
        "cv_roc_auc_std",
        "test_roc_auc",
        "test_ks",
        "test_brier",
        "test_expected_cost",
    ):
        assert name in result.metrics, name
    assert 0.6 < result.metrics["cv_roc_auc_mean"] < 1.0
    assert 0.0 < result.decision_threshold < 1.0
    assert result.row_counts.total == len(credit_frame)
    assert result.row_counts.train + result.row_counts.test + result.row_counts.gate_window == len(
        credit_frame
    )
    assert result.HasField("fast_scorer_max_abs_diff")
    assert result.fast_scorer_max_abs_diff <= 1e-6
    assert result.training_dataset.digest

    # the training set came from GetHistoricalFeatures with labelled entities, cut off at creation
    model_query, fairness_query = service.fake.queries
    assert model_query.feature_service == "credit_risk_v1"
    assert model_query.feature_service_version == "1"
    assert fairness_query.feature_service == "credit_risk_fairness_v1"
    labelled = model_query.labelled_entities
    assert labelled.label_view == "credit_label"
    assert labelled.labels_known_at == final.create_time
    assert labelled.application_time_range == spec.application_time_range

    run = MlflowClient(tracking_uri=service.tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.params["hp.max_iter"] == "40"
    assert run.data.params["seed"] == "7"
    assert run.data.tags["training_service.job_id"] == final.id
    assert run.data.tags["product"] == "german_credit"
    assert run.data.tags["feature_service.version"] == "1"
    assert run.data.metrics["cv_roc_auc_mean"] == pytest.approx(result.metrics["cv_roc_auc_mean"])
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [result.training_dataset.digest]

    got = await service.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=final.id))
    assert got.job == final


async def test_hyperparameter_errors_name_every_field_and_create_no_job(service: Service) -> None:
    spec = make_spec(
        LR,
        {
            "C": pb.ParameterValue(double_value=-1.0),
            "max_iter": pb.ParameterValue(string_value="many"),
            "fit_intercept": pb.ParameterValue(int64_value=1),
            "gamma": pb.ParameterValue(double_value=1.0),
        },
    )
    spec.evaluation.cv_folds = 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request_fields(caught.value) == {
        "spec.model.hyperparameters.C",
        "spec.model.hyperparameters.max_iter",
        "spec.model.hyperparameters.fit_intercept",
        "spec.model.hyperparameters.gamma",
        "spec.evaluation.cv_folds",
    }
    listed = await service.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
    assert list(listed.jobs) == []
    assert service.fake.queries == []


async def test_random_forest_hyperparameter_errors_name_every_field(service: Service) -> None:
    spec = make_spec(
        pb.ALGORITHM_RANDOM_FOREST,
        {
            "n_estimators": pb.ParameterValue(double_value=10.5),
            "max_features": pb.ParameterValue(double_value=1.5),
            "class_weight": pb.ParameterValue(string_value="heavy"),
        },
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request_fields(caught.value) == {
        "spec.model.hyperparameters.n_estimators",
        "spec.model.hyperparameters.max_features",
        "spec.model.hyperparameters.class_weight",
    }
    listed = await service.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
    assert list(listed.jobs) == []


async def test_unknown_feature_service_version_label_view_and_unavailable(service: Service) -> None:
    cases = [
        (make_spec(feature_service="credit_risk_v9"), grpc.StatusCode.NOT_FOUND, "credit_risk_v9"),
        (make_spec(version="2"), grpc.StatusCode.NOT_FOUND, "credit_risk_v1:2"),
    ]
    bad_label = make_spec()
    bad_label.label.feature_view = "no_such_labels"
    cases.append((bad_label, grpc.StatusCode.NOT_FOUND, "no_such_labels"))
    for spec, code, named in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
        assert caught.value.code() == code
        assert named in (caught.value.details() or "")
    service.fake.unavailable = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=make_spec()))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_empty_range_fails_precondition_and_logs_nothing(service: Service) -> None:
    started = await service.stub.StartTrainingJob(
        pb.StartTrainingJobRequest(spec=make_spec(start=2019, end=2020))
    )
    final = (await service.watch(started.job_id))[-1]
    assert final.state == pb.TRAINING_JOB_STATE_FAILED
    assert final.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "no labelled rows" in final.error.message
    assert "Traceback" not in final.error.message
    assert not final.HasField("result")
    client = MlflowClient(tracking_uri=service.tracking_uri)
    experiment = client.get_experiment_by_name(service.experiment)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
    assert len(service.fake.queries) == 1  # no fairness query for an empty training set


async def test_cancel_running_and_queued_jobs_and_idempotent_request_id(service: Service) -> None:
    long = make_spec(LR, {"max_iter": pb.ParameterValue(int64_value=200)}, folds=10, repeats=20)
    running = await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=long))
    queued_spec = make_spec(LR)
    queued = await service.stub.StartTrainingJob(
        pb.StartTrainingJobRequest(spec=queued_spec, request_id="req-1")
    )
    # idempotent: same request id and spec -> the same job; another spec -> ALREADY_EXISTS
    again = await service.stub.StartTrainingJob(
        pb.StartTrainingJobRequest(spec=queued_spec, request_id="req-1")
    )
    assert again.job_id == queued.job_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(
            pb.StartTrainingJobRequest(spec=make_spec(HGB), request_id="req-1")
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # a queued job is cancelled at once
    cancelled = await service.stub.CancelTrainingJob(
        pb.CancelTrainingJobRequest(job_id=queued.job_id, reason="test")
    )
    assert cancelled.job.state == pb.TRAINING_JOB_STATE_CANCELLED
    assert not cancelled.job.HasField("start_time")

    # a running job stops at its next checkpoint (between folds)
    await service.wait_for(
        running.job_id, lambda j: j.stage == pb.TRAINING_STAGE_FITTING and "fold" in j.message
    )
    response = await service.stub.CancelTrainingJob(
        pb.CancelTrainingJobRequest(job_id=running.job_id, reason="test")
    )
    assert response.job.cancel_requested or response.job.state == pb.TRAINING_JOB_STATE_CANCELLED
    final = (await service.watch(running.job_id))[-1]
    assert final.state == pb.TRAINING_JOB_STATE_CANCELLED
    assert not final.cancel_requested
    assert "test" in final.message
    # cancelling a cancelled job is a no-op
    again_cancelled = await service.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=running.job_id))
    assert again_cancelled.job.state == pb.TRAINING_JOB_STATE_CANCELLED
    client = MlflowClient(tracking_uri=service.tracking_uri)
    experiment = client.get_experiment_by_name(service.experiment)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


async def test_shutdown_cancels_a_running_job_after_the_grace_period(service: Service) -> None:
    long = make_spec(LR, folds=10, repeats=20)
    running = await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=long))
    await service.wait_for(running.job_id, lambda j: j.stage == pb.TRAINING_STAGE_FITTING)
    service.jobs.begin_shutdown(0.2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=make_spec()))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    final = (await service.watch(running.job_id))[-1]
    assert final.state == pb.TRAINING_JOB_STATE_CANCELLED
    assert "shutting down" in final.message


async def test_list_is_newest_first_and_paginated(service: Service) -> None:
    ids = []
    for _ in range(5):  # empty ranges: they fail fast
        started = await service.stub.StartTrainingJob(
            pb.StartTrainingJobRequest(spec=make_spec(start=2019, end=2020))
        )
        ids.append(started.job_id)
    for job_id in ids:
        await service.watch(job_id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await service.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=2, page_token=token))
        pages += 1
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == ids[::-1]
    failed = await service.stub.ListTrainingJobs(
        pb.ListTrainingJobsRequest(state=pb.TRAINING_JOB_STATE_FAILED)
    )
    assert len(failed.jobs) == 5
    other = await service.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(experiment_name="other"))
    assert list(other.jobs) == []
    for bad in (pb.ListTrainingJobsRequest(page_size=-1), pb.ListTrainingJobsRequest(page_token="garbage!")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await service.stub.ListTrainingJobs(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_readiness_fails_without_mlflow(service: Service) -> None:
    from training_service.mlflow_server import free_port

    with pytest.raises(OSError, match="refused"):
        await readiness.mlflow_ready(f"http://127.0.0.1:{free_port()}")
    # the training-service's own health (SERVING in the fixture) is what a caller polls
    assert await readiness.feature_service_ready(service.channel) is True


async def test_soft_voting_ensemble_hyperparameter_errors_name_every_field(service: Service) -> None:
    spec = make_spec(
        pb.ALGORITHM_SOFT_VOTING_ENSEMBLE,
        {
            "rf_weight": pb.ParameterValue(double_value=0.0),
            "rf_min_samples_leaf": pb.ParameterValue(double_value=2.5),
            "max_features": pb.ParameterValue(double_value=0.5),
        },
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request_fields(caught.value) == {
        "spec.model.hyperparameters.rf_weight",
        "spec.model.hyperparameters.rf_min_samples_leaf",
        "spec.model.hyperparameters.max_features",
    }


async def test_out_of_range_timestamps_name_their_field(service: Service) -> None:
    spec = make_spec()
    spec.application_time_range.start.nanos = -1
    spec.application_time_range.end.seconds = 10**12  # beyond year 9999: ToDatetime raises
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.StartTrainingJob(pb.StartTrainingJobRequest(spec=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request_fields(caught.value) == {
        "spec.application_time_range.start.nanos",
        "spec.application_time_range.end",
    }
    request = pb.ListTrainingJobsRequest()
    request.create_time_range.start.seconds = -(10**11)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.ListTrainingJobs(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "create_time_range.start" in (caught.value.details() or "")

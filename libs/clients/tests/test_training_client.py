"""TrainingServiceClient against an in-process TrainingService on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from creditrisk.common.v1 import refs_pb2
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_clients import DownstreamErrors, TrainingServiceClient, dependency_status, not_found
from creditrisk_kit import DeadlineExceeded, NotFound, Unavailable

SPEC = tpb.TrainingJobSpec(
    feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1"),
    model=tpb.ModelSpec(algorithm=tpb.ALGORITHM_LOGISTIC_REGRESSION),
)
STATES = [tpb.TRAINING_JOB_STATE_QUEUED, tpb.TRAINING_JOB_STATE_RUNNING, tpb.TRAINING_JOB_STATE_SUCCEEDED]


class _Training(tpb_grpc.TrainingServiceServicer):  # type: ignore[misc]
    """Jobs by id; a job's watch stream walks QUEUED -> RUNNING -> SUCCEEDED. ``break_watches``
    streams break with UNAVAILABLE after their first snapshot; ``slow_s`` delays GetTrainingJob."""

    def __init__(self) -> None:
        self.jobs: dict[str, tpb.TrainingJob] = {}
        self.by_request_id: dict[str, str] = {}
        self.break_watches = 0
        self.watches = 0
        self.slow_s = 0.0
        self.stall_watch = False

    async def StartTrainingJob(self, request: Any, context: Any) -> Any:
        if not request.spec.HasField("feature_service"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec.feature_service is required")
        if request.request_id in self.by_request_id:
            job = self.jobs[self.by_request_id[request.request_id]]
        else:
            job = tpb.TrainingJob(id=f"job-{len(self.jobs) + 1}", state=STATES[0], spec=request.spec)
            job.request_id = request.request_id
            self.jobs[job.id] = job
            if request.request_id:
                self.by_request_id[request.request_id] = job.id
        return tpb.StartTrainingJobResponse(job_id=job.id, job=job)

    async def _job(self, job_id: str, context: Any) -> tpb.TrainingJob:
        if job_id not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"training job {job_id!r} not found")
        return self.jobs[job_id]

    async def GetTrainingJob(self, request: Any, context: Any) -> Any:
        await asyncio.sleep(self.slow_s)
        return tpb.GetTrainingJobResponse(job=await self._job(request.job_id, context))

    async def WatchTrainingJob(self, request: Any, context: Any) -> Any:
        job = await self._job(request.job_id, context)
        self.watches += 1
        yield tpb.WatchTrainingJobResponse(job=job)
        if self.stall_watch:
            await asyncio.sleep(30)
        if self.break_watches:
            self.break_watches -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        for state in STATES[STATES.index(job.state) + 1 :]:
            job.state = state
            job.message = tpb.TrainingJobState.Name(state)
            if state == tpb.TRAINING_JOB_STATE_SUCCEEDED:
                job.result.mlflow_run_id = "run-1"
            yield tpb.WatchTrainingJobResponse(job=job)

    async def CancelTrainingJob(self, request: Any, context: Any) -> Any:
        job = await self._job(request.job_id, context)
        if job.state == tpb.TRAINING_JOB_STATE_SUCCEEDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id} already SUCCEEDED")
        job.state, job.message = tpb.TRAINING_JOB_STATE_CANCELLED, request.reason
        return tpb.CancelTrainingJobResponse(job=job)

    async def ListTrainingJobs(self, request: Any, context: Any) -> Any:
        jobs = sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)
        if request.state:
            jobs = [j for j in jobs if j.state == request.state]
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = jobs[start : start + size]
        token = str(start + size) if start + size < len(jobs) else ""
        return tpb.ListTrainingJobsResponse(jobs=page, next_page_token=token)


@pytest.fixture
async def training(serve: Any) -> AsyncIterator[tuple[_Training, TrainingServiceClient]]:
    servicer = _Training()
    port = await serve(
        "creditrisk.training.v1.TrainingService",
        lambda server: tpb_grpc.add_TrainingServiceServicer_to_server(servicer, server),
    )
    client = TrainingServiceClient.connect(f"127.0.0.1:{port}")
    yield servicer, client
    await client.close()


async def test_start_is_idempotent_by_request_id_and_wait_follows_to_the_end(training: Any) -> None:
    _servicer, client = training
    first = await client.start_job(SPEC, "pipeline-7/train")
    again = await client.start_job(SPEC, "pipeline-7/train")
    assert first.id == again.id == "job-1"
    assert first.state == tpb.TRAINING_JOB_STATE_QUEUED
    done = await client.wait_for_job(first.id, timeout_s=10)
    assert done.state == tpb.TRAINING_JOB_STATE_SUCCEEDED
    assert done.result.mlflow_run_id == "run-1"
    assert (await client.get_job(first.id)).state == tpb.TRAINING_JOB_STATE_SUCCEEDED


async def test_wait_resumes_a_stream_broken_by_unavailable(training: Any) -> None:
    servicer, client = training
    job = await client.start_job(SPEC)
    servicer.break_watches = 2
    done = await client.wait_for_job(job.id, timeout_s=20, retry_interval_s=0.05)
    assert done.state == tpb.TRAINING_JOB_STATE_SUCCEEDED
    assert servicer.watches == 3


async def test_wait_times_out_with_the_last_snapshot(training: Any) -> None:
    servicer, client = training
    job = await client.start_job(SPEC)
    servicer.stall_watch = True
    with pytest.raises(
        TimeoutError, match=r"job-1 not finished after 0.5 s \(last: TRAINING_JOB_STATE_QUEUED"
    ):
        await client.wait_for_job(job.id, timeout_s=0.5, retry_interval_s=0.05)


async def test_errors_map_as_the_caller_says(training: Any) -> None:
    _servicer, client = training
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await client.start_job(tpb.TrainingJobSpec())
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    errors = DownstreamErrors(
        "the training-service", on={grpc.StatusCode.NOT_FOUND: not_found("training job", "job-9")}
    )
    with pytest.raises(NotFound) as missing:
        await client.get_job("job-9", errors=errors)
    assert missing.value.name == "job-9"
    with pytest.raises(NotFound):  # the stream's NOT_FOUND is not resumed
        await client.wait_for_job("job-9", timeout_s=5, errors=errors)
    job = await client.start_job(SPEC)
    await client.wait_for_job(job.id, timeout_s=10)
    with pytest.raises(grpc.aio.AioRpcError) as done:
        await client.cancel_job(job.id, "too late")
    assert done.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_deadline_becomes_deadline_exceeded(training: Any) -> None:
    servicer, client = training
    job = await client.start_job(SPEC)
    servicer.slow_s = 1.0
    with pytest.raises(DeadlineExceeded) as late:
        await client.get_job(job.id, timeout_s=0.2)
    assert dependency_status(late.value) is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_cancel_and_list_pages(training: Any) -> None:
    _servicer, client = training
    ids = [(await client.start_job(SPEC)).id for _ in range(3)]
    cancelled = await client.cancel_job(ids[0], "superseded")
    assert (cancelled.state, cancelled.message) == (tpb.TRAINING_JOB_STATE_CANCELLED, "superseded")
    page, token = await client.list_jobs(page_size=2)
    assert [j.id for j in page] == ["job-3", "job-2"]
    assert token == "2"
    rest, token = await client.list_jobs(page_size=2, page_token=token)
    assert [j.id for j in rest] == ["job-1"]
    assert token == ""
    only, _ = await client.list_jobs(state=tpb.TRAINING_JOB_STATE_CANCELLED)
    assert [j.id for j in only] == ["job-1"]


async def test_unavailable_service_is_unavailable() -> None:
    client = TrainingServiceClient.connect("127.0.0.1:1", default_timeout_s=2)
    try:
        with pytest.raises(Unavailable, match="the training-service is unavailable"):
            await client.get_job("job-1")
    finally:
        await client.close()

"""Training jobs: validated at start, run asynchronously, watched, cancelled, listed.

:class:`TrainingJobs` is the service's core; the gRPC servicer only converts messages.

* **Start** validates everything checkable without data and before any job exists: the spec
  (:func:`training_service.convert.parse_spec`: every offending field named at once, the
  product's defaults applied), then the feature service (and version) and the label view through
  the feature-service (NOT_FOUND naming them; UNAVAILABLE when it cannot be reached) and the
  excluded features against the feature service's features. A ``request_id`` makes start
  idempotent: the same id with the same spec returns the existing job, another spec ALREADY_EXISTS.
* **Run**: each job is an asyncio task; a semaphore lets ``max_concurrent_jobs`` run at once (the
  others wait QUEUED). The training set comes from the feature-service
  (:mod:`training_service.training_set`, labels known at or before the job's creation time); the
  CPU work (:func:`training_service.training.train`) and the MLflow logging
  (:func:`training_service.tracking.log_training_run`, one at a time per process) run in worker
  threads. Stages and progress: BUILDING_TRAINING_SET 0-0.05, FITTING 0.05-0.8 (one step per
  fold), EVALUATING 0.8-0.9, LOGGING 0.9-1.
* **Cancel** is cooperative: a queued job is CANCELLED at once; a running one stops at its next
  checkpoint (between folds, after the training set, before logging), with ``cancel_requested`` set
  until then. A run that already started logging finishes.
* **Failures** end the job FAILED with ``error`` (``common.v1.Error``: code, message, field
  violations), never a traceback: a range with no labelled rows is FAILED_PRECONDITION (9) and
  nothing is logged to MLflow; an unexpected exception is INTERNAL with a generic message and the
  traceback in the server log.
* **Shutdown** (:meth:`TrainingJobs.begin_shutdown` on SIGTERM): new starts are refused with
  UNAVAILABLE, queued jobs are cancelled, running ones get the grace period and are then cancelled
  (CANCELLED at their next checkpoint).

Jobs live in memory: a restart loses the job records (ids, states), never the MLflow runs; the run
id in a job's result is the durable outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from creditrisk.common.v1 import error_pb2, refs_pb2
from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk_kit import (
    FailedPrecondition,
    NotFound,
    PreconditionViolation,
    ServiceError,
    Unavailable,
)
from creditrisk_kit.pages import decode_page_token, encode_page_token, page_limit
from creditrisk_products import Product
from opentelemetry import trace

from training_service import convert
from training_service.training import Cancelled, TrainingOutcome, train
from training_service.training_set import TrainingSet, TrainingSetRequest, TrainingSetSource

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer("training_service")

TERMINAL = frozenset(
    {pb.TRAINING_JOB_STATE_SUCCEEDED, pb.TRAINING_JOB_STATE_FAILED, pb.TRAINING_JOB_STATE_CANCELLED}
)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_STAGES = {"FITTING": pb.TRAINING_STAGE_FITTING, "EVALUATING": pb.TRAINING_STAGE_EVALUATING}
#: Overall progress at the start of each stage and the share of the stage.
_PROGRESS = {"FITTING": (0.05, 0.75), "EVALUATING": (0.8, 0.1)}


class AlreadyExists(ServiceError):
    """The request id was used with another spec: ALREADY_EXISTS / 409."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


@dataclass
class Job:
    """One training job's record (mutated under :attr:`TrainingJobs._lock`)."""

    id: str
    seq: int
    request_id: str
    request_key: bytes
    spec: convert.JobSpec
    spec_pb: pb.TrainingJobSpec
    feature_service_version: str
    fairness_attributes: tuple[str, ...]
    create_time: datetime
    state: int = pb.TRAINING_JOB_STATE_QUEUED
    stage: int = pb.TRAINING_STAGE_UNSPECIFIED
    progress: float = 0.0
    message: str = "queued"
    start_time: datetime | None = None
    end_time: datetime | None = None
    update_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    result: pb.TrainingResult | None = None
    error: error_pb2.Error | None = None
    cancel_requested: bool = False
    cancel_reason: str = ""
    version: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


LogRun = Callable[..., Any]


class TrainingJobs:
    """The job runner (see the module docstring).

    Args:
        source: where training sets are read from (the feature-service calls).
        product: the product trained for (request defaults: :func:`convert.parse_spec`); its
            ``[features].fairness_service`` is read for fairness reporting ("": not read).
        tracking_uri: MLflow tracking server URL.
        defaults: server defaults of unset request fields.
        max_concurrent_jobs: jobs running at once.
        max_jobs_kept: job records kept; the oldest terminal ones are dropped beyond it.
        log_run: the MLflow logger (:func:`training_service.tracking.log_training_run`; injectable).
    """

    def __init__(
        self,
        source: TrainingSetSource,
        *,
        product: Product,
        tracking_uri: str,
        defaults: convert.Defaults | None = None,
        max_concurrent_jobs: int = 1,
        max_jobs_kept: int = 1000,
        log_run: LogRun | None = None,
    ) -> None:
        if log_run is None:
            from training_service.tracking import log_training_run

            log_run = log_training_run
        self.source = source
        self.product = product
        self.tracking_uri = tracking_uri
        self.defaults = defaults or convert.Defaults()
        self.fairness_feature_service = product.features.fairness_service
        self._slots = asyncio.Semaphore(max_concurrent_jobs)
        self._max_jobs_kept = max_jobs_kept
        self._log_run = log_run
        self._lock = threading.Lock()
        self._mlflow_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_request: dict[str, str] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # ------------------------------------------------------------------ start

    async def start(self, request: pb.StartTrainingJobRequest) -> pb.TrainingJob:
        """Validate and queue a job; returns its first snapshot (see the module docstring).

        Raises:
            InvalidArgument / NotFound / AlreadyExists / Unavailable: see the contract.
        """
        self._loop = asyncio.get_running_loop()
        if self._stopping:
            raise Unavailable("the training-service is shutting down; retry on another instance")
        key = request.spec.SerializeToString(deterministic=True)
        existing = self._existing(request.request_id, key)
        if existing is not None:
            return existing
        spec = convert.parse_spec(request.spec, self.defaults, self.product)
        info = await self.source.feature_service(spec.feature_service, spec.feature_service_version)
        await self.source.label_view(spec.label_view)
        policy = spec.training.policy
        available = set(info.features)
        fairness: tuple[str, ...] = ()
        if policy.fairness_attributes and self.fairness_feature_service:
            fairness_info = await self.source.feature_service(
                self.fairness_feature_service, field_path="fairness_feature_service"
            )
            fairness = tuple(a for a in policy.fairness_attributes if a in fairness_info.features)
            available |= set(fairness_info.features)
        policy.check_known(available, field_prefix="spec.excluded_features")
        now = datetime.now(UTC)
        with self._lock:
            again = self._existing_locked(request.request_id, key)
            if again is not None:
                return again
            self._seq += 1
            job = Job(
                id=uuid.uuid4().hex,
                seq=self._seq,
                request_id=request.request_id,
                request_key=key,
                spec=spec,
                spec_pb=convert.echo_spec(spec, info.version),
                feature_service_version=info.version,
                fairness_attributes=fairness,
                create_time=now,
                update_time=now,
            )
            self._jobs[job.id] = job
            if request.request_id:
                self._by_request[request.request_id] = job.id
            self._prune_locked()
            snapshot = self._snapshot_locked(job)
        job.task = asyncio.create_task(self._run(job), name=f"training-job-{job.id}")
        _LOGGER.info(
            "training job %s queued (%s on %s:%s)",
            job.id,
            spec.training.model.algorithm.value,
            spec.feature_service,
            info.version,
            extra={"job_id": job.id, "request_id": request.request_id},
        )
        return snapshot

    def _existing(self, request_id: str, key: bytes) -> pb.TrainingJob | None:
        with self._lock:
            return self._existing_locked(request_id, key)

    def _existing_locked(self, request_id: str, key: bytes) -> pb.TrainingJob | None:
        if not request_id or request_id not in self._by_request:
            return None
        job = self._jobs.get(self._by_request[request_id])
        if job is None:
            return None
        if job.request_key != key:
            raise AlreadyExists(f"request_id {request_id!r} was used for job {job.id} with a different spec")
        return self._snapshot_locked(job)

    def _prune_locked(self) -> None:
        excess = len(self._jobs) - self._max_jobs_kept
        if excess <= 0:
            return
        for job in sorted(self._jobs.values(), key=lambda j: j.seq):
            if excess <= 0:
                break
            if job.terminal:
                del self._jobs[job.id]
                if job.request_id:
                    self._by_request.pop(job.request_id, None)
                excess -= 1

    # ------------------------------------------------------------------ run

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if job.terminal:  # cancelled while queued
                return
            self._update(
                job,
                state=pb.TRAINING_JOB_STATE_RUNNING,
                stage=pb.TRAINING_STAGE_BUILDING_TRAINING_SET,
                progress=0.0,
                message="building the training set through the feature-service",
                start_time=datetime.now(UTC),
            )
            try:
                with _TRACER.start_as_current_span(
                    "training.job",
                    attributes={
                        "training.job_id": job.id,
                        "training.algorithm": job.spec.training.model.algorithm.value,
                        "training.feature_service": job.spec.feature_service,
                    },
                ):
                    await self._execute(job)
            except Cancelled:
                self._finish(
                    job, pb.TRAINING_JOB_STATE_CANCELLED, f"cancelled: {job.cancel_reason or 'requested'}"
                )
            except asyncio.CancelledError:
                self._finish(job, pb.TRAINING_JOB_STATE_CANCELLED, "cancelled: the service stopped")
                raise
            except Exception as exc:
                error = convert.error_message(exc)
                if error.code == grpc.StatusCode.INTERNAL.value[0]:
                    _LOGGER.exception("training job %s failed unexpectedly", job.id, extra={"job_id": job.id})
                else:
                    _LOGGER.info(
                        "training job %s failed: %s",
                        job.id,
                        error.message,
                        extra={"job_id": job.id, "grpc_code": error.code},
                    )
                self._finish(job, pb.TRAINING_JOB_STATE_FAILED, error.message, error=error)

    async def _execute(self, job: Job) -> None:
        spec = job.spec
        with _TRACER.start_as_current_span("training.build_training_set") as span:
            training_set = await self.source.training_set(
                TrainingSetRequest(
                    feature_service=spec.feature_service,
                    feature_service_version=job.feature_service_version,
                    label_view=spec.label_view,
                    label_column=spec.label_column,
                    start=spec.start,
                    end=spec.end,
                    labels_known_at=job.create_time,
                    columns=spec.training.policy.columns,
                    fairness_feature_service=self.fairness_feature_service
                    if job.fairness_attributes
                    else None,
                ),
                fairness_attributes=job.fairness_attributes,
            )
            span.set_attribute("training.rows", len(training_set.frame))
        self._check_cancel(job)
        self._update(job, stage=pb.TRAINING_STAGE_FITTING, progress=0.05, message="fitting")
        with _TRACER.start_as_current_span("training.fit"):
            outcome = await asyncio.to_thread(self._fit, job, training_set)
        self._check_cancel(job)
        self._update(job, stage=pb.TRAINING_STAGE_LOGGING, progress=0.9, message="logging the MLflow run")
        with _TRACER.start_as_current_span("training.log_run") as span:
            logged = await asyncio.to_thread(self._log, job, training_set, outcome)
            span.set_attribute("mlflow.run_id", logged.run_id)
        metrics = {k: float(v) for k, v in outcome.metrics.items() if v is not None and np.isfinite(v)}
        result = pb.TrainingResult(
            mlflow_run_id=logged.run_id,
            mlflow_experiment_id=logged.experiment_id,
            model_uri=logged.model_uri,
            metrics=metrics,
            decision_threshold=outcome.threshold,
            training_dataset=refs_pb2.DatasetRef(source=logged.dataset_source, digest=logged.dataset_digest),
            row_counts=pb.RowCounts(**outcome.row_counts),
        )
        if outcome.fast_scorer is not None:
            result.fast_scorer_max_abs_diff = outcome.fast_scorer.max_abs_diff
        self._finish(job, pb.TRAINING_JOB_STATE_SUCCEEDED, f"MLflow run {logged.run_id}", result=result)

    def _fit(self, job: Job, training_set: TrainingSet) -> TrainingOutcome:
        def progress(stage: str, fraction: float, message: str) -> None:
            base, share = _PROGRESS.get(stage, (0.05, 0.75))
            self._update(
                job,
                stage=_STAGES.get(stage, pb.TRAINING_STAGE_FITTING),
                progress=round(base + share * min(max(fraction, 0.0), 1.0), 4),
                message=message,
            )

        return train(
            training_set.frame,
            job.spec.training,
            progress=progress,
            should_cancel=lambda: job.cancel_requested,
        )

    def _log(self, job: Job, training_set: TrainingSet, outcome: TrainingOutcome) -> Any:
        import mlflow.exceptions

        spec = job.spec
        tags = {**spec.tags, "product": self.product.name, "training_service.job_id": job.id}
        if job.request_id:
            tags["training_service.request_id"] = job.request_id
        with self._mlflow_lock:
            try:
                return self._log_run(
                    outcome,
                    tracking_uri=self.tracking_uri,
                    experiment_name=spec.experiment_name,
                    feature_service=spec.feature_service,
                    feature_service_version=training_set.feature_service_version
                    or job.feature_service_version,
                    run_name=spec.run_name or None,
                    tags=tags,
                )
            except mlflow.exceptions.MlflowException as exc:
                text = str(exc)
                if (
                    "Max retries exceeded" in text
                    or "Connection refused" in text
                    or "ConnectionError" in text
                ):
                    raise Unavailable("the MLflow tracking server is unavailable; retry later") from exc
                raise

    def _check_cancel(self, job: Job) -> None:
        if job.cancel_requested:
            raise Cancelled()

    # ------------------------------------------------------------------ state changes

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            if job.terminal:
                return
            for name, value in changes.items():
                setattr(job, name, value)
            job.version += 1
            job.update_time = datetime.now(UTC)
        self._signal(job.id)

    def _finish(
        self,
        job: Job,
        state: int,
        message: str,
        *,
        result: pb.TrainingResult | None = None,
        error: error_pb2.Error | None = None,
    ) -> None:
        with self._lock:
            if job.terminal:
                return
            now = datetime.now(UTC)
            job.state, job.message, job.end_time, job.update_time = state, message, now, now
            job.cancel_requested = False
            job.result, job.error = result, error
            if state == pb.TRAINING_JOB_STATE_SUCCEEDED:
                job.progress = 1.0
            job.version += 1
        _LOGGER.info(
            "training job %s %s: %s",
            job.id,
            pb.TrainingJobState.Name(state).removeprefix("TRAINING_JOB_STATE_"),
            message,
            extra={"job_id": job.id},
        )
        self._signal(job.id)

    def _signal(self, job_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    # ------------------------------------------------------------------ reads

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("training job", job_id)
        return job

    def get(self, job_id: str) -> pb.TrainingJob:
        """The job's snapshot. Raises NotFound naming the id."""
        with self._lock:
            return self._snapshot_locked(self._job(job_id))

    async def watch(self, job_id: str) -> AsyncIterator[pb.TrainingJob]:
        """Snapshots: the current one, then one per change, until a terminal one (included).

        Raises:
            NotFound: unknown job id (before the first snapshot).
        """
        self._loop = asyncio.get_running_loop()
        with self._lock:
            job = self._job(job_id)
        last = -1
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            while True:
                event.clear()
                with self._lock:
                    version, terminal = job.version, job.terminal
                    snapshot = self._snapshot_locked(job) if version != last else None
                if snapshot is not None:
                    last = version
                    yield snapshot
                if terminal:
                    return
                await event.wait()
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def cancel(self, job_id: str, reason: str = "") -> pb.TrainingJob:
        """Request cancellation (see the module docstring).

        Raises:
            NotFound: unknown id. FailedPrecondition: the job already SUCCEEDED or FAILED.
        """
        with self._lock:
            job = self._job(job_id)
            if job.state in (pb.TRAINING_JOB_STATE_SUCCEEDED, pb.TRAINING_JOB_STATE_FAILED):
                state = pb.TrainingJobState.Name(job.state).removeprefix("TRAINING_JOB_STATE_")
                raise FailedPrecondition(
                    f"training job {job_id} already {state}: nothing to cancel",
                    [
                        PreconditionViolation(
                            "JOB_STATE", job_id, "only queued or running jobs can be cancelled"
                        )
                    ],
                )
            queued = job.state == pb.TRAINING_JOB_STATE_QUEUED
            if not job.terminal:
                job.cancel_reason = reason or "requested"
                job.cancel_requested = not queued
                job.version += 1
                job.update_time = datetime.now(UTC)
        if queued:
            self._finish(job, pb.TRAINING_JOB_STATE_CANCELLED, f"cancelled while queued: {job.cancel_reason}")
        else:
            self._signal(job.id)
        return self.get(job_id)

    def list(self, request: pb.ListTrainingJobsRequest) -> pb.ListTrainingJobsResponse:
        """A page of jobs, newest first; filters by state, experiment and creation time.

        Raises:
            InvalidArgument: negative ``page_size``, invalid ``page_token``.
        """
        size = page_limit(request.page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        before = decode_page_token(request.page_token, int)  # the seq of the previous page's last job
        window = request.create_time_range
        start, end = (
            convert.from_timestamp(getattr(window, name), f"create_time_range.{name}")
            if request.HasField("create_time_range") and window.HasField(name)
            else None
            for name in ("start", "end")
        )
        with self._lock:
            selected = [
                job
                for job in sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)
                if (before is None or job.seq < before)
                and (not request.state or job.state == request.state)
                and (not request.experiment_name or job.spec.experiment_name == request.experiment_name)
                and (start is None or job.create_time >= start)
                and (end is None or job.create_time < end)
            ]
            page = selected[:size]
            jobs = [self._snapshot_locked(job) for job in page]
        token = encode_page_token(page[-1].seq) if len(selected) > size else ""
        return pb.ListTrainingJobsResponse(jobs=jobs, next_page_token=token)

    @staticmethod
    def _snapshot_locked(job: Job) -> pb.TrainingJob:
        out = pb.TrainingJob(
            id=job.id,
            state=job.state,
            stage=job.stage,
            progress=job.progress,
            message=job.message,
            create_time=convert.to_timestamp(job.create_time),
            update_time=convert.to_timestamp(job.update_time),
            spec=job.spec_pb,
            cancel_requested=job.cancel_requested,
            request_id=job.request_id,
        )
        if job.start_time is not None:
            out.start_time.CopyFrom(convert.to_timestamp(job.start_time))
        if job.end_time is not None:
            out.end_time.CopyFrom(convert.to_timestamp(job.end_time))
        if job.result is not None:
            out.result.CopyFrom(job.result)
        if job.error is not None:
            out.error.CopyFrom(job.error)
        return out

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self, grace_s: float) -> None:
        """Refuse new starts, cancel queued jobs, cancel running ones after ``grace_s``."""
        if self._stopping:
            return
        self._stopping = True
        for job in list(self._jobs.values()):
            if job.state == pb.TRAINING_JOB_STATE_QUEUED:
                self.cancel(job.id, "the service is shutting down")
        loop = asyncio.get_running_loop()
        loop.call_later(grace_s, self._cancel_running, "the service is shutting down (grace period over)")

    def _cancel_running(self, reason: str) -> None:
        for job in list(self._jobs.values()):
            if not job.terminal:
                self.cancel(job.id, reason)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` for the jobs to end (after :meth:`begin_shutdown`); the ones that
        do not are marked CANCELLED and their tasks cancelled."""
        self._stopping = True
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for job in list(self._jobs.values()):
            if not job.terminal:
                self._finish(job, pb.TRAINING_JOB_STATE_CANCELLED, "cancelled: the service stopped")
            if job.task is not None and not job.task.done():
                job.task.cancel()

"""Client of the training-service (contract ``creditrisk.training.v1.TrainingService``).

:class:`TrainingServiceClient` answers with the contract's ``TrainingJob`` snapshots:

* ``StartTrainingJob`` -> the job's first snapshot (idempotent by ``request_id``);
* ``GetTrainingJob`` / ``CancelTrainingJob`` -> the job's snapshot;
* ``ListTrainingJobs`` -> one page: ``(jobs newest first, next page token or "")``;
* ``WatchTrainingJob`` -> the snapshots as they come; :meth:`TrainingServiceClient.wait_for_job` follows
  them to a terminal state, resuming a stream broken by UNAVAILABLE or its own deadline.

Unary errors are mapped by :class:`~creditrisk_clients.errors.DownstreamErrors` (default:
UNAVAILABLE -> ``Unavailable``, DEADLINE_EXCEEDED -> ``DeadlineExceeded``; the contract's
INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS stay ``grpc.aio.AioRpcError``
unless the caller gives handlers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from creditrisk.common.v1 import time_range_pb2
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc

from creditrisk_clients.base import ContractClient, TokenProvider
from creditrisk_clients.errors import DownstreamErrors

#: The default mapping of the training-service's errors (see :mod:`creditrisk_clients.errors`).
TRAINING_ERRORS = DownstreamErrors("the training-service")
#: The states after which a job never changes again.
TERMINAL_STATES = frozenset(
    {
        tpb.TRAINING_JOB_STATE_SUCCEEDED,
        tpb.TRAINING_JOB_STATE_FAILED,
        tpb.TRAINING_JOB_STATE_CANCELLED,
    }
)
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class TrainingServiceClient(ContractClient):
    """Async client of ``creditrisk.training.v1.TrainingService`` (see the module docstring).

    Args:
        channel: A ``grpc.aio`` channel to the training-service (a kit ``aio_channel``).
        errors: How the training-service's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
        token: The caller's bearer credential or a provider of it (``ContractClient``).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        errors: DownstreamErrors = TRAINING_ERRORS,
        owns_channel: bool = False,
        token: TokenProvider = "",
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel, token=token)
        self._stub = tpb_grpc.TrainingServiceStub(channel)

    async def start_job(
        self,
        spec: tpb.TrainingJobSpec,
        request_id: str = "",
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tpb.TrainingJob:
        """Queue a training job; a retry with the same ``request_id`` and spec returns the same job.

        Returns:
            The job's first snapshot (``id``, ``state`` QUEUED or later, the spec with defaults).

        Raises:
            As ``errors`` maps the service's status: INVALID_ARGUMENT naming the field at fault,
            NOT_FOUND (feature service, label view), FAILED_PRECONDITION (no labelled rows),
            ALREADY_EXISTS (``request_id`` reused with another spec).
        """
        request = tpb.StartTrainingJobRequest(spec=spec, request_id=request_id)
        response = await self.unary(self._stub.StartTrainingJob, request, timeout_s=timeout_s, errors=errors)
        job: tpb.TrainingJob = response.job
        return job

    async def get_job(
        self, job_id: str, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> tpb.TrainingJob:
        """The current snapshot of job ``job_id`` (NOT_FOUND for an unknown id, as ``errors`` maps)."""
        request = tpb.GetTrainingJobRequest(job_id=job_id)
        response = await self.unary(self._stub.GetTrainingJob, request, timeout_s=timeout_s, errors=errors)
        job: tpb.TrainingJob = response.job
        return job

    async def cancel_job(
        self,
        job_id: str,
        reason: str = "",
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tpb.TrainingJob:
        """Request the cancellation of job ``job_id``; its snapshot after the request.

        Raises:
            As ``errors`` maps NOT_FOUND (unknown id), FAILED_PRECONDITION (already SUCCEEDED or
            FAILED) and the rest.
        """
        request = tpb.CancelTrainingJobRequest(job_id=job_id, reason=reason)
        response = await self.unary(self._stub.CancelTrainingJob, request, timeout_s=timeout_s, errors=errors)
        job: tpb.TrainingJob = response.job
        return job

    async def list_jobs(
        self,
        *,
        state: tpb.TrainingJobState.ValueType = tpb.TRAINING_JOB_STATE_UNSPECIFIED,
        experiment_name: str = "",
        create_time_range: time_range_pb2.TimeRange | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[tpb.TrainingJob], str]:
        """One page of jobs, newest first, and the next page's token ("" on the last page).

        Args:
            state / experiment_name / create_time_range: Filters (unset: no filter).
            page_size: Jobs per page (0: the server's default, 50; above 1000: 1000).
            page_token: The previous page's token ("" for the first page).
        """
        request = tpb.ListTrainingJobsRequest(
            page_size=page_size,
            page_token=page_token,
            state=state,
            experiment_name=experiment_name,
            create_time_range=create_time_range,
        )
        response = await self.unary(self._stub.ListTrainingJobs, request, timeout_s=timeout_s, errors=errors)
        return list(response.jobs), str(response.next_page_token)

    async def watch_job(
        self, job_id: str, *, timeout_s: float | None = None
    ) -> AsyncIterator[tpb.TrainingJob]:
        """The ``WatchTrainingJob`` snapshots of ``job_id``: the current one, then one per change;
        ends after the snapshot of a terminal state.

        Raises (while iterating):
            grpc.aio.AioRpcError: The stream failed (NOT_FOUND for an unknown id; UNAVAILABLE;
                DEADLINE_EXCEEDED after ``timeout_s`` seconds); :meth:`wait_for_job` resumes the last two.
        """
        stream = self._stub.WatchTrainingJob(
            tpb.WatchTrainingJobRequest(job_id=job_id), metadata=self.metadata, timeout=timeout_s
        )
        async for message in stream:
            yield message.job

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout_s: float,
        retry_interval_s: float = 1.0,
        errors: DownstreamErrors | None = None,
    ) -> tpb.TrainingJob:
        """Follow job ``job_id`` to a terminal state and return that snapshot.

        A stream broken by UNAVAILABLE (the service restarting, a network blip) or cut by its
        deadline is resumed after ``retry_interval_s`` seconds, until ``timeout_s`` seconds in all.

        Raises:
            TimeoutError: No terminal state within ``timeout_s`` (the message has the last snapshot's
                state and status line).
            As ``errors`` maps any other status of the stream (NOT_FOUND for an unknown id).
        """
        deadline = time.monotonic() + timeout_s
        last: tpb.TrainingJob | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = f"{tpb.TrainingJobState.Name(last.state)}: {last.message}" if last else "no snapshot"
                raise TimeoutError(f"training job {job_id} not finished after {timeout_s:g} s (last: {seen})")
            try:
                async for job in self.watch_job(job_id, timeout_s=remaining):
                    last = job
                    if job.state in TERMINAL_STATES:
                        return job
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RESUMABLE:
                    (errors or self.errors).raise_for(exc)
            await asyncio.sleep(min(retry_interval_s, max(deadline - time.monotonic(), 0.0)))

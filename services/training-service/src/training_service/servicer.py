"""The gRPC servicer of ``creditrisk.training.v1.TrainingService``: thin, over :class:`TrainingJobs`.

Domain errors raised by the core become statuses in the kit's ``ErrorInterceptor``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk.training.v1 import training_service_pb2_grpc as pb_grpc
from creditrisk_kit.auth import MethodPolicy, Role

from training_service.jobs import TrainingJobs

SERVICE_NAME = "creditrisk.training.v1.TrainingService"

POLICY = MethodPolicy.for_service(
    SERVICE_NAME,
    {
        "StartTrainingJob": Role.TRAIN,
        "GetTrainingJob": Role.TRAIN,
        "WatchTrainingJob": Role.TRAIN,
        "CancelTrainingJob": Role.TRAIN,
        "ListTrainingJobs": Role.TRAIN,
    },
)
"""What each RPC needs (the kit's auth, default deny): every one ``train`` (a job's spec and
result name the data it was trained on)."""


class TrainingServicer(pb_grpc.TrainingServiceServicer):  # type: ignore[misc]
    """Converts between the contract's messages and the job runner."""

    def __init__(self, jobs: TrainingJobs) -> None:
        self.jobs = jobs

    async def StartTrainingJob(
        self, request: pb.StartTrainingJobRequest, context: Any
    ) -> pb.StartTrainingJobResponse:
        job = await self.jobs.start(request)
        return pb.StartTrainingJobResponse(job_id=job.id, job=job)

    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: Any
    ) -> pb.GetTrainingJobResponse:
        return pb.GetTrainingJobResponse(job=self.jobs.get(request.job_id))

    async def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: Any
    ) -> AsyncIterator[pb.WatchTrainingJobResponse]:
        async for job in self.jobs.watch(request.job_id):
            yield pb.WatchTrainingJobResponse(job=job)

    async def CancelTrainingJob(
        self, request: pb.CancelTrainingJobRequest, context: Any
    ) -> pb.CancelTrainingJobResponse:
        return pb.CancelTrainingJobResponse(job=self.jobs.cancel(request.job_id, request.reason))

    async def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: Any
    ) -> pb.ListTrainingJobsResponse:
        return self.jobs.list(request)


def register(jobs: TrainingJobs) -> Any:
    """The ``register`` callable of the kit's ``ServiceRunner``."""

    def add(server: Any) -> None:
        pb_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(jobs), server)

    return add

"""Fixtures of the pipelines' own tests: contract-level fakes of the services, in process."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_pipelines.credential import CREDENTIAL_ENV, CREDENTIAL_FILE_ENV


class FakeTrainingService(tpb_grpc.TrainingServiceServicer):
    """Records every StartTrainingJob request; the job SUCCEEDS at once with a fixed run.

    ``unavailable_first`` answers the first ``n`` StartTrainingJob calls UNAVAILABLE (a restarting
    service), to check the clients' retries.
    """

    def __init__(self, unavailable_first: int = 0) -> None:
        self.requests: list[tpb.StartTrainingJobRequest] = []
        self.attempts = 0
        self.unavailable_first = unavailable_first
        self.tokens: set[str] = set()
        self._lock = threading.Lock()

    def _job(self, request: tpb.StartTrainingJobRequest) -> tpb.TrainingJob:
        return tpb.TrainingJob(
            id="job-1",
            state=tpb.TRAINING_JOB_STATE_SUCCEEDED,
            progress=1.0,
            spec=request.spec,
            request_id=request.request_id,
            result=tpb.TrainingResult(
                mlflow_run_id="run-abc",
                model_uri="runs:/run-abc/model",
                metrics={"test_roc_auc": 0.77},
                decision_threshold=0.3,
            ),
        )

    def StartTrainingJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.tokens.add(dict(context.invocation_metadata()).get("authorization", ""))
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.unavailable_first:
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            self.requests.append(request)
        return tpb.StartTrainingJobResponse(job_id="job-1", job=self._job(request))

    def WatchTrainingJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield tpb.WatchTrainingJobResponse(job=self._job(self.requests[-1]))


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[grpc.Server], None]], str]]:
    """Start an in-process gRPC server with the servicers ``add`` registers; returns its target."""
    servers: list[grpc.Server] = []

    def start(add: Callable[[grpc.Server], None]) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add(server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


@pytest.fixture
def credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh pipeline key in ``secrets/pipeline.key`` (0600), named by ``CREDITRISK_CREDENTIAL_FILE``
    (inherited by kfp.local's component subprocesses, as the demo sets it); returns the key."""
    key = secrets.token_urlsafe(32)
    path = tmp_path / "secrets" / "pipeline.key"
    path.parent.mkdir(mode=0o700)
    path.write_text(key + "\n")
    path.chmod(0o600)
    monkeypatch.setenv(CREDENTIAL_FILE_ENV, str(path))
    monkeypatch.delenv(CREDENTIAL_ENV, raising=False)
    return key

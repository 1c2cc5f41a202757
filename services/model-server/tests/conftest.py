"""Session fixtures: a real ``mlflow server`` (the training-service's command, run from ITS env),
runs logged by the training-service's own code in ITS env, versions registered as the
registry-gateway registers them, and both runtimes started ONCE as process groups (stopped by PID).

Versions of ``credit-risk``: 1 = logistic regression, 2 = gradient boosting, 3 = version 1 with a
wrong ``fast_scorer/model.onnx`` digest, 4 = version 1 without digest tags. The seldon runtime
follows ``champion``, MLServer follows ``challenger`` (both start on version 1). MLServer exports
its spans to an in-process OTLP receiver (``stack.receiver``), with its metrics port kept.

Both aliases point at version 1 between test files: a test that moves them restores them with
:meth:`Stack.serve` (``test_alias.py`` does, around each of its tests), so the files run in any
order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from model_server import readiness
from model_server.__main__ import mlserver_command, mlserver_tracing_server, seldon_command
from model_server.settings import Settings
from model_server.slot import LoadedModel, load_version
from model_server.testing import fixtures as fx
from model_server.testing.otlp import OtlpReceiver

os.environ.setdefault("OMP_NUM_THREADS", "1")
fx.use_api_keys()  # the slots check credentials: every scoring call of the tests sends one
MODEL = "credit-risk"
START_TIMEOUT_S = 120.0
SELDON_PROCESSES = 2  # the REST and the gRPC serving process of the seldon slot


@dataclass
class Stack:
    tracking_uri: str
    versions: dict[str, str]  # lr, hgb, tampered, untagged -> version
    records: list[dict[str, Any]]
    work: Path
    seldon_http: str = ""
    seldon_grpc: str = ""
    seldon_metrics: str = ""
    seldon_state: Path = Path()
    mlserver_http: str = ""
    mlserver_grpc: str = ""
    mlserver_metrics: str = ""
    mlserver_state: Path = Path()
    seldon_pid: int = 0  # the slots' process groups (their listeners: tests/test_access.py)
    mlserver_pid: int = 0
    slot_env: dict[str, str] = field(default_factory=dict)  # what every slot of the session gets
    receiver: OtlpReceiver | None = None

    def settings(self, alias: str = "champion", **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "model_name": MODEL,
            "alias": alias,
            "mlflow_tracking_uri": self.tracking_uri,
            "state_dir": self.work / f"state-{alias}-inproc",
            "serving_processes": 1,
            "cache_dir": self.work / "cache-inproc",
            "trusted_keys_file": fx.trusted_keys_file(self.work / "keys"),
            "approval_state_file": self.work / f"approvals-{alias}-inproc.json",
        }
        return Settings(**{**values, **extra})

    def serve(self, version: str, timeout_s: float = 120.0) -> None:
        """Move both aliases to ``version`` and wait until every serving process of both runtimes
        serves it and reads it as its target, with neither slot draining.

        Raises:
            AssertionError: not so within ``timeout_s`` (the slots' states in the message).
        """
        fx.set_alias(self.tracking_uri, MODEL, "champion", version)
        fx.set_alias(self.tracking_uri, MODEL, "challenger", version)
        deadline = time.monotonic() + timeout_s
        slots = ((self.seldon_state, SELDON_PROCESSES), (self.mlserver_state, 1))
        while True:
            states = {d.name: readiness.read_states(d) for d, _ in slots}
            done = all(
                slot.ready and slot.version == version
                for slot in (readiness.slot_readiness(d, n) for d, n in slots)
            ) and all(s["target"] == version for listed in states.values() for s in listed)
            if done:
                return
            assert time.monotonic() < deadline, f"version {version} not served by both slots: {states}"
            time.sleep(0.2)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (the training-service's command, from ITS env), empty at first;
    stopped by PID at the end of the session."""
    work = tmp_path_factory.mktemp("mlflow")
    fx.use_mlflow_users()
    argv, env, url = fx.mlflow_server_command(work / "mlflow", fx.free_port())
    (work / "mlflow").mkdir(exist_ok=True)
    mlflow_proc = fx.start_process(argv, fx.clean_env(**env), work / "mlflow.log")
    try:
        fx.wait_http(f"{url}/health", START_TIMEOUT_S, mlflow_proc)
        yield url
    finally:
        fx.stop_process(mlflow_proc)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking_uri: str) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("model-server")
    procs = []
    receiver = OtlpReceiver().start()
    url = tracking_uri
    try:
        runs = fx.make_runs(url, work / "runs")
        versions = {
            "lr": fx.register_version(url, MODEL, runs["lr"], work / "reg1").version,
            "hgb": fx.register_version(url, MODEL, runs["hgb"], work / "reg2").version,
            "tampered": fx.register_version(
                url, MODEL, runs["lr"], work / "reg3", tamper="fast_scorer/model.onnx"
            ).version,
            "untagged": fx.register_version(url, MODEL, runs["lr"], work / "reg4", digests=False).version,
        }
        fx.set_alias(url, MODEL, "champion", versions["lr"])
        fx.set_alias(url, MODEL, "challenger", versions["lr"])
        st = Stack(url, versions, fx.model_input_rows(work / "runs"), work)

        ports = [fx.free_port() for _ in range(6)]
        seldon = seldon_command(
            model=MODEL, alias="champion", http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]
        )
        mls = mlserver_command(
            model=MODEL,
            alias="challenger",
            directory=work / "mlserver",
            http_port=ports[3],
            grpc_port=ports[4],
            metrics_port=ports[5],
            tracing_server=mlserver_tracing_server(receiver.env()),
        )
        common = {
            "MLFLOW_TRACKING_URI": url,
            **fx.mlflow_user_env("model-server"),  # the slot's own MLflow user: a reader
            "MODEL_SERVER_POLL_INTERVAL_S": "1",
            "MODEL_SERVER_REFUSED_RETRY_S": "3600",
            "MODEL_SERVER_CACHE_DIR": str(work / "cache"),
            "MODEL_SERVER_TRUSTED_KEYS_FILE": str(fx.trusted_keys_file(work / "keys")),
        }
        st.slot_env = common
        seldon_env = fx.clean_env(
            **{**common, **seldon.env, "MODEL_SERVER_STATE_DIR": str(work / "state-seldon")}
        )
        mls_env = fx.clean_env(
            **{
                **common,
                **mls.env,
                **receiver.env(),
                "MODEL_SERVER_STATE_DIR": str(work / "state-mlserver"),
            }
        )
        p1 = fx.start_process(seldon.argv, seldon_env, work / "seldon.log")
        procs.append(p1)
        p2 = fx.start_process(mls.argv, mls_env, work / "mlserver.log")
        procs.append(p2)
        st.seldon_http, st.seldon_grpc = f"http://127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"
        st.seldon_metrics = f"http://127.0.0.1:{ports[2]}"
        st.mlserver_http, st.mlserver_grpc = f"http://127.0.0.1:{ports[3]}", f"127.0.0.1:{ports[4]}"
        st.mlserver_metrics, st.receiver = f"http://127.0.0.1:{ports[5]}", receiver
        st.seldon_state, st.mlserver_state = work / "state-seldon", work / "state-mlserver"
        st.seldon_pid, st.mlserver_pid = p1.pid, p2.pid
        with ThreadPoolExecutor(2) as pool:
            waits = [
                pool.submit(fx.wait_http, f"{st.seldon_http}/health/ready", START_TIMEOUT_S, p1),
                pool.submit(fx.wait_http, f"{st.mlserver_http}/v2/health/ready", START_TIMEOUT_S, p2),
            ]
            for w in waits:
                w.result()
        yield st
    finally:
        for proc in reversed(procs):
            fx.stop_process(proc)
        receiver.stop()


@pytest.fixture(scope="session")
def inproc_v1(stack: Stack) -> LoadedModel:
    """Version 1 loaded in this test process by the same code: the in-process reference scorer."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
    return load_version(stack.settings(), client, client.get_model_version(MODEL, stack.versions["lr"]))

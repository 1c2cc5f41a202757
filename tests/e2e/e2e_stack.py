"""The end-to-end stack: every service as its own process, started on demand by the supervisor.

Used by the session-scoped ``stack`` fixture of ``conftest.py``.

One session-scoped :class:`Stack` holds one :class:`~creditrisk_devstack.Supervisor` (logs in the
session's temporary folder) and starts a service the first time a test asks for its address
(``stack.target("feature-service")``), after its dependencies and its one-off preparation (e.g. the
feature-service's ingestion). Everything the session started is stopped at its end, in reverse
order, also on failures and Ctrl-C (the supervisor's context manager).

A later service adds one :class:`ServiceDef` to :data:`SERVICES`: its process spec on a free port,
an optional ``prepare`` step run once before the first start, and the services it needs.

Each service runs in its own locked environment (``services/<name>/.venv``, made by ``make setup``);
the tests themselves run in the development environment and speak to the services only through the
client package (``creditrisk-contracts``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from creditrisk_devstack import GrpcReadiness, HttpReadiness, ProcessSpec, Supervisor, free_port

ROOT = Path(__file__).resolve().parents[2]
GERMAN_CSV = ROOT / "data" / "german_credit.csv"


def service_python(service: str) -> Path:
    """The interpreter of a service's own environment; fails the test when it is missing."""
    python = ROOT / "services" / service / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make setup` first", pytrace=False)
    return python


@dataclass(frozen=True)
class ServiceDef:
    """How the stack runs one service.

    Attributes:
        name: process name (and log file name).
        spec: builds the process spec from the stack and the service's free port.
        prepare: run once before the first start (e.g. load data), with the stack.
        needs: services to start first.
    """

    name: str
    spec: Callable[[Stack, int], ProcessSpec]
    prepare: Callable[[Stack], None] | None = None
    needs: tuple[str, ...] = ()


# ---------------------------------------------------------------------- feature-service


def _feature_service_env(stack: Stack) -> dict[str, str]:
    return {
        "FEATURE_SERVICE_PROFILE": "embedded",
        "FEATURE_SERVICE_DATA_DIR": str(stack.workdir / "feature-store"),
        "OMP_NUM_THREADS": "1",
    }


def _ingest_german_credit(stack: Stack) -> None:
    result = subprocess.run(
        [str(service_python("feature-service")), "-m", "feature_service.ingest", "--csv", str(GERMAN_CSV)],
        cwd=ROOT / "services" / "feature-service",
        env={**os.environ, **_feature_service_env(stack)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"ingestion failed ({result.returncode}):\n{result.stderr[-3000:]}", pytrace=False)


def _feature_service_spec(stack: Stack, port: int) -> ProcessSpec:
    return ProcessSpec(
        "feature-service",
        [str(service_python("feature-service")), "-m", "feature_service"],
        cwd=ROOT / "services" / "feature-service",
        env={
            **_feature_service_env(stack),
            "FEATURE_SERVICE_HOST": "127.0.0.1",
            "FEATURE_SERVICE_PORT": str(port),
            "FEATURE_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
            "FEATURE_SERVICE_GRACE_PERIOD_S": "5",
        },
        ready=GrpcReadiness(f"127.0.0.1:{port}"),
        timeout_s=90,
    )


# ---------------------------------------------------------------------- mlflow (tracking server)


def _mlflow_spec(stack: Stack, port: int) -> ProcessSpec:
    """``mlflow server`` sized for this machine (SQLite + served artifacts: the embedded profile),
    started through the training-service's environment; ready when ``/health`` answers."""
    data_dir = stack.workdir / "mlflow"
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        "mlflow",
        [
            str(service_python("training-service")),
            "-m",
            "training_service.mlflow_server",
            "--profile",
            "embedded",
            "--dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT / "services" / "training-service",
        ready=HttpReadiness(f"http://127.0.0.1:{port}/health"),
        timeout_s=90,
    )


# ---------------------------------------------------------------------- training-service


def _training_service_spec(stack: Stack, port: int) -> ProcessSpec:
    return ProcessSpec(
        "training-service",
        [str(service_python("training-service")), "-m", "training_service"],
        cwd=ROOT / "services" / "training-service",
        env={
            "TRAINING_SERVICE_HOST": "127.0.0.1",
            "TRAINING_SERVICE_PORT": str(port),
            "TRAINING_SERVICE_FEATURE_SERVICE_ADDRESS": stack.targets["feature-service"],
            "TRAINING_SERVICE_MLFLOW_TRACKING_URI": f"http://{stack.targets['mlflow']}",
            "TRAINING_SERVICE_EXPERIMENT_NAME": "credit-risk-e2e",
            "TRAINING_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
            "TRAINING_SERVICE_GRACE_PERIOD_S": "5",
            "OMP_NUM_THREADS": "1",
        },
        ready=GrpcReadiness(f"127.0.0.1:{port}"),
        timeout_s=90,
    )


# ---------------------------------------------------------------------- drift-service

#: The drift-service's HTML report port, fixed per stack (by its folder) so that report URLs stay
#: valid across a restart of the process.
_DRIFT_REPORT_PORTS: dict[Path, int] = {}


def drift_data_dir(stack: Stack) -> Path:
    """The drift-service's data folder: the SQLite store (``drift.db``) and the HTML reports."""
    return stack.workdir / "drift-service"


def _drift_service_spec(stack: Stack, port: int) -> ProcessSpec:
    """``python -m drift_service``, embedded profile (SQLite in a temp folder); Evidently is imported
    on the first ComputeDrift (no warm-up), so a (re)start is ready in a few seconds."""
    report_port = _DRIFT_REPORT_PORTS.setdefault(stack.workdir, free_port())
    env = {
        "DRIFT_SERVICE_PROFILE": "embedded",
        "DRIFT_SERVICE_DATA_DIR": str(drift_data_dir(stack)),
        "DRIFT_SERVICE_HOST": "127.0.0.1",
        "DRIFT_SERVICE_PORT": str(port),
        "DRIFT_SERVICE_REPORT_HTTP_PORT": str(report_port),
        "DRIFT_SERVICE_METRICS_PORT": "0",
        "DRIFT_SERVICE_WARM_UP": "false",
        "DRIFT_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
        "DRIFT_SERVICE_GRACE_PERIOD_S": "5",
        "OMP_NUM_THREADS": "1",
    }
    if "mlflow" in stack.targets:
        env["DRIFT_SERVICE_MLFLOW_TRACKING_URI"] = f"http://{stack.targets['mlflow']}"
    return ProcessSpec(
        "drift-service",
        [str(service_python("drift-service")), "-m", "drift_service"],
        cwd=ROOT / "services" / "drift-service",
        env=env,
        ready=GrpcReadiness(f"127.0.0.1:{port}"),
        timeout_s=90,
    )


#: Every service the end-to-end tests can start, by name.
SERVICES: dict[str, ServiceDef] = {
    "feature-service": ServiceDef("feature-service", _feature_service_spec, _ingest_german_credit),
    "mlflow": ServiceDef("mlflow", _mlflow_spec),
    "training-service": ServiceDef(
        "training-service", _training_service_spec, needs=("feature-service", "mlflow")
    ),
    "drift-service": ServiceDef("drift-service", _drift_service_spec),
}


# ---------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Services started on demand under one supervisor; see the module docstring."""

    supervisor: Supervisor
    workdir: Path
    targets: dict[str, str] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)

    def target(self, name: str) -> str:
        """``host:port`` of a running service, starting it (and what it needs) first if necessary."""
        if name in self.targets and self.supervisor[name].alive:
            return self.targets[name]
        service = SERVICES[name]
        for needed in service.needs:
            self.target(needed)
        if service.prepare is not None and name not in self.prepared:
            service.prepare(self)
            self.prepared.add(name)
        port = free_port()
        self.supervisor.start(service.spec(self, port))
        self.targets[name] = f"127.0.0.1:{port}"
        return self.targets[name]

    def stop(self, name: str) -> int | None:
        """Stop one service (SIGTERM, drain, then SIGKILL after its grace); returns its exit code."""
        self.supervisor.stop(name)
        self.targets.pop(name, None)
        return self.supervisor[name].returncode

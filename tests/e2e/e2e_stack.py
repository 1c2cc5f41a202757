"""The end-to-end stack: every service as its own process, started on demand by the supervisor.

Used by the session-scoped ``stack`` fixture of ``conftest.py``.

One session-scoped :class:`Stack` holds one :class:`~creditrisk_devstack.Supervisor` (logs in the
session's temporary folder) and starts a service the first time a test asks for its address
(``stack.target("feature-service")``), after its dependencies and its one-off preparation (e.g. the
feature-service's ingestion). Everything the session started is stopped at its end, in reverse
order, also on failures and Ctrl-C (the supervisor's context manager).

A later service adds one :class:`ServiceDef` to :data:`SERVICES`: its process spec on a free port,
an optional ``prepare`` step run once before the first start, and the services it needs.

The serving path: ``registry-gateway`` (tokens :data:`REGISTRY_TOKENS`: tests promote as promoter
or admin, the inference-gateway reads as a viewer; audit SQLite in the session folder),
``model-server-champion`` (seldon-core runtime following ``credit-risk@champion``; its ``prepare``
trains, registers and promotes the session's first champion, :func:`first_champion`, since the slot
is ready only once it serves a verified version; drained by ``python -m model_server drain`` before
SIGTERM) and ``inference-gateway`` (REST port in ``stack.ports``, :func:`inference_gateway_http`).
The same champion on the MLServer runtime: ``model-server-mlserver`` and ``inference-gateway-v2``
(Open Inference Protocol V2 over REST; ``inference_gateway_http(stack, "inference-gateway-v2")``).
Results shared by the tests (the trained job, the first champion, the current champion version) are
kept in ``stack.cache``. A dependency's address is read when a service starts: restart a dependency
(e.g. the feature-service) only before its dependants start.

A start is all or nothing: when starting a service fails (its readiness, a dependency's, a
``prepare`` step, the test's own timeout), every process that this start had started (the service
and the dependencies it started on the way) is stopped and forgotten before the error reaches the
test, with the failing process's log tail; services that ran before it keep running. The next test
that needs them starts them afresh (issue 16: one readiness timeout used to leave a process
registered, and every later test failed with "feature-service: already started").

Each service runs in its own locked environment (``services/<name>/.venv``, made by ``make setup``);
the tests themselves run in the development environment and speak to the services only through the
client package (``creditrisk-contracts``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_devstack import (
    GrpcReadiness,
    HttpReadiness,
    ManagedProcess,
    ProcessSpec,
    Supervisor,
    free_port,
)
from google.protobuf import timestamp_pb2

logger = logging.getLogger(__name__)

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
        **stack.feature_env,
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
        if "registry-gateway" in stack.targets:
            # the default reference's version then goes through the registry-gateway, as a viewer
            env["DRIFT_SERVICE_REGISTRY_TARGET"] = stack.targets["registry-gateway"]
            env["DRIFT_SERVICE_REGISTRY_TOKEN"] = VIEWER_TOKEN
    return ProcessSpec(
        "drift-service",
        [str(service_python("drift-service")), "-m", "drift_service"],
        cwd=ROOT / "services" / "drift-service",
        env=env,
        ready=GrpcReadiness(f"127.0.0.1:{port}"),
        timeout_s=90,
    )


# ---------------------------------------------------------------------- registry-gateway

#: Bearer tokens of the session's registry-gateway: tests act as admin or promoter, the
#: inference-gateway reads as a viewer.
ADMIN_TOKEN = "e2e-admin-token"
PROMOTER_TOKEN = "e2e-promoter-token"
VIEWER_TOKEN = "e2e-viewer-token"
REGISTRY_TOKENS = {
    ADMIN_TOKEN: {"subject": "e2e-admin", "role": "admin"},
    PROMOTER_TOKEN: {"subject": "e2e-pipeline", "role": "promoter"},
    VIEWER_TOKEN: {"subject": "inference-gateway", "role": "viewer"},
}
MODEL_NAME = "credit-risk"


def _registry_gateway_spec(stack: Stack, port: int) -> ProcessSpec:
    """``python -m registry_gateway``: audit store SQLite in the session folder; ready (gRPC health)
    once MLflow, the audit database and the feature-service answer."""
    data_dir = stack.workdir / "registry-gateway"
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        "registry-gateway",
        [str(service_python("registry-gateway")), "-m", "registry_gateway"],
        cwd=ROOT / "services" / "registry-gateway",
        env={
            "REGISTRY_GATEWAY_HOST": "127.0.0.1",
            "REGISTRY_GATEWAY_PORT": str(port),
            "REGISTRY_GATEWAY_MLFLOW_TRACKING_URI": f"http://{stack.targets['mlflow']}",
            "REGISTRY_GATEWAY_FEATURE_SERVICE_ADDRESS": stack.targets["feature-service"],
            "REGISTRY_GATEWAY_AUDIT_DB_URL": f"sqlite:///{data_dir / 'audit.db'}",
            "REGISTRY_GATEWAY_CACHE_DIR": str(data_dir / "cache"),
            "REGISTRY_GATEWAY_TOKENS": json.dumps(REGISTRY_TOKENS),
            "REGISTRY_GATEWAY_HEALTH_CHECK_INTERVAL_S": "0.5",
            "REGISTRY_GATEWAY_GRACE_PERIOD_S": "5",
            "REGISTRY_GATEWAY_WATCH_POLL_INTERVAL_S": "0.5",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "OMP_NUM_THREADS": "1",
        },
        ready=GrpcReadiness(f"127.0.0.1:{port}"),
        timeout_s=120,
    )


# ---------------------------------------------------------------------- model-server (champion slot)


def _model_server_env(stack: Stack) -> dict[str, str | None]:
    return {
        "MLFLOW_TRACKING_URI": f"http://{stack.targets['mlflow']}",
        "MODEL_SERVER_MODEL_NAME": MODEL_NAME,
        "MODEL_SERVER_ALIAS": "champion",
        "MODEL_SERVER_STATE_DIR": str(stack.workdir / "model-server-champion" / "state"),
        "MODEL_SERVER_CACHE_DIR": str(stack.workdir / "model-server-champion" / "cache"),
        "MODEL_SERVER_POLL_INTERVAL_S": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
        "VIRTUAL_ENV": None,  # the tests' environment is not the slot's
        "PYTHONPATH": None,
    }


def _drain_model_server(stack: Stack) -> Callable[[ManagedProcess], None]:
    """``before_stop``: ``python -m model_server drain`` (every serving process reports not-ready)."""

    def hook(process: ManagedProcess) -> None:
        env = {k: v for k, v in {**os.environ, **_model_server_env(stack)}.items() if v is not None}
        subprocess.run(
            [str(service_python("model-server")), "-m", "model_server", "drain"],
            cwd=process.spec.cwd,
            env=env,
            timeout=30,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return hook


def _model_server_spec(stack: Stack, port: int) -> ProcessSpec:
    """The champion slot on the seldon-core runtime (REST on ``port``; gRPC and metrics on free
    ports), following ``credit-risk@champion``; ready when ``/health/ready`` is 200 (every serving
    process holds the same verified version). Needs a champion: see :func:`first_champion`."""
    return ProcessSpec(
        "model-server-champion",
        [
            str(service_python("model-server")),
            "-m",
            "model_server",
            "seldon",
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
        cwd=ROOT / "services" / "model-server",
        env=_model_server_env(stack),
        ready=HttpReadiness(f"http://127.0.0.1:{port}/health/ready"),
        timeout_s=180,
        grace_s=20,
        before_stop=_drain_model_server(stack),
    )


def _ensure_champion(stack: Stack) -> None:
    first_champion(stack)


# ---------------------------------------------------------------------- inference-gateway


def inference_gateway_http(stack: Stack, name: str = "inference-gateway") -> str:
    """Base URL of the REST API of gateway ``name`` (``inference-gateway``, ``inference-gateway-v2``
    or ``inference-gateway-challenger``), starting it if necessary."""
    stack.target(name)
    return f"http://127.0.0.1:{stack.ports[f'{name}-http']}"


def _inference_gateway_spec(stack: Stack, port: int) -> ProcessSpec:
    """``python -m inference_gateway``: gRPC on ``port``, REST on a free port; ready on ``/readyz``
    (feature-service, registry, champion slot and drift-service answer)."""
    return _gateway_spec(stack, port, "inference-gateway", "model-server-champion", "seldon")


def _gateway_spec(stack: Stack, port: int, name: str, slot: str, protocol: str) -> ProcessSpec:
    """A gateway process ``name`` whose champion slot is the running service ``slot``, spoken to in
    ``protocol``; its REST port in ``stack.ports[f"{name}-http"]``, its own buffer."""
    http_port = free_port()
    stack.ports[f"{name}-http"] = http_port
    data_dir = stack.workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        name,
        [str(service_python("inference-gateway")), "-m", "inference_gateway"],
        cwd=ROOT / "services" / "inference-gateway",
        env={
            "INFERENCE_GATEWAY_HOST": "127.0.0.1",
            "INFERENCE_GATEWAY_PORT": str(port),
            "INFERENCE_GATEWAY_HTTP_HOST": "127.0.0.1",
            "INFERENCE_GATEWAY_HTTP_PORT": str(http_port),
            "INFERENCE_GATEWAY_FEATURE_SERVICE_TARGET": stack.targets["feature-service"],
            "INFERENCE_GATEWAY_REGISTRY_TARGET": stack.targets["registry-gateway"],
            "INFERENCE_GATEWAY_REGISTRY_TOKEN": VIEWER_TOKEN,
            "INFERENCE_GATEWAY_DRIFT_SERVICE_TARGET": stack.targets["drift-service"],
            "INFERENCE_GATEWAY_CHAMPION_URL": f"http://{stack.targets[slot]}",
            "INFERENCE_GATEWAY_MODEL_PROTOCOL": protocol,
            "INFERENCE_GATEWAY_MODEL_NAME": MODEL_NAME,
            "INFERENCE_GATEWAY_BUFFER_PATH": str(data_dir / "buffer.sqlite3"),
            "INFERENCE_GATEWAY_FEATURE_DEADLINE_S": "5",
            "INFERENCE_GATEWAY_MODEL_DEADLINE_S": "5",
            "INFERENCE_GATEWAY_HEALTH_CHECK_INTERVAL_S": "0.5",
            "INFERENCE_GATEWAY_GRACE_PERIOD_S": "5",
            "OMP_NUM_THREADS": "1",
        },
        ready=HttpReadiness(f"http://127.0.0.1:{http_port}/readyz"),
        timeout_s=120,
    )


# ---------------------------------------------------------------------- the MLServer runtime


def _mlserver_env(stack: Stack) -> dict[str, str | None]:
    return {
        **_model_server_env(stack),
        "MODEL_SERVER_STATE_DIR": str(stack.workdir / "model-server-mlserver" / "state"),
        "MODEL_SERVER_CACHE_DIR": str(stack.workdir / "model-server-mlserver" / "cache"),
    }


def _mlserver_spec(stack: Stack, port: int) -> ProcessSpec:
    """The champion slot on the MLServer runtime (Apache 2.0; Open Inference Protocol V2 on REST
    ``port``, gRPC and metrics on free ports), following ``credit-risk@champion`` like the seldon
    slot; ready when ``/v2/models/credit-risk/ready`` is 200."""
    return ProcessSpec(
        "model-server-mlserver",
        [
            str(service_python("model-server")),
            "-m",
            "model_server",
            "mlserver",
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--dir",
            str(stack.workdir / "model-server-mlserver" / "settings"),
        ],
        cwd=ROOT / "services" / "model-server",
        env=_mlserver_env(stack),
        ready=HttpReadiness(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready"),
        timeout_s=180,
        grace_s=20,
    )


def _inference_gateway_v2_spec(stack: Stack, port: int) -> ProcessSpec:
    """A gateway whose champion slot is the MLServer runtime, spoken to over the Open Inference
    Protocol V2 (REST); its own buffer; otherwise as ``inference-gateway``."""
    return _gateway_spec(stack, port, "inference-gateway-v2", "model-server-mlserver", "v2")


# ---------------------------------------------------------------------- challenger slot + its gateway

#: The challenger mode of the second inference-gateway (``inference-gateway-challenger``), read when
#: it starts: a test sets it (``shadow`` or ``canary``) and restarts the gateway to change it.
CHALLENGER_MODE_KEY = "challenger_mode"
CANARY_SHARE_KEY = "canary_share"


def _challenger_env(stack: Stack) -> dict[str, str | None]:
    return {
        **_model_server_env(stack),
        "MODEL_SERVER_ALIAS": "challenger",
        "MODEL_SERVER_STATE_DIR": str(stack.workdir / "model-server-challenger" / "state"),
        "MODEL_SERVER_CACHE_DIR": str(stack.workdir / "model-server-challenger" / "cache"),
    }


def _drain_challenger(stack: Stack) -> Callable[[ManagedProcess], None]:
    def hook(process: ManagedProcess) -> None:
        env = {k: v for k, v in {**os.environ, **_challenger_env(stack)}.items() if v is not None}
        subprocess.run(
            [str(service_python("model-server")), "-m", "model_server", "drain"],
            cwd=process.spec.cwd,
            env=env,
            timeout=30,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return hook


def _challenger_spec(stack: Stack, port: int) -> ProcessSpec:
    """The challenger slot: the champion slot's runtime following ``credit-risk@challenger``."""
    champion = _model_server_spec(stack, port)
    return ProcessSpec(
        "model-server-challenger",
        champion.argv,
        cwd=champion.cwd,
        env=_challenger_env(stack),
        ready=HttpReadiness(f"http://127.0.0.1:{port}/health/ready"),
        timeout_s=180,
        grace_s=20,
        before_stop=_drain_challenger(stack),
    )


def challenger_version(stack: Stack) -> int:
    """Register the trained run once more and point ``credit-risk@challenger`` at it (SetAlias by
    the promoter, once per session); returns the version."""
    if "challenger_version" in stack.cache:
        return stack.cache["challenger_version"]
    job = first_champion(stack)["job"]
    version = register(stack, job.result.mlflow_run_id).version
    with grpc.insecure_channel(stack.target("registry-gateway")) as channel:
        rpb_grpc.ModelRegistryServiceStub(channel).SetAlias(
            rpb.SetAliasRequest(
                name=MODEL_NAME, alias="challenger", version=version, reason="e2e: challenger"
            ),
            metadata=bearer(PROMOTER_TOKEN),
            timeout=60,
        )
    stack.cache["challenger_version"] = version
    return version


def _ensure_challenger(stack: Stack) -> None:
    challenger_version(stack)


def inference_gateway_challenger_http(stack: Stack) -> str:
    """Base URL of the second gateway's REST API (champion + challenger slot), starting it first."""
    return inference_gateway_http(stack, "inference-gateway-challenger")


def _inference_gateway_challenger_spec(stack: Stack, port: int) -> ProcessSpec:
    """A second gateway with the challenger slot in ``stack.cache[CHALLENGER_MODE_KEY]`` mode
    (``shadow`` unless set; ``CANARY_SHARE`` from ``stack.cache[CANARY_SHARE_KEY]``); its own buffer."""
    base = _gateway_spec(stack, port, "inference-gateway-challenger", "model-server-champion", "seldon")
    return dataclasses.replace(
        base,
        env={
            **(base.env or {}),
            "INFERENCE_GATEWAY_CHALLENGER_URL": f"http://{stack.targets['model-server-challenger']}",
            "INFERENCE_GATEWAY_CHALLENGER_MODE": stack.cache.get(CHALLENGER_MODE_KEY, "shadow"),
            "INFERENCE_GATEWAY_CANARY_SHARE": str(stack.cache.get(CANARY_SHARE_KEY, 0.0)),
        },
    )


#: Settings prefix of each service built on the kit (its ``<PREFIX>METRICS_PORT``).
METRICS_PREFIXES = {
    "feature-service": "FEATURE_SERVICE_",
    "training-service": "TRAINING_SERVICE_",
    "registry-gateway": "REGISTRY_GATEWAY_",
    "drift-service": "DRIFT_SERVICE_",
    "inference-gateway": "INFERENCE_GATEWAY_",
    "inference-gateway-challenger": "INFERENCE_GATEWAY_",
    "inference-gateway-v2": "INFERENCE_GATEWAY_",
}

#: Every service the end-to-end tests can start, by name.
SERVICES: dict[str, ServiceDef] = {
    "feature-service": ServiceDef("feature-service", _feature_service_spec, _ingest_german_credit),
    "mlflow": ServiceDef("mlflow", _mlflow_spec),
    "training-service": ServiceDef(
        "training-service", _training_service_spec, needs=("feature-service", "mlflow")
    ),
    "drift-service": ServiceDef("drift-service", _drift_service_spec),
    "registry-gateway": ServiceDef(
        "registry-gateway", _registry_gateway_spec, needs=("feature-service", "mlflow")
    ),
    "model-server-champion": ServiceDef(
        "model-server-champion", _model_server_spec, _ensure_champion, needs=("mlflow",)
    ),
    "inference-gateway": ServiceDef(
        "inference-gateway",
        _inference_gateway_spec,
        needs=("feature-service", "registry-gateway", "drift-service", "model-server-champion"),
    ),
    "model-server-mlserver": ServiceDef(
        "model-server-mlserver", _mlserver_spec, _ensure_champion, needs=("mlflow",)
    ),
    "inference-gateway-v2": ServiceDef(
        "inference-gateway-v2",
        _inference_gateway_v2_spec,
        needs=("feature-service", "registry-gateway", "drift-service", "model-server-mlserver"),
    ),
    "model-server-challenger": ServiceDef(
        "model-server-challenger", _challenger_spec, _ensure_challenger, needs=("mlflow", "registry-gateway")
    ),
    "inference-gateway-challenger": ServiceDef(
        "inference-gateway-challenger",
        _inference_gateway_challenger_spec,
        needs=(
            "feature-service",
            "registry-gateway",
            "drift-service",
            "model-server-champion",
            "model-server-challenger",
        ),
    ),
}


# ---------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Services started on demand under one supervisor; see the module docstring."""

    supervisor: Supervisor
    workdir: Path
    targets: dict[str, str] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)
    #: further ports of running services (e.g. the inference-gateway's REST port)
    ports: dict[str, int] = field(default_factory=dict)
    #: results shared by the tests of the session (the trained run, the first champion)
    cache: dict[str, Any] = field(default_factory=dict)
    #: feature-service settings over the embedded default (e.g. the real profile's Redis and
    #: PostgreSQL, ``FEATURE_SERVICE_PROFILE=real``: the gateway benchmark)
    feature_env: dict[str, str] = field(default_factory=dict)
    #: variables added to every service's environment (the OTEL_* of the session's receiver)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: applied to each process spec just before it starts (``(name, spec) -> spec``): a test
    #: forces a start to fail with it (test_stack_recovery_e2e.py)
    spec_hook: Callable[[str, ProcessSpec], ProcessSpec] | None = None
    #: the start in progress (outermost :meth:`start` call): each name it starts, with the
    #: supervisor's record of that name before (None between starts)
    _attempt: list[tuple[str, ManagedProcess | None]] | None = field(default=None, init=False, repr=False)

    def target(self, name: str) -> str:
        """``host:port`` of a running service, starting it (and what it needs) first if necessary."""
        if name in self.targets and self.supervisor[name].alive:
            return self.targets[name]
        return self.start(name)

    def start(self, name: str, port: int | None = None) -> str:
        """Start one service (what it needs first) and return its ``host:port``.

        Every start goes through here, a restart too: the process gets :attr:`extra_env` (the
        session's ``OTEL_*``) and, for a kit service, a metrics port recorded in :attr:`ports`.

        All or nothing: if anything fails before the service is ready (its readiness, a
        dependency's, a ``prepare`` step, the test's timeout), every process this call started is
        stopped, in reverse order, and its target and ports are forgotten; then the error
        propagates (a readiness failure carries the process's log tail). Services that were
        running before the call are left alone. On Ctrl-C nothing is rolled back here: the session
        is ending and the supervisor's ``with`` stops everything.

        Args:
            name: A key of :data:`SERVICES`; it must not be running.
            port: Its main port; a free one when None (a restart that dependants must find again
                passes its previous port).
        """
        if self._attempt is not None:  # a dependency of the start in progress: part of its attempt
            return self._start(name, port)
        self._attempt = []
        targets, ports = dict(self.targets), dict(self.ports)
        try:
            return self._start(name, port)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self._roll_back(self._attempt, exc)
            self.targets.clear()
            self.targets.update(targets)
            self.ports.clear()
            self.ports.update(ports)
            raise
        finally:
            self._attempt = None

    def _roll_back(self, started: list[tuple[str, ManagedProcess | None]], exc: BaseException) -> None:
        """Stop, newest first, each process of a failed start that is still running (the one that
        failed its readiness is stopped already; a process the supervisor refused to start, e.g.
        "already started", is not this start's); errors are logged, never raised over ``exc``."""
        stopped: list[str] = []
        for name, before in reversed(started):
            if name not in self.supervisor:
                continue
            process = self.supervisor[name]
            if process is before or process.stopped:
                continue
            try:
                self.supervisor.stop(name)
                stopped.append(name)
            except Exception:
                logger.exception("e2e stack: stopping %s after a failed start failed", name)
        if stopped:
            exc.add_note(
                f"e2e stack: stopped what this start had started ({', '.join(stopped)}); "
                "the next test starts them afresh"
            )

    def _start(self, name: str, port: int | None) -> str:
        service = SERVICES[name]
        for needed in service.needs:
            self.target(needed)
        if service.prepare is not None and name not in self.prepared:
            service.prepare(self)
            self.prepared.add(name)
        port = free_port() if port is None else port
        spec = service.spec(self, port)
        env = {**self.extra_env, **(spec.env or {})}
        prefix = METRICS_PREFIXES.get(name)
        if prefix is not None:  # the kit's Prometheus endpoint on a free port
            self.ports[f"{name}-metrics"] = metrics_port = free_port()
            env[f"{prefix}METRICS_PORT"] = str(metrics_port)
        elif "--metrics-port" in spec.argv:  # the model-server's (seldon-core's) metrics port
            self.ports[f"{name}-metrics"] = int(spec.argv[spec.argv.index("--metrics-port") + 1])
        spec = dataclasses.replace(spec, env=env)
        if self.spec_hook is not None:
            spec = self.spec_hook(name, spec)
        assert self._attempt is not None
        previous = next((p for p in self.supervisor.processes if p.name == name), None)
        self._attempt.append((name, previous))
        self.supervisor.start(spec)
        self.targets[name] = f"127.0.0.1:{port}"
        return self.targets[name]

    def stop(self, name: str) -> int | None:
        """Stop one service (SIGTERM, drain, then SIGKILL after its grace); returns its exit code."""
        self.supervisor.stop(name)
        self.targets.pop(name, None)
        return self.supervisor[name].returncode


# ---------------------------------------------------------------------- shared results


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a registry-gateway caller."""
    return (("authorization", f"Bearer {token}"),)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def trained_run(stack: Stack) -> Any:
    """The session's trained default-like model (histogram gradient boosting, 3-fold CV) through the
    real training-service: its final ``TrainingJob``, trained once per session."""
    if "trained_job" in stack.cache:
        return stack.cache["trained_job"]
    spec = tpb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1", version="1"),
        label=tpb.LabelSource(feature_view="credit_label", label_column="creditability"),
        application_time_range=time_range_pb2.TimeRange(
            start=_ts(datetime(2023, 1, 1, tzinfo=UTC)), end=_ts(datetime(2025, 1, 1, tzinfo=UTC))
        ),
        model=tpb.ModelSpec(
            algorithm=tpb.ALGORITHM_HIST_GRADIENT_BOOSTING,
            hyperparameters={"max_iter": tpb.ParameterValue(int64_value=100)},
        ),
        evaluation=tpb.EvaluationProtocol(cv_folds=3, cv_repeats=1),
        seed=42,
        run_name="e2e-registry",
    )
    with grpc.insecure_channel(stack.target("training-service")) as channel:
        stub = tpb_grpc.TrainingServiceStub(channel)
        started = stub.StartTrainingJob(tpb.StartTrainingJobRequest(spec=spec), timeout=30)
        final = None
        for message in stub.WatchTrainingJob(tpb.WatchTrainingJobRequest(job_id=started.job_id), timeout=240):
            final = message.job
    assert final is not None
    assert final.state == tpb.TRAINING_JOB_STATE_SUCCEEDED, final.error
    stack.cache["trained_job"] = final
    return final


def register(stack: Stack, run_id: str, token: str = PROMOTER_TOKEN) -> Any:
    """RegisterModelVersion of ``run_id``'s model as ``credit-risk`` through the registry-gateway."""
    with grpc.insecure_channel(stack.target("registry-gateway")) as channel:
        stub = rpb_grpc.ModelRegistryServiceStub(channel)
        return stub.RegisterModelVersion(
            rpb.RegisterModelVersionRequest(
                run_id=run_id,
                artifact_path="model",
                registered_model_name=MODEL_NAME,
                feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1"),
            ),
            metadata=bearer(token),
            timeout=180,
        ).model_version


def first_champion(stack: Stack) -> dict[str, Any]:
    """Train, register and promote the session's first champion through the gate (once): returns
    ``{"job", "registered", "promoted"}`` (the responses, for the tests to check)."""
    if "first_champion" in stack.cache:
        return stack.cache["first_champion"]
    job = trained_run(stack)
    registered = register(stack, job.result.mlflow_run_id)
    with grpc.insecure_channel(stack.target("registry-gateway")) as channel:
        stub = rpb_grpc.ModelRegistryServiceStub(channel)
        promoted = stub.PromoteModelVersion(
            rpb.PromoteModelVersionRequest(name=MODEL_NAME, version=registered.version),
            metadata=bearer(PROMOTER_TOKEN),
            timeout=300,
        )
    stack.cache["first_champion"] = {"job": job, "registered": registered, "promoted": promoted}
    stack.cache["champion_version"] = registered.version
    return stack.cache["first_champion"]

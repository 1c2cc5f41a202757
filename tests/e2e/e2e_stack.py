"""The end-to-end stack: every service as its own process, started on demand by the supervisor.

Used by the session-scoped ``stack`` fixture of ``conftest.py``.

The services are the platform's stack file, ``deploy/stack/local.toml``, the one ``make demo``
runs (format: ``creditrisk_devstack.stackfile``). What the tests change is given on top of it:
the file's variables (:func:`e2e_variables`: the session's folder (its keys too), the e2e experiment,
the drift-service started cold, the challenger's mode) and a few settings (:data:`E2E_ENV`).

One session-scoped :class:`Stack` holds one :class:`~creditrisk_devstack.Supervisor` (logs in the
session's temporary folder) and starts a service the first time a test asks for its address
(``stack.target("feature-service")``), after what it depends on in the file and its one-off
preparation (:data:`PREPARE`, e.g. the feature-service's ingestion). Everything the session
started is stopped at its end, in reverse order, also on failures and Ctrl-C (the supervisor's
context manager). A test may add stand-ins of its own (:class:`ServiceDef`, ``Stack.stand_ins``).

The serving path: ``registry-gateway`` (the session's keys :data:`KEYS`, files in the session
folder: tests promote as the pipeline or admin, the inference-gateway reads with its own key; audit
SQLite in the session folder),
``model-server-champion`` (seldon-core runtime following ``credit-risk@champion``; its preparation
trains, registers and promotes the session's first champion, :func:`first_champion`, since the slot
is ready only once it serves a verified version; drained by ``python -m model_server drain`` before
SIGTERM) and ``inference-gateway`` (REST port in ``stack.ports``, :func:`inference_gateway_http`).
The same champion on the MLServer runtime: ``model-server-mlserver`` and ``inference-gateway-v2``
(Open Inference Protocol V2 over REST; ``inference_gateway_http(stack, "inference-gateway-v2")``).
Results shared by the tests (the trained job, the first champion, the current champion version) are
kept in ``stack.cache``. A dependency's address is read when a service starts: restart a dependency
(e.g. the feature-service) only before its dependants start.

A start is all or nothing: when starting a service fails (its readiness, a dependency's, a
preparation, the test's own timeout), every process that this start had started (the service and
the dependencies it started on the way) is stopped and forgotten before the error reaches the
test, with the failing process's log tail; services that ran before it keep running. The next test
that needs them starts them afresh (issue 16: one readiness timeout used to leave a process
registered, and every later test failed with "feature-service: already started").

Each service runs in its own locked environment (``services/<name>/.venv``, made by ``make setup``);
the tests themselves run in the development environment and speak to the services only through the
client package (``creditrisk-contracts``).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
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
    CHILD_UMASK,
    ManagedProcess,
    ProcessSpec,
    ResolvedProcess,
    Supervisor,
    free_port,
    process_environment,
    read_stack_file,
)
from creditrisk_kit.auth import BearerInterceptor
from creditrisk_testing.refusal import REFUSAL_API_KEYS
from google.protobuf import timestamp_pb2

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import stack_certs  # noqa: E402 - scripts/stack_certs.py, shared with `make demo`
import stack_keys  # noqa: E402 - scripts/stack_keys.py, shared with `make demo`

GERMAN_CSV = ROOT / "data" / "german_credit.csv"
#: The platform's stack, shared with ``make demo``.
STACK_FILE = ROOT / "deploy" / "stack" / "local.toml"
PLATFORM = read_stack_file(STACK_FILE)


def service_python(service: str) -> Path:
    """The interpreter of a service's own environment; fails the test when it is missing."""
    python = ROOT / "services" / service / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make setup` first", pytrace=False)
    return python


@dataclass(frozen=True)
class ServiceDef:
    """A stand-in a test adds to its stack (``Stack.stand_ins``) next to the file's services.

    Attributes:
        name: process name (and log file name).
        spec: builds the process spec from the stack and the service's free port.
        prepare: run once before the first start, with the stack.
        needs: services to start first.
    """

    name: str
    spec: Callable[[Stack, int], ProcessSpec]
    prepare: Callable[[Stack], None] | None = None
    needs: tuple[str, ...] = ()


#: The session's keys (scripts/stack_keys.py, as ``make demo`` makes a data folder's): made with
#: ``secrets`` per session and written to ``<session folder>/secrets/`` (mode 0600) when the stack
#: is made (:meth:`Stack.__post_init__`); the services read them from there (the stack file's
#: ``*_FILE`` settings). Tests act as admin or as the pipeline (promoter), the inference-gateway
#: reads the registry with its own key.
#: The stack's identities and, for the tests only, an analyst of the inference-gateway (predict,
#: read_features, read_registry, read_monitoring: the tests read the echoed features, the slots and
#: the gateway's metrics; the demo's ``gateway-client`` has ``predict`` only).
E2E_IDENTITIES = (
    *stack_keys.IDENTITIES,
    stack_keys.Identity(
        "gateway-analyst",
        "analyst",
        (),
        ("predict", "read_features", "read_registry", "read_monitoring"),
        holder="the end-to-end tests' caller of the inference-gateway",
    ),
)
KEYS = stack_keys.new_keys(E2E_IDENTITIES)
ADMIN_TOKEN = KEYS["admin"]
PROMOTER_TOKEN = KEYS["pipeline"]
VIEWER_TOKEN = KEYS["inference-gateway"]
MODEL_NAME = "credit-risk"
#: The MLflow users' passwords for the session (its basic-auth app): generated per session, never
#: fixed values, written with the keys to ``<session folder>/secrets/mlflow-<user>.password``
#: (scripts/stack_keys.py), the files deploy/stack/local.toml gives the processes.
MLFLOW_PASSWORDS = {user: secrets.token_urlsafe(18) for user in stack_keys.MLFLOW_USERS}

#: The API key of the inference-gateway's callers in the tests (``gateway-analyst``: predict,
#: read_features, read_registry, read_monitoring).
GATEWAY_KEY = KEYS["gateway-analyst"]
#: REST headers carrying :data:`GATEWAY_KEY`.
GATEWAY_HEADERS = {"authorization": f"Bearer {GATEWAY_KEY}"}
#: REST headers of a direct call to a model-server slot: the inference-gateway's own credential
#: (:data:`VIEWER_TOKEN`), which ``secrets/model-server-api-keys.json`` gives ``predict``.
MODEL_SERVER_HEADERS = {"authorization": f"Bearer {VIEWER_TOKEN}"}


#: The session's TLS (scripts/stack_certs.py, as ``make demo`` makes a data folder's): one CA and
#: one certificate per server for the whole session, in a folder of its own (every stack of the
#: session uses it: the stack file's ``tls_dir``), removed at exit. Every server of the stack
#: speaks TLS only; the tests trust this CA (:func:`stack_channel`, :data:`VERIFY`), as do the
#: pipelines' components and MLflow's clients in this process (the environment, below).
TLS = stack_certs.write_certificates(Path(tempfile.mkdtemp(prefix="creditrisk-e2e-tls-")), label="e2e")
atexit.register(shutil.rmtree, TLS.directory, ignore_errors=True)
os.environ["CREDITRISK_TLS_CA_FILE"] = str(TLS.ca_cert)
os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(TLS.ca_cert)
#: ``verify=`` of every HTTP client of the stack's servers (httpx): the session's CA only.
VERIFY = ssl.create_default_context(cafile=str(TLS.ca_cert))


def stack_channel(target: str) -> grpc.Channel:
    """A sync channel to one of the stack's servers over TLS (the session's CA); close it."""
    return grpc.secure_channel(
        target, grpc.ssl_channel_credentials(root_certificates=TLS.ca_cert.read_bytes())
    )


def stack_aio_channel(target: str, **kwargs: Any) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to one of the stack's servers over TLS (the session's CA)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=TLS.ca_cert.read_bytes())
    return grpc.aio.secure_channel(target, credentials, **kwargs)


def write_session_keys(workdir: Path) -> None:
    """The session's key files in ``workdir/secrets`` (:data:`KEYS`; subjects ``e2e-pipeline``,
    ``e2e-admin``, ...), the refusal test's lower-role keys (creditrisk_testing.refusal: every
    role but one) merged into the services' ``api-keys.json``; the MLflow users' password files
    (:data:`MLFLOW_PASSWORDS`)."""
    stack_keys.write_keys(
        workdir, KEYS, identities=E2E_IDENTITIES, subject_prefix="e2e-", extra_api_keys=REFUSAL_API_KEYS
    )
    MLFLOW_PASSWORDS.update(stack_keys.write_mlflow_passwords(workdir, MLFLOW_PASSWORDS))


#: The challenger mode of the second inference-gateway (``inference-gateway-challenger``), read when
#: it starts: a test sets it (``shadow`` or ``canary``) and restarts the gateway to change it.
CHALLENGER_MODE_KEY = "challenger_mode"
CANARY_SHARE_KEY = "canary_share"

#: Settings over the stack file's, by process: the registry-gateway's alias watch polls faster.
E2E_ENV: dict[str, dict[str, str]] = {
    "registry-gateway": {"REGISTRY_GATEWAY_WATCH_POLL_INTERVAL_S": "0.5"},
}


def e2e_variables(stack: Stack) -> dict[str, str]:
    """The stack file's variables for the session: everything in its folder (its keys and MLflow
    passwords too), the e2e experiment, the drift-service without warm-up (a (re)start is ready in
    a few seconds: Evidently is imported on the first ComputeDrift), the challenger's mode from
    ``stack.cache``."""
    return {
        "data_dir": str(stack.workdir),
        "tls_dir": str(TLS.directory),
        "model_name": MODEL_NAME,
        "experiment": "credit-risk-e2e",
        "drift_warm_up": "false",
        "challenger_mode": str(stack.cache.get(CHALLENGER_MODE_KEY, "shadow")),
        "canary_share": str(stack.cache.get(CANARY_SHARE_KEY, 0.0)),
    }


def mlflow_auth(user: str) -> tuple[str, str]:
    """HTTP basic credentials of the session's MLflow ``user`` (``httpx``/``requests`` ``auth=``).

    Raises:
        KeyError: not one of the platform's MLflow users.
    """
    return user, MLFLOW_PASSWORDS[user]


def mlflow_env(user: str) -> dict[str, str]:
    """``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of the session's MLflow ``user``."""
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORDS[user]}


def drift_data_dir(stack: Stack) -> Path:
    """The drift-service's data folder: the SQLite store (``drift.db``) and the HTML reports."""
    return stack.workdir / "drift-service"


def drift_datasets_dir(stack: Stack) -> Path:
    """The one folder the drift-service reads explicit reference datasets from (the stack file's
    ``drift_dataset_roots``: ``DRIFT_SERVICE_DATASET_ROOTS``); made here."""
    folder = stack.workdir / "datasets"
    folder.mkdir(exist_ok=True)
    return folder


def _ingest_german_credit(stack: Stack) -> None:
    """``python -m feature_service.ingest`` in the feature-service's environment of the file."""
    spec = stack.resolve("feature-service").spec
    spec = dataclasses.replace(spec, env={**spec.env, **stack.feature_env})
    result = subprocess.run(
        [str(service_python("feature-service")), "-m", "feature_service.ingest", "--csv", str(GERMAN_CSV)],
        cwd=spec.cwd,
        env=process_environment(spec),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        umask=CHILD_UMASK,  # the feature store's files 0600, as the supervisor's children's
    )
    if result.returncode != 0:
        pytest.fail(f"ingestion failed ({result.returncode}):\n{result.stderr[-3000:]}", pytrace=False)


def _ensure_champion(stack: Stack) -> None:
    first_champion(stack)


def _ensure_challenger(stack: Stack) -> None:
    challenger_version(stack)


#: One-off preparation of a file's service, run before its first start in the session.
PREPARE: dict[str, Callable[[Stack], None]] = {
    "feature-service": _ingest_german_credit,
    "model-server-champion": _ensure_champion,
    "model-server-mlserver": _ensure_champion,
    "model-server-challenger": _ensure_challenger,
}


def inference_gateway_http(stack: Stack, name: str = "inference-gateway") -> str:
    """Base URL of the REST API of gateway ``name`` (``inference-gateway``, ``inference-gateway-v2``
    or ``inference-gateway-challenger``), starting it if necessary."""
    stack.target(name)
    return f"https://127.0.0.1:{stack.ports[f'{name}-http']}"


def challenger_version(stack: Stack) -> int:
    """Register the trained run once more and point ``credit-risk@challenger`` at it (SetAlias by
    the promoter, once per session); returns the version."""
    if "challenger_version" in stack.cache:
        return stack.cache["challenger_version"]
    job = first_champion(stack)["job"]
    version = register(stack, job.result.mlflow_run_id).version
    with stack_channel(stack.target("registry-gateway")) as registry:
        rpb_grpc.ModelRegistryServiceStub(registry).SetAlias(
            rpb.SetAliasRequest(
                name=MODEL_NAME, alias="challenger", version=version, reason="e2e: challenger"
            ),
            metadata=bearer(PROMOTER_TOKEN),
            timeout=60,
        )
    stack.cache["challenger_version"] = version
    return version


def inference_gateway_challenger_http(stack: Stack) -> str:
    """Base URL of the second gateway's REST API (champion + challenger slot), starting it first."""
    return inference_gateway_http(stack, "inference-gateway-challenger")


# ---------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Services started on demand under one supervisor; see the module docstring."""

    supervisor: Supervisor
    workdir: Path
    targets: dict[str, str] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)
    #: further ports of running services, ``<name>-<port>`` as the stack file names them (e.g.
    #: ``inference-gateway-http``, the REST port; ``<name>-metrics``, a kit service's Prometheus)
    ports: dict[str, int] = field(default_factory=dict)
    #: results shared by the tests of the session (the trained run, the first champion)
    cache: dict[str, Any] = field(default_factory=dict)
    #: feature-service settings over the file's (e.g. the real profile's Redis and PostgreSQL,
    #: ``FEATURE_SERVICE_PROFILE=real``: the gateway benchmark)
    feature_env: dict[str, str] = field(default_factory=dict)
    #: variables added to every service's environment (the OTEL_* of the session's receiver)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: applied to each process spec just before it starts (``(name, spec) -> spec``): a test
    #: forces a start to fail with it (test_stack_recovery_e2e.py)
    spec_hook: Callable[[str, ProcessSpec], ProcessSpec] | None = None
    #: processes a test adds, by name, over the file's (test_stack_recovery_e2e.py)
    stand_ins: dict[str, ServiceDef] = field(default_factory=dict)
    #: the start in progress (outermost :meth:`start` call): each name it starts, with the
    #: supervisor's record of that name before (None between starts)
    _attempt: list[tuple[str, ManagedProcess | None]] | None = field(default=None, init=False, repr=False)
    #: each file service's ports at its last start: a restart keeps all but the main one (the
    #: drift-service's report URLs stay valid)
    _last_ports: dict[str, dict[str, int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        write_session_keys(self.workdir)

    def target(self, name: str) -> str:
        """``host:port`` of a running service, starting it (and what it needs) first if necessary."""
        if name in self.targets and self.supervisor[name].alive:
            return self.targets[name]
        return self.start(name)

    def resolve(self, name: str, port: int | None = None) -> ResolvedProcess:
        """The stack file's process ``name`` for this session, with the ports of the services
        running now; its main port ``port`` (a free one when None), its other ports those of its
        last start."""
        running = {
            other: ports
            for other, ports in self._last_ports.items()
            if other in self.targets and self.supervisor[other].alive
        }
        pinned = dict(self._last_ports.get(name, {}))
        main = (PLATFORM.processes[name].get("ports") or [None])[0]
        pinned.pop(main, None)
        if port is not None and main is not None:
            pinned[main] = port
        return PLATFORM.resolve(name, variables=e2e_variables(self), running=running, ports=pinned)

    def start(self, name: str, port: int | None = None, *, wait: bool = True) -> str:
        """Start one service (what it needs first) and return its ``host:port``.

        Every start goes through here, a restart too: the process gets :attr:`extra_env` (the
        session's ``OTEL_*``), and its ports other than the main one are recorded in :attr:`ports`.

        All or nothing: if anything fails before the service is ready (its readiness, a
        dependency's, a preparation, the test's timeout), every process this call started is
        stopped, in reverse order, and its target and ports are forgotten; then the error
        propagates (a readiness failure carries the process's log tail). Services that were
        running before the call are left alone. On Ctrl-C nothing is rolled back here: the session
        is ending and the supervisor's ``with`` stops everything.

        Args:
            name: A process of the stack file or of :attr:`stand_ins`; it must not be running.
            port: Its main port; a free one when None (a restart that dependants must find again
                passes its previous port).
            wait: Wait until it is ready (False: return once it is spawned; its dependencies are
                waited for either way).
        """
        if self._attempt is not None:  # a dependency of the start in progress: part of its attempt
            return self._start(name, port, wait)
        self._attempt = []
        targets, ports = dict(self.targets), dict(self.ports)
        try:
            return self._start(name, port, wait)
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

    def _start(self, name: str, port: int | None, wait: bool) -> str:
        stand_in = self.stand_ins.get(name)
        if stand_in is None and name not in PLATFORM.processes:
            raise KeyError(f"{name}: not in {STACK_FILE} nor among the stand-ins")
        for needed in stand_in.needs if stand_in is not None else PLATFORM.dependencies(name):
            self.target(needed)
        prepare = stand_in.prepare if stand_in is not None else PREPARE.get(name)
        if prepare is not None and name not in self.prepared:
            prepare(self)
            self.prepared.add(name)
        if stand_in is not None:
            port = free_port() if port is None else port
            spec, own = stand_in.spec(self, port), {"port": port}
        else:
            resolved = self.resolve(name, port)
            spec, own = resolved.spec, dict(resolved.ports)
            port = int(resolved.address.rpartition(":")[2])
            if not Path(spec.argv[0]).exists():
                pytest.fail(f"{spec.argv[0]} is missing: run `make setup` first", pytrace=False)
        env = {**self.extra_env, **spec.env, **E2E_ENV.get(name, {})}
        if name == "feature-service":
            env.update(self.feature_env)
        for port_name, number in list(own.items())[1:]:
            self.ports[f"{name}-{port_name}"] = number
        spec = dataclasses.replace(spec, env=env)
        if self.spec_hook is not None:
            spec = self.spec_hook(name, spec)
        assert self._attempt is not None
        previous = next((p for p in self.supervisor.processes if p.name == name), None)
        self._attempt.append((name, previous))
        self.supervisor.start(spec, wait=wait)
        if stand_in is None:
            self._last_ports[name] = own
        self.targets[name] = f"127.0.0.1:{port}"
        return self.targets[name]

    def stop(self, name: str) -> int | None:
        """Stop one service (SIGTERM, drain, then SIGKILL after its grace); returns its exit code."""
        self.supervisor.stop(name)
        self.targets.pop(name, None)
        return self.supervisor[name].returncode


# ---------------------------------------------------------------------- shared results


def authed_channel(target: str, token: str = PROMOTER_TOKEN) -> grpc.Channel:
    """A sync channel to ``target`` whose every call carries ``token`` (default: the pipeline's
    key, which reads and writes features); close it (``with``) when done."""
    return grpc.intercept_channel(stack_channel(target), BearerInterceptor(token))


def gateway_channel(target: str, token: str = GATEWAY_KEY) -> grpc.Channel:
    """A sync channel to an inference-gateway whose every call carries ``token``; close it."""
    from creditrisk_kit.auth import BearerInterceptor

    return grpc.intercept_channel(stack_channel(target), BearerInterceptor(token))


def gateway_aio_channel(target: str, token: str = GATEWAY_KEY) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to an inference-gateway whose every call carries ``token``."""
    from creditrisk_kit.auth import bearer_interceptors

    return stack_aio_channel(target, interceptors=bearer_interceptors(token))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a caller (a key of :data:`KEYS`, or a refusal test key)."""
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
    with authed_channel(stack.target("training-service")) as channel:
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
    with stack_channel(stack.target("registry-gateway")) as registry:
        stub = rpb_grpc.ModelRegistryServiceStub(registry)
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
    with stack_channel(stack.target("registry-gateway")) as registry:
        stub = rpb_grpc.ModelRegistryServiceStub(registry)
        promoted = stub.PromoteModelVersion(
            rpb.PromoteModelVersionRequest(name=MODEL_NAME, version=registered.version),
            metadata=bearer(PROMOTER_TOKEN),
            timeout=300,
        )
    stack.cache["first_champion"] = {"job": job, "registered": registered, "promoted": promoted}
    stack.cache["champion_version"] = registered.version
    return stack.cache["first_champion"]

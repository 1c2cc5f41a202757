"""A real ``mlflow server`` for a test: SQLite or a fresh PostgreSQL database, one worker.

The server runs from the calling environment's Python (``python -m mlflow server``; the suite's
environment must have ``mlflow[auth]``), with artifacts served by the server itself
(``--serve-artifacts``), job execution and telemetry off, and stops with its whole process group.

Authentication is on by default: MLflow's own basic-auth app (``--app-name basic-auth``, see
https://mlflow.org/docs/latest/self-hosting/security/basic-http-auth/) with
``default_permission = NO_PERMISSIONS`` and the users of :data:`ROLES` provisioned in MLflow's auth
store before the server starts. Their passwords are generated once per test process
(:data:`CREDENTIALS`), so every server a session starts accepts the same credentials; a test
process acts as one of them through ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
(:func:`credentials_env`, :func:`acting_as`), which MLflow's client reads.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from creditrisk_testing.entrypoints import free_port
from creditrisk_testing.processes import start_group, stop_group, wait_http
from creditrisk_testing.sqlstores import sqlalchemy_url

#: Variables that keep a test server lean: no job runner, no periodic tasks, no telemetry, one
#: OpenMP thread (2-core machines).
LEAN_ENV: dict[str, str] = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "OMP_NUM_THREADS": "1",
}


#: The test users and their grants (MLflow resource type, name pattern, permission); ``admin`` is
#: MLflow's admin (every permission). ``writer`` does what the registry-gateway and the
#: training-service together may (runs in any experiment, versions, aliases, tags), ``reader`` what
#: the model-server and the drift-service may (read registered models, runs and artifacts),
#: ``stranger`` is authenticated but has no grant.
ROLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "admin": (),
    "writer": (("registered_model", "*", "MANAGE"), ("experiment", "*", "MANAGE")),
    "reader": (("registered_model", "*", "READ"), ("experiment", "*", "READ")),
    "stranger": (),
}
#: Each role's password, generated once per test process (never a fixed value).
CREDENTIALS: dict[str, str] = {role: secrets.token_urlsafe(18) for role in ROLES}
#: The Flask secret key of every server this process starts (CSRF of MLflow's sign-up page).
_FLASK_SECRET = secrets.token_urlsafe(24)
#: The provisioned users' store every server of this process starts from (:func:`_users_database`).
_TEMPLATE: Path | None = None


def credentials_env(role: str) -> dict[str, str]:
    """``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of ``role`` (a key of :data:`ROLES`).

    Raises:
        KeyError: an unknown role.
    """
    return {"MLFLOW_TRACKING_USERNAME": role, "MLFLOW_TRACKING_PASSWORD": CREDENTIALS[role]}


@contextmanager
def acting_as(role: str) -> Iterator[None]:
    """Set :func:`credentials_env` of ``role`` in ``os.environ`` for the block (restored after)."""
    with acting_as_user(role, CREDENTIALS[role]):
        yield


@contextmanager
def acting_as_user(user: str, password: str) -> Iterator[None]:
    """MLflow's client credentials ``user`` / ``password`` in ``os.environ`` for the block
    (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``, restored after): any user, e.g. one a test made."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update({"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _users_database() -> Path:
    """This process's provisioned auth store (MLflow's ``SqlAlchemyStore``: the users of
    :data:`ROLES`, their grants), made once and copied for each server: migrating and filling it
    takes seconds, minutes on a loaded machine. Removed when the process exits."""
    global _TEMPLATE
    if _TEMPLATE is not None:
        return _TEMPLATE
    # mlflow is the calling suite's (not this library's) dependency
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore  # type: ignore[import-not-found]

    folder = Path(tempfile.mkdtemp(prefix="mlflow-auth-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "users.db"
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{path}")
    for role, grants in ROLES.items():
        store.create_user(role, CREDENTIALS[role], is_admin=role == "admin")
        for resource_type, pattern, permission in grants:
            store.grant_user_permission(role, resource_type, pattern, permission)
    store.engine.dispose()
    _TEMPLATE = path
    return path


def _prepare_auth(data_dir: Path) -> dict[str, str]:
    """Write the auth ini and the users' store (a copy of :func:`_users_database`) in
    ``<data_dir>/auth``, both mode 0600; returns the server's extra environment."""
    auth_dir = data_dir / "auth"
    auth_dir.mkdir(parents=True, exist_ok=True)
    users = auth_dir / "users.db"
    shutil.copyfile(_users_database(), users)
    users.chmod(0o600)
    config = auth_dir / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{users}\nadmin_username = admin\nadmin_password = {CREDENTIALS['admin']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # a password check is a slow hash per call without it (seconds on a loaded machine)
        "auth_cache_ttl_seconds = 600\n"
    )
    config.chmod(0o600)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": _FLASK_SECRET}


def create_postgres_database(postgres_dsn: str, prefix: str) -> tuple[str, str]:
    """Create a database named ``<prefix>_<10 hex>`` on the server of ``postgres_dsn``.

    Returns:
        (its SQLAlchemy URL for ``--backend-store-uri``, its name).

    Raises:
        psycopg.Error: the server refused.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scheme, rest = postgres_dsn.split("://", 1)
    location, _, query = rest.partition("?")
    url = f"{scheme}://{location.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    return sqlalchemy_url(url), name


def drop_postgres_database(postgres_dsn: str, name: str) -> None:
    """Drop the database ``name`` (its connections terminated first); nothing if it is gone."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class MlflowServer:
    """A started ``mlflow server``: its URL, its process group leader, its log, and whether it
    needs credentials (:data:`ROLES`)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    auth: bool = field(default=True)

    def wait_healthy(self, timeout_s: float = 180.0) -> None:
        """Wait until ``/health`` answers 200.

        Raises:
            RuntimeError: the server exited first (the message ends with its log).
            TimeoutError: no answer within ``timeout_s`` seconds.
        """
        wait_http(f"{self.url}/health", timeout_s, self.proc, log=self.log)

    def stop(self) -> None:
        """Stop its whole process group (the CLI and its uvicorn worker)."""
        stop_group(self.proc)


def start_mlflow_server(data_dir: Path, *, backend_uri: str | None = None, auth: bool = True) -> MlflowServer:
    """Start ``mlflow server`` on a free loopback port, without waiting for it (several servers
    can start side by side; then :meth:`MlflowServer.wait_healthy` each).

    Args:
        data_dir: Holds ``mlflow.db`` (when no ``backend_uri``), ``artifacts/``, ``server.log`` and,
            with ``auth``, ``auth/`` (the users' SQLite database and the ini, mode 0600).
        backend_uri: The backend store (default ``sqlite:///<data_dir>/mlflow.db``).
        auth: MLflow's basic-auth app with the users of :data:`ROLES` (anonymous calls get 401).

    Raises:
        OSError: the command could not be started.
    """
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "server"]
    argv += ["--backend-store-uri", backend_uri or f"sqlite:///{data_dir / 'mlflow.db'}"]
    argv += ["--serve-artifacts", "--artifacts-destination", str(data_dir / "artifacts")]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, **LEAN_ENV}
    if auth:
        argv += ["--app-name", "basic-auth"]
        env.update(_prepare_auth(data_dir))
    log = data_dir / "server.log"
    proc = start_group(argv, env=env, log=log)
    return MlflowServer(f"http://127.0.0.1:{port}", proc, log, auth)


@contextmanager
def mlflow_server(
    data_dir: Path,
    *,
    backend_uri: str | None = None,
    timeout_s: float = 180.0,
    auth: bool = True,
    role: str | None = "writer",
) -> Iterator[str]:
    """Run ``mlflow server`` (see :func:`start_mlflow_server`) until the block ends; yields its URL.

    With ``auth`` and a ``role``, the block acts as that user (:func:`acting_as`).

    Raises:
        RuntimeError: the server exited before answering (the message ends with its log).
        TimeoutError: it did not answer in time. The server is stopped in both cases.
    """
    server = start_mlflow_server(data_dir, backend_uri=backend_uri, auth=auth)
    try:
        server.wait_healthy(timeout_s)
        if auth and role is not None:
            with acting_as(role):
                yield server.url
        else:
            yield server.url
    finally:
        server.stop()

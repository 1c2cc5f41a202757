"""A real ``mlflow server`` for a test: SQLite or a fresh PostgreSQL database, one worker.

The server runs from the calling environment's Python (``python -m mlflow server``; the suite's
environment must have mlflow), with artifacts served by the server itself
(``--serve-artifacts``), job execution and telemetry off, and stops with its whole process group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """A started ``mlflow server``: its URL, its process group leader and its log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

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


def start_mlflow_server(data_dir: Path, *, backend_uri: str | None = None) -> MlflowServer:
    """Start ``mlflow server`` on a free loopback port, without waiting for it (several servers
    can start side by side; then :meth:`MlflowServer.wait_healthy` each).

    Args:
        data_dir: Holds ``mlflow.db`` (when no ``backend_uri``), ``artifacts/`` and ``server.log``.
        backend_uri: The backend store (default ``sqlite:///<data_dir>/mlflow.db``).

    Raises:
        OSError: the command could not be started.
    """
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "server"]
    argv += ["--backend-store-uri", backend_uri or f"sqlite:///{data_dir / 'mlflow.db'}"]
    argv += ["--serve-artifacts", "--artifacts-destination", str(data_dir / "artifacts")]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = data_dir / "server.log"
    proc = start_group(argv, env={**os.environ, **LEAN_ENV}, log=log)
    return MlflowServer(f"http://127.0.0.1:{port}", proc, log)


@contextmanager
def mlflow_server(
    data_dir: Path, *, backend_uri: str | None = None, timeout_s: float = 180.0
) -> Iterator[str]:
    """Run ``mlflow server`` (see :func:`start_mlflow_server`) until the block ends; yields its URL.

    Raises:
        RuntimeError: the server exited before answering (the message ends with its log).
        TimeoutError: it did not answer in time. The server is stopped in both cases.
    """
    server = start_mlflow_server(data_dir, backend_uri=backend_uri)
    try:
        server.wait_healthy(timeout_s)
        yield server.url
    finally:
        server.stop()

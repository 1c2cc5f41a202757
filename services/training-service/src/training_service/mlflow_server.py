"""How to start the MLflow tracking server on this platform (argv + environment for a supervisor).

``mlflow server`` with its defaults took ~95 s to answer on the 2-core development machine
(docs/design.md, "Measured facts"): 4 uvicorn workers, each importing MLflow and its server app,
plus the Huey job consumers and periodic tasks (GenAI jobs, trace roll-ups) this platform does not
use. The command built here sizes it for a small machine:

* ``--workers`` 1 by default (each worker costs a full MLflow import, ~several seconds of CPU on
  2 cores; one worker serves a training service and a registry gateway easily);
* ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no Huey consumers, no periodic tasks);
* ``--serve-artifacts --artifacts-destination <dir>``: clients never touch the artifact folder
  directly, they upload and download through the tracking server (``mlflow-artifacts:/`` URIs);
* backend store: SQLite file in the embedded profile, PostgreSQL in the real one
  (``postgresql+psycopg://`` URL; the database or schema is created by :func:`ensure_postgres_database`);
* ``--app-name basic-auth`` (unless ``--no-auth``): MLflow's own basic-auth app, every call but
  ``/health`` needs a user of :mod:`training_service.mlflow_auth` (provisioned before the server
  starts, the users' database and secrets in ``<dir>/auth``); the users' passwords may be given as
  files, ``CREDITRISK_MLFLOW_PASSWORD_<USER>_FILE`` (read first thing, exit 2 naming the variable
  when a file cannot be read; :func:`creditrisk_kit.secrets.env_from_files`).

CLI::

    python -m training_service.mlflow_server --profile embedded --dir .run/embedded/mlflow \
        [--port 5000] [--print] [--no-auth]
    python -m training_service.mlflow_server --profile real --postgres-dsn postgresql://postgres@127.0.0.1:5432/test

``--print`` prints the argv (one per line) and the environment (the Flask secret key included, never
a password) instead of running it;
``--measure`` starts it, waits for ``/health`` and prints the seconds it took, then stops it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Profile = Literal["embedded", "real"]

DEFAULT_WORKERS = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
#: Environment that switches off what a tracking server for batch training does not need.
LEAN_ENV: dict[str, str] = {
    # No Huey job consumers nor periodic tasks (GenAI evaluation jobs, trace roll-ups).
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    # One OpenMP/BLAS thread per process: 2 cores are shared with the services.
    "OMP_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


@dataclass(frozen=True)
class ServerCommand:
    """A command for the supervisor.

    Attributes:
        argv: program and arguments (``argv[0]`` is this environment's Python).
        env: variables to add to the inherited environment.
        url: the tracking URI clients use (``http://host:port``).
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""


def sqlalchemy_postgres_url(dsn: str, database: str | None = None) -> str:
    """A libpq ``postgresql://`` URL as a SQLAlchemy URL for psycopg 3, optionally another database."""
    parts = urlsplit(dsn)
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(("postgresql+psycopg", parts.netloc, path, parts.query, parts.fragment))


def ensure_postgres_database(dsn: str, database: str) -> str:
    """Create ``database`` on the server of ``dsn`` if it does not exist.

    MLflow's schema has tables named like common words (``experiments``, ``runs``, ``metrics``), so
    it gets a database of its own rather than sharing the default schema of ``test``.

    Returns:
        The libpq DSN of ``database`` (same server, user and options).
    """
    import psycopg  # the real profile only; psycopg comes with the testing/devstack extras

    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def server_command(
    *,
    profile: Profile,
    data_dir: Path,
    postgres_dsn: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = DEFAULT_WORKERS,
    python: str = sys.executable,
    auth: bool = True,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
) -> ServerCommand:
    """The ``mlflow server`` command of a profile.

    Args:
        profile: ``embedded`` (SQLite file ``<data_dir>/mlflow.db``) or ``real`` (PostgreSQL).
        data_dir: folder of the SQLite file and of the served artifacts (``<data_dir>/artifacts``).
        postgres_dsn: libpq DSN of the MLflow database; required for ``real``.
        host: interface to bind.
        port: port to listen on.
        workers: uvicorn worker processes.
        python: interpreter of an environment with MLflow installed.
        auth: MLflow's basic-auth app, its users provisioned now (:func:`training_service.mlflow_auth.prepare`
            on ``data_dir``; the passwords are in ``<data_dir>/auth/secrets.json`` or the environment).
        tls_cert_file, tls_key_file: a certificate chain and its key (PEM): the server speaks HTTPS
            only (uvicorn's ``--ssl-certfile`` / ``--ssl-keyfile``, read at start: a renewed
            certificate needs a restart) and the URL is ``https://``; clients trust its CA with
            MLflow's ``MLFLOW_TRACKING_SERVER_CERT_PATH``.

    Returns:
        argv, extra environment and client URL.

    Raises:
        ValueError: ``real`` without a DSN; one of the TLS files without the other.
    """
    if (tls_cert_file is None) != (tls_key_file is None):
        raise ValueError("tls_cert_file and tls_key_file must be given together")
    data_dir = data_dir.resolve()
    if profile == "embedded":
        backend = f"sqlite:///{data_dir / 'mlflow.db'}"
    else:
        if not postgres_dsn:
            raise ValueError("the real profile needs postgres_dsn")
        backend = sqlalchemy_postgres_url(postgres_dsn)
    argv = [
        python,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        str(data_dir / "artifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = dict(LEAN_ENV)
    if auth:
        from training_service.mlflow_auth import prepare

        argv += ["--app-name", "basic-auth"]
        env.update(prepare(data_dir).env)
    scheme = "http"
    if tls_cert_file is not None and tls_key_file is not None:
        # mlflow passes --uvicorn-opts through shlex.split: quote the paths
        cert, key = shlex.quote(str(tls_cert_file)), shlex.quote(str(tls_key_file))
        argv += ["--uvicorn-opts", f"--ssl-certfile {cert} --ssl-keyfile {key}"]
        scheme = "https"
    return ServerCommand(argv=argv, env=env, url=f"{scheme}://{host}:{port}")


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``<url>/health`` until it answers 200.

    Returns:
        Seconds waited.

    Raises:
        TimeoutError: no answer within ``timeout_s``.
        RuntimeError: ``proc`` exited before answering.
    """
    start = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 (http URL we built)
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {proc.returncode} before answering")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"mlflow server at {url} did not answer /health within {timeout_s} s")
        time.sleep(0.2)


def start(command: ServerCommand, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (stop it with :func:`stop`)."""
    env = {**os.environ, **command.env}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (kept by the child)
    return subprocess.Popen(
        command.argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop the server's process group (the mlflow CLI and its uvicorn workers), by its PID."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m training_service.mlflow_server", description=__doc__)
    parser.add_argument("--profile", choices=["embedded", "real"], default="embedded")
    parser.add_argument("--dir", type=Path, default=Path(".run/embedded/mlflow"))
    parser.add_argument("--postgres-dsn", default=os.environ.get("TRAINING_SERVICE_MLFLOW_POSTGRES_DSN"))
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--no-auth", action="store_true", help="no basic-auth app (anyone may call)")
    parser.add_argument("--tls-cert", type=Path, help="certificate chain (PEM): serve HTTPS only")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument("--print", action="store_true", help="print argv and env, do not run")
    parser.add_argument("--measure", action="store_true", help="start, time /health, stop")
    args = parser.parse_args(argv)
    if not args.no_auth:  # the users' passwords as files: CREDITRISK_MLFLOW_PASSWORD_<USER>_FILE
        from creditrisk_kit.secrets import env_from_files

        from training_service.mlflow_auth import PLATFORM_USERS, password_variable

        env_from_files([password_variable(user) for user in PLATFORM_USERS])
    args.dir.mkdir(parents=True, exist_ok=True)
    command = server_command(
        profile=args.profile,
        data_dir=args.dir,
        postgres_dsn=args.postgres_dsn,
        host=args.host,
        port=args.port,
        workers=args.workers,
        auth=not args.no_auth,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
    )
    if args.print:
        print("\n".join(command.argv))
        for key, value in command.env.items():
            print(f"{key}={value}")
        return 0
    if args.measure:
        proc = start(command, args.dir / "server.log")
        try:
            seconds = wait_healthy(command.url, 300, proc)
            print(f"mlflow server answered /health after {seconds:.1f} s ({args.workers} worker(s))")
        finally:
            stop(proc)
        return 0
    env = {**os.environ, **command.env}
    if not args.no_auth:
        # the users are provisioned (server_command ran mlflow_auth.prepare): the server never needs
        # their passwords, so its processes do not hold them (/proc/<pid>/environ of the same user)
        from training_service.mlflow_auth import PLATFORM_USERS, password_variable

        for user in PLATFORM_USERS:
            env.pop(password_variable(user), None)
            env.pop(f"{password_variable(user)}_FILE", None)
    os.execvpe(command.argv[0], command.argv, env)  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())

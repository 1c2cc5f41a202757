"""Run one alias slot: ``python -m model_server {seldon|mlserver|drain|ready} [options]``.

* ``seldon``: execs ``python -m model_server.launch seldon model_server.seldon_model.CreditRiskModel
  --service-type MODEL`` (seldon-core-microservice's arguments: REST, gRPC and metrics ports, REST /
  gRPC worker counts; every listener on ``MODEL_SERVER_HOST``);
* ``mlserver``: writes ``settings.json`` (``host`` = ``MODEL_SERVER_HOST``) + ``model-settings.json``
  into ``--dir`` and execs ``python -m model_server.launch mlserver <dir>`` (``mlserver start`` with
  the kit's credential check);
* ``drain``: flips the slot's readiness to not-ready in every serving process (the supervisor's
  ``before_stop`` hook), then the supervisor stops the whole process group;
* ``ready``: exit 0 when the slot is ready (prints the aggregated state).

Both check credentials on their scoring routes (:mod:`model_server.access`); the launcher exits
with status 2 when ``MODEL_SERVER_AUTH_*`` names no credential source (and
``MODEL_SERVER_AUTH_DISABLED`` is not true). Both runtimes run with ``OMP_NUM_THREADS=1`` and
``ORT_DISABLE_TELEMETRY=1`` (unless set; see :mod:`model_server`) and a fresh state folder
(``MODEL_SERVER_STATE_DIR``, default ``<tmp>/model-server-<model>-<alias>-<http port>``).
``--print`` prints the argv and environment instead of running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SELDON_CLASS = "model_server.seldon_model.CreditRiskModel"
MLSERVER_RUNTIME = "model_server.mlserver_runtime.CreditRiskRuntime"

#: Default ports of each runtime. MLServer's are its own; seldon-core's are its own (REST 9000,
#: metrics 6000) except gRPC: seldon-core's 5000 is MLflow's default port, the tracking server
#: every slot reads, so two defaults on one machine would clash.
SELDON_PORTS = {"http": 9000, "grpc": 5001, "metrics": 6000}
MLSERVER_PORTS = {"http": 8080, "grpc": 8081, "metrics": 8082}


@dataclass(frozen=True)
class Command:
    """A command for a supervisor: argv, variables added to the inherited environment, state folder."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path()


def _state_dir(model: str, alias: str, http_port: int) -> Path:
    given = os.environ.get("MODEL_SERVER_STATE_DIR")
    return Path(given) if given else Path(tempfile.gettempdir()) / f"model-server-{model}-{alias}-{http_port}"


def _reset_state(state_dir: Path) -> None:
    """A new run starts with no process states and no drain request."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for path in state_dir.glob("proc-*.json"):
        path.unlink(missing_ok=True)
    (state_dir / "draining").unlink(missing_ok=True)


def seldon_command(
    *,
    model: str,
    alias: str,
    http_port: int = SELDON_PORTS["http"],
    grpc_port: int = SELDON_PORTS["grpc"],
    metrics_port: int = SELDON_PORTS["metrics"],
    rest_workers: int = 1,
    grpc_workers: int = 1,
    rest_threads: int = 2,
    keepalive_s: int = 30,
    host: str = "127.0.0.1",
) -> Command:
    """The seldon-core microservice of one slot (see :mod:`model_server.seldon_model`).

    ``rest_threads`` > 1 makes gunicorn use its ``gthread`` worker, which keeps HTTP/1.1
    connections alive for ``keepalive_s`` idle seconds (seldon-core's own default is 2 s: kept
    above the inference-gateway's 15 s client-side idle expiry, so the client, not the server,
    closes an idle connection and no request meets a connection closing under it). gunicorn's
    ``sync`` worker (one thread) answers every request with ``Connection: close``: a client then
    pays a new TCP connection per prediction (docs/benchmarks.md, inference-gateway).

    ``host``: the interface of every listener (REST, gRPC, metrics), passed on as
    ``MODEL_SERVER_HOST`` (:mod:`model_server.launch`).
    """
    state_dir = _state_dir(model, alias, http_port)
    argv = [
        sys.executable,
        "-m",
        "model_server.launch",
        "seldon",
        SELDON_CLASS,
        "--service-type",
        "MODEL",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(rest_workers),
        "--threads",
        str(rest_threads),
        "--grpc-workers",
        str(grpc_workers),
        "--keepalive",
        str(keepalive_s),
        "--log-level",
        "WARNING",
    ]
    env = {
        "MODEL_SERVER_MODEL_NAME": model,
        "MODEL_SERVER_ALIAS": alias,
        "MODEL_SERVER_HOST": host,
        "MODEL_SERVER_STATE_DIR": str(state_dir),
        "MODEL_SERVER_SERVING_PROCESSES": str(rest_workers + grpc_workers),
        "GUNICORN_WORKERS": str(rest_workers),
        "GRPC_WORKERS": str(grpc_workers),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        # onnxruntime's telemetry thread, inherited by seldon-core's forked workers, killed them at exit
        "ORT_DISABLE_TELEMETRY": os.environ.get("ORT_DISABLE_TELEMETRY", "1"),
        # the custom metrics go to Prometheus (metrics port), not into every answer
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": os.environ.get("INCLUDE_METRICS_IN_CLIENT_RESPONSE", "false"),
    }
    return Command(argv, env, state_dir)


def mlserver_tracing_server(environ: Mapping[str, str]) -> str | None:
    """MLServer's ``tracing_server`` for the standard ``OTEL_*`` variables of ``environ``.

    MLServer's built-in tracing exports over OTLP/gRPC only, to one endpoint. So it is on when the
    variables select the ``otlp`` traces exporter (``OTEL_TRACES_EXPORTER`` or an OTLP endpoint) over
    ``grpc`` (the default protocol); the endpoint is ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, else the OTLP/gRPC default ``localhost:4317``.

    Returns:
        ``host:port`` (any ``http://`` scheme dropped: MLServer's exporter is insecure gRPC), or None
        for no MLServer tracing (no OTLP export, ``http/protobuf``, or ``OTEL_SDK_DISABLED=true``).
        The runtime's own span still continues the caller's ``traceparent`` then.

    Raises:
        ValueError: On an unsupported exporter name in ``OTEL_TRACES_EXPORTER``.
    """
    from creditrisk_telemetry import selected_exporters

    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if "otlp" not in selected_exporters(environ, "TRACES"):
        return None
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or "grpc"
    )
    if protocol != "grpc":
        return None
    endpoint = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or "localhost:4317"
    )
    return endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")


def mlserver_command(
    *,
    model: str,
    alias: str,
    directory: Path,
    http_port: int = MLSERVER_PORTS["http"],
    grpc_port: int = MLSERVER_PORTS["grpc"],
    metrics_port: int = MLSERVER_PORTS["metrics"],
    tracing_server: str | None = None,
    host: str = "127.0.0.1",
) -> Command:
    """MLServer with :class:`~model_server.mlserver_runtime.CreditRiskRuntime`; writes its settings
    into ``directory`` (V2 model name = the registered model name).

    ``tracing_server`` (``host:port`` of an OTLP/gRPC receiver, see :func:`mlserver_tracing_server`)
    turns on MLServer's own server spans of REST and gRPC requests, continuing the caller's trace.
    ``host``: MLServer's ``host`` setting, the interface of its REST, gRPC and metrics servers.
    """
    state_dir = _state_dir(model, alias, http_port)
    directory.mkdir(parents=True, exist_ok=True)
    server_settings: dict[str, object] = {
        "debug": False,
        "host": host,
        "parallel_workers": 0,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "server_name": "model-server",
        "load_models_at_startup": True,
    }
    if tracing_server:
        server_settings["tracing_server"] = tracing_server
    (directory / "settings.json").write_text(json.dumps(server_settings, indent=2))
    (directory / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model,
                "implementation": MLSERVER_RUNTIME,
                "parameters": {"extra": {"alias": alias}},
            },
            indent=2,
        )
    )
    env = {
        "MODEL_SERVER_MODEL_NAME": model,
        "MODEL_SERVER_ALIAS": alias,
        "MODEL_SERVER_HOST": host,
        "MODEL_SERVER_STATE_DIR": str(state_dir),
        "MODEL_SERVER_SERVING_PROCESSES": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "ORT_DISABLE_TELEMETRY": os.environ.get("ORT_DISABLE_TELEMETRY", "1"),
    }
    return Command([sys.executable, "-m", "model_server.launch", "mlserver", str(directory)], env, state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="what", required=True)
    for name, ports in (("seldon", SELDON_PORTS), ("mlserver", MLSERVER_PORTS)):
        p = sub.add_parser(name)
        p.add_argument("--http-port", type=int, default=ports["http"])
        p.add_argument("--grpc-port", type=int, default=ports["grpc"])
        p.add_argument("--metrics-port", type=int, default=ports["metrics"])
        p.add_argument("--print", action="store_true")
        if name == "seldon":
            p.add_argument("--rest-workers", type=int, default=int(os.environ.get("GUNICORN_WORKERS", "1")))
            p.add_argument("--grpc-workers", type=int, default=int(os.environ.get("GRPC_WORKERS", "1")))
            p.add_argument(
                "--rest-threads",
                type=int,
                default=int(os.environ.get("GUNICORN_THREADS", "2")),
                help="threads per REST worker; > 1 keeps connections alive (gunicorn gthread)",
            )
        else:
            p.add_argument(
                "--dir", type=Path, default=None, help="where settings.json goes (default: a temp dir)"
            )
    sub.add_parser("drain")
    sub.add_parser("ready")
    args = parser.parse_args(argv)

    from model_server import readiness
    from model_server.settings import load_settings

    if args.what in ("drain", "ready"):
        settings = load_settings()
        if args.what == "drain":
            readiness.request_drain(settings.state_dir)
        state = readiness.slot_readiness(settings.state_dir, settings.serving_processes)
        print(json.dumps(state.as_dict()))
        return 0 if (state.ready or args.what == "drain") else 1

    from creditrisk_kit.auth import AuthConfigurationError, Authenticator
    from creditrisk_kit.secrets import env_from_files

    # MLflow's client password from MLFLOW_TRACKING_PASSWORD_FILE (exit 2 naming it when
    # unreadable): set in this process, so the runtime exec'd below inherits it
    env_from_files(["MLFLOW_TRACKING_PASSWORD"])
    settings = load_settings()  # fail fast on bad settings, before forking anything

    try:  # the credential check's settings, checked before any runtime starts
        Authenticator.from_settings(settings)
    except AuthConfigurationError as exc:
        print(f"model-server: {exc}", file=sys.stderr)
        return 2
    if args.what == "seldon":
        command = seldon_command(
            model=settings.model_name,
            alias=settings.alias,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            rest_workers=args.rest_workers,
            grpc_workers=args.grpc_workers,
            rest_threads=args.rest_threads,
            host=settings.host,
        )
    else:
        directory = args.dir or Path(tempfile.mkdtemp(prefix="model-server-mlserver-"))
        command = mlserver_command(
            model=settings.model_name,
            alias=settings.alias,
            directory=directory,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            tracing_server=mlserver_tracing_server(os.environ),
            host=settings.host,
        )
    if args.print:
        print("\n".join(command.argv))
        for key, value in command.env.items():
            print(f"{key}={value}")
        return 0
    _reset_state(command.state_dir)
    if shutil.which(command.argv[0]) is None:
        print(f"model-server: {command.argv[0]} not found", file=sys.stderr)
        return 2
    os.execvpe(command.argv[0], command.argv, {**os.environ, **command.env})  # noqa: S606
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

"""A service's ``python -m <package>`` run as the stack runs it, for its start / stop tests.

Every gRPC service starts through the service kit's one entry (``creditrisk_kit.run_service``):
health ``liveness`` SERVING once it serves, its readiness names NOT_SERVING until its checks pass,
exit status 0 after a SIGTERM drain, 2 on a bad variable. These helpers start the real command line
in a subprocess with a clean environment (no variable of the service's prefix or ``OTEL_*`` from
the caller; OpenTelemetry off) and poll the standard ``grpc.health.v1`` service.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the system's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_environment(prefix: str, port: int | None = None, **fields: str) -> dict[str, str]:
    """This process's environment without ``prefix*`` and ``OTEL_*`` variables, OpenTelemetry off
    (``OTEL_SDK_DISABLED=true``), then the service's settings.

    Args:
        prefix: The settings' ``env_prefix`` (``TRAINING_SERVICE_``).
        port: When given, the gRPC port, with host ``127.0.0.1``, readiness checks every 0.2 s
            and a 1 s grace period (each overridable through ``fields``).
        **fields: Settings by field name (``mlflow_tracking_uri="..."``), set as ``prefix`` +
            the upper-case name.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith((prefix, "OTEL_"))}
    env["OTEL_SDK_DISABLED"] = "true"
    values: dict[str, str] = {}
    if port is not None:
        values = {
            "host": "127.0.0.1",
            "port": str(port),
            "health_check_interval_s": "0.2",
            "grace_period_s": "1",
        }
    values.update(fields)
    env.update({f"{prefix}{name}".upper(): value for name, value in values.items()})
    return env


def wait_for_health(target: str, service: str, wanted: int, timeout_s: float) -> None:
    """Poll ``Health/Check`` of ``service`` at ``target`` until it reports ``wanted``.

    Raises:
        AssertionError: When it does not within ``timeout_s`` seconds (naming the last status).
    """
    deadline = time.monotonic() + timeout_s
    last: object = "no answer"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
                if status == wanted:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.1)
    wanted_name = health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)
    raise AssertionError(f"health of {service!r} at {target} stayed {last}, wanted {wanted_name}")


class ServiceProcess:
    """``python -m <package>`` in a subprocess; killed at exit if still running.

    Args:
        package: The service's package (``training_service``).
        env: Its whole environment (see :func:`service_environment`).
    """

    def __init__(self, package: str, env: dict[str, str]) -> None:
        self.package = package
        self.env = env
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.package],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def terminate(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Send SIGTERM and wait for the exit.

        Returns:
            The exit status and the captured stderr (the JSON log lines).
        """
        assert self.proc is not None, "not started"
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, stderr

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_to_exit(
    package: str, env: dict[str, str], timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <package>`` to its exit (e.g. on bad settings), output captured."""
    return subprocess.run(
        [sys.executable, "-m", package],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def unreachable() -> str:
    """``127.0.0.1:<port>`` where nothing listens (a dependency that is down)."""
    return f"127.0.0.1:{free_port()}"


def assert_serves_then_drains(package: str, prefix: str, not_ready: str | None = None, **fields: str) -> str:
    """Start ``python -m <package>`` on a free port with the settings ``fields`` (see
    :func:`service_environment`), wait for health ``liveness`` SERVING (and, when given,
    ``not_ready`` NOT_SERVING), send SIGTERM, and check the drain ended with status 0.

    Returns:
        The process's stderr (its JSON log lines).

    Raises:
        AssertionError: When a status is not reached in time, the exit status is not 0 or the
            log has no ``drained`` line.
    """
    port = free_port()
    target = f"127.0.0.1:{port}"
    with ServiceProcess(package, service_environment(prefix, port, **fields)) as service:
        wait_for_health(target, "liveness", SERVING, 120)
        if not_ready is not None:
            wait_for_health(target, not_ready, NOT_SERVING, 10)
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr, stderr
    return stderr


def assert_bad_variable_exits_2(package: str, prefix: str, field: str, value: str) -> None:
    """``python -m <package>`` with the setting ``field`` (field name) at ``value`` exits 2, naming
    the variable, not the value."""
    env = service_environment(prefix)
    env[f"{prefix}{field}".upper()] = value
    done = run_to_exit(package, env)
    assert done.returncode == 2, done.stderr
    assert f"{prefix}{field}".upper() + ":" in done.stderr
    assert value not in done.stderr


def assert_no_credential_source_exits_2(package: str, prefix: str, **fields: str) -> None:
    """``python -m <package>`` with the settings ``fields`` and no credential source (no
    ``auth_*`` setting, authentication not disabled) exits 2 naming the settings to set."""
    done = run_to_exit(package, service_environment(prefix, free_port(), **fields))
    assert done.returncode == 2, done.stderr
    for field in ("AUTH_API_KEYS_FILE", "AUTH_API_KEYS", "AUTH_JWKS_FILE", "AUTH_JWKS_URL", "AUTH_DISABLED"):
        assert f"{prefix}{field}" in done.stderr, done.stderr

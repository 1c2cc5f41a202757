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


def service_environment(prefix: str, **values: str) -> dict[str, str]:
    """This process's environment without ``prefix*`` and ``OTEL_*`` variables, OpenTelemetry off
    (``OTEL_SDK_DISABLED=true``), then ``values`` (full variable names)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith((prefix, "OTEL_"))}
    env["OTEL_SDK_DISABLED"] = "true"
    env.update(values)
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
    wanted_name = health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)  # type: ignore[arg-type]
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


def run_to_exit(package: str, env: dict[str, str], timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <package>`` to its exit (e.g. on bad settings), output captured."""
    return subprocess.run(
        [sys.executable, "-m", package], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )

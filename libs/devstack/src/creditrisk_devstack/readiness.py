"""Readiness checks: how the supervisor decides that a started process is ready.

Each readiness spec is a small frozen dataclass (configuration). ``open_probe()`` returns a
:class:`Probe` that keeps whatever connection state the check needs (a gRPC channel, an HTTP
client) across polls; ``check(timeout)`` returns ``None`` when ready, or a short reason why not.
"""

from __future__ import annotations

import contextvars
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx


class Probe(Protocol):
    def check(self, timeout: float) -> str | None:
        """``None`` if ready, otherwise why not (kept for the timeout error message)."""

    def close(self) -> None: ...


class Readiness(Protocol):
    def open_probe(self) -> Probe: ...

    def describe(self) -> str: ...

    def address(self) -> tuple[str, int] | None:
        """The (host, port) the process is expected to listen on, if known."""


# --------------------------------------------------------------------------------------------- none


class _AlwaysReady:
    def check(self, timeout: float) -> str | None:
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class NoReadiness:
    """Ready as soon as the process has been spawned."""

    def open_probe(self) -> Probe:
        return _AlwaysReady()

    def describe(self) -> str:
        return "none"

    def address(self) -> tuple[str, int] | None:
        return None


# ---------------------------------------------------------------------------------------------- tcp


class _TcpProbe:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port

    def check(self, timeout: float) -> str | None:
        try:
            with socket.create_connection((self._host, self._port), timeout=max(timeout, 0.05)):
                return None
        except OSError as exc:
            return f"tcp {self._host}:{self._port}: {exc}"

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class TcpReadiness:
    """Ready when a TCP connection to ``host:port`` succeeds."""

    port: int
    host: str = "127.0.0.1"

    def open_probe(self) -> Probe:
        return _TcpProbe(self.host, self.port)

    def describe(self) -> str:
        return f"tcp {self.host}:{self.port}"

    def address(self) -> tuple[str, int] | None:
        return (self.host, self.port)


# --------------------------------------------------------------------------------------------- http


_IN_PROBE: contextvars.ContextVar[bool] = contextvars.ContextVar("devstack_in_http_probe", default=False)


class _QuietProbeRequests(logging.Filter):
    """Drops httpx's INFO "HTTP Request: ..." line of readiness polls (one per poll is noise).

    Only records emitted inside :meth:`_HttpProbe.check` (a context variable, so per thread) and
    below WARNING are dropped; httpx logging elsewhere in the process is untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _IN_PROBE.get()


_QUIET_FILTER = _QuietProbeRequests()


class _HttpProbe:
    def __init__(self, url: str, ca_file: str | None) -> None:
        self._url = url
        # an https URL's server certificate is checked against ca_file (a stack's own CA), else the
        # system's CAs; the CA file is read here, once per start
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        # trust_env=False: readiness targets are local; an HTTP(S)_PROXY in the environment must not
        # route "http://127.0.0.1:5000/health" through a proxy.
        self._client = httpx.Client(trust_env=False, follow_redirects=False, verify=verify)
        httpx_logger = logging.getLogger("httpx")
        if _QUIET_FILTER not in httpx_logger.filters:
            httpx_logger.addFilter(_QUIET_FILTER)

    def check(self, timeout: float) -> str | None:
        token = _IN_PROBE.set(True)
        try:
            response = self._client.get(self._url, timeout=max(timeout, 0.05))
        except httpx.HTTPError as exc:
            return f"GET {self._url}: {type(exc).__name__}: {exc}"
        finally:
            _IN_PROBE.reset(token)
        if 200 <= response.status_code < 300:
            return None
        return f"GET {self._url}: HTTP {response.status_code}"

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class HttpReadiness:
    """Ready when ``GET url`` answers 2xx (e.g. ``mlflow server``'s ``/health``).

    Attributes:
        url: ``http://`` or ``https://``.
        ca_file: For an ``https`` URL, the CA certificates (PEM) the server's certificate must
            verify against (a local stack's own CA); None = the system's trust store.
    """

    url: str
    ca_file: str | None = None

    def open_probe(self) -> Probe:
        """Raises OSError / ssl.SSLError when ``ca_file`` cannot be read or parsed."""
        return _HttpProbe(self.url, self.ca_file)

    def describe(self) -> str:
        trust = f" (trusting {self.ca_file})" if self.ca_file else ""
        return f"http GET {self.url} -> 2xx{trust}"

    def address(self) -> tuple[str, int] | None:
        parts = urlsplit(self.url)
        if parts.hostname is None:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return (parts.hostname, port)


# --------------------------------------------------------------------------------------------- grpc


class _GrpcProbe:
    def __init__(self, target: str, service: str, ca_file: str | None) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._grpc = grpc
        self._pb2 = health_pb2
        self._target, self._service = target, service
        # A proxy from the environment must not capture a local target.
        options = [("grpc.enable_http_proxy", 0)]
        if ca_file:
            with open(ca_file, "rb") as ca:
                credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = health_pb2_grpc.HealthStub(self._channel)

    def check(self, timeout: float) -> str | None:
        request = self._pb2.HealthCheckRequest(service=self._service)
        try:
            response = self._stub.Check(request, timeout=max(timeout, 0.05))
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "ERROR"
            return f"grpc health {self._target} [{self._service!r}]: {name}"
        if response.status == self._pb2.HealthCheckResponse.SERVING:
            return None
        status_name = self._pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return f"grpc health {self._target} [{self._service!r}]: {status_name}"

    def close(self) -> None:
        self._channel.close()


@dataclass(frozen=True)
class GrpcReadiness:
    """Ready when ``grpc.health.v1.Health/Check`` on ``target`` (for ``service``) answers SERVING.

    Attributes:
        target: ``host:port`` (or a gRPC target URI).
        service: The service name asked for ("" = the server as a whole).
        ca_file: When set, the probe speaks TLS and the server's certificate must verify against
            these CA certificates (PEM) for the target's host; None = plaintext.
    """

    target: str
    service: str = ""
    ca_file: str | None = None

    def open_probe(self) -> Probe:
        """Raises OSError when ``ca_file`` cannot be read."""
        return _GrpcProbe(self.target, self.service, self.ca_file)

    def describe(self) -> str:
        trust = f" over TLS (trusting {self.ca_file})" if self.ca_file else ""
        return f"grpc health {self.target} service={self.service!r}{trust} -> SERVING"

    def address(self) -> tuple[str, int] | None:
        target = self.target.removeprefix("dns:///").removeprefix("ipv4:")
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or "/" in target:
            return None
        return (host.strip("[]") or "127.0.0.1", int(port))


def port_in_use(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something already accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: Ports this process handed out (host, port): the OS may offer a released port again at once, and
#: two ports asked for one after the other (a service's gRPC and HTTP ports) then collided
#: (seen: the drift-service's gRPC port equal to its report port, "Address already in use").
_HANDED_OUT: set[tuple[str, int]] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now and that this process has not handed out before (the OS
    picks it; a small race with other processes, or with a server asked to bind port 0, remains).

    Raises:
        RuntimeError: the OS offered only ports handed out before (100 tries).
    """
    with _HANDED_OUT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if (host, port) not in _HANDED_OUT:
                _HANDED_OUT.add((host, port))
                return port
    raise RuntimeError(f"no free port on {host} that was not handed out before")

"""Prometheus metrics every service shares: rate, errors and duration per RPC and per HTTP route.

One library, not a copy per service: :class:`ServiceRunner` puts :class:`GrpcMetricsInterceptor`
on every server it builds and, when ``settings.metrics_port`` is set, serves the process's
registry on ``http://<host>:<metrics_port>/metrics`` (:func:`start_metrics_server`). A service's
domain instruments (its ``metrics.py``) live in the same default registry and appear there too.
A FastAPI / Starlette app adds :class:`HttpMetricsMiddleware` (pure ASGI, no framework import).

Names follow the conventions Prometheus users already query (go-grpc-prometheus for gRPC, the
OpenTelemetry HTTP semantic conventions' names for HTTP):

* ``grpc_server_handled_total{grpc_service, grpc_method, grpc_type, grpc_code}``: calls finished,
  by status code (rate: ``rate(...[1m])``; errors: ``grpc_code!="OK"``);
* ``grpc_server_handling_seconds{grpc_service, grpc_method, grpc_type}``: histogram of the time
  from the call's start to its last response message;
* ``http_server_requests_total{method, route, status}`` and
  ``http_server_request_duration_seconds{method, route}``: the same per route *template*
  (``/v1/predict``), never the raw path, so a path parameter cannot become a label value;
* ``auth_refusals_total{method, outcome}``: calls the kit's authentication refused
  (:meth:`creditrisk_kit.auth.Authenticator.check`), each counted even when the refusal log
  suppresses its line; ``method`` is a served RPC or a route template, never a raw path.

Labels are method names, status codes and route templates only: no request content ever becomes a
label value (an applicant's feature values stay out of telemetry).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .interceptors import rewrap_handler, stream_responses
from .threaded_http import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    BoundedRequestHandlerMixIn,
    BoundedThreadingMixIn,
)
from .tls import ReloadingSslContext, TlsSocketServerMixin

_LOGGER = logging.getLogger(__name__)

#: Buckets (seconds) for online calls: 1 ms .. 10 s; the client's default buckets start at 5 ms,
#: too coarse for a feature read of ~1 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "gRPC calls completed on the server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of a gRPC call to its end on the server, in seconds.",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "http_server_requests",
    "HTTP requests completed, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION_SECONDS = Histogram(
    "http_server_request_duration_seconds",
    "Time to answer an HTTP request (until the response body is sent), in seconds.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

AUTH_REFUSALS = Counter(
    "auth_refusals",
    "Calls refused by the kit's authentication, by method (RPC or route template) and outcome "
    "(UNAUTHENTICATED, PERMISSION_DENIED); every one, also when its log line is suppressed.",
    ["method", "outcome"],
)

#: The ``route`` label of requests that matched no route (one value, whatever the path).
UNMATCHED_ROUTE = "unmatched"


def _split_method(full: str) -> tuple[str, str]:
    """``/package.Service/Method`` -> (``package.Service``, ``Method``)."""
    _, _, rest = full.partition("/")
    service, _, method = rest.partition("/")
    return (service or "unknown", method or "unknown")


def _code_name(context: Any, default: grpc.StatusCode) -> str:
    try:
        code = context.code()
    except Exception:  # pragma: no cover - a context without code()
        code = None
    if code is None:
        return str(default.name)
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    # grpc.aio may return the raw cygrpc integer
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return str(code)


class _Observation:
    """Counts and times one call: ``with _Observation(method, rpc_type, context):`` around the
    handler; the outcome is the context's code (OK when none was set), the code the handler
    aborted with, CANCELLED for a cancelled call, UNKNOWN for any other exception."""

    def __init__(self, method: str, rpc_type: str, context: Any) -> None:
        self.service, self.method = _split_method(method)
        self.rpc_type = rpc_type
        self.context = context
        self.started = time.perf_counter()

    def __enter__(self) -> _Observation:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            code = _code_name(self.context, grpc.StatusCode.OK)
        elif isinstance(exc, grpc.aio.AbortError):
            code = _code_name(self.context, grpc.StatusCode.UNKNOWN)
        else:
            code = "CANCELLED" if isinstance(exc, GeneratorExit | asyncio.CancelledError) else "UNKNOWN"
        GRPC_HANDLED.labels(self.service, self.method, self.rpc_type, code).inc()
        GRPC_HANDLING_SECONDS.labels(self.service, self.method, self.rpc_type).observe(
            time.perf_counter() - self.started
        )


def _unary_response(
    behavior: Callable[..., Any], method: str, rpc_type: str
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        with _Observation(method, rpc_type, context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return wrapper


def _stream_response(
    behavior: Callable[..., Any], method: str, rpc_type: str
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        with _Observation(method, rpc_type, context):
            async for response in stream_responses(behavior(request, context)):
                yield response

    return wrapper


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call of a ``grpc.aio`` server (``grpc_server_*``, module docstring).

    Put it *outside* the kit's :class:`~creditrisk_kit.ErrorInterceptor` (earlier in the list), so
    that it sees the status the error interceptor mapped an exception to.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(getattr(handler_call_details, "method", ""))
        return rewrap_handler(
            handler,
            lambda behavior, rpc_type: _unary_response(behavior, method, rpc_type),
            lambda behavior, rpc_type: _stream_response(behavior, method, rpc_type),
        )


ASGIApp = Callable[
    [dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]


class HttpMetricsMiddleware:
    """ASGI middleware: ``http_server_*`` per method, route template and status (module docstring).

    ``app.add_middleware(HttpMetricsMiddleware)`` on FastAPI / Starlette. The route label is the
    matched route's template (``scope["route"].path``, set by Starlette's router), else
    :data:`UNMATCHED_ROUTE`. ``exclude`` paths (default ``/metrics``) are not counted.
    """

    def __init__(self, app: ASGIApp, exclude: tuple[str, ...] = ("/metrics",)) -> None:
        self.app = app
        self.exclude = frozenset(exclude)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[..., Awaitable[Any]],
        send: Callable[..., Awaitable[Any]],
    ) -> None:
        if scope.get("type") != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = str(scope.get("method", "GET"))
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_DURATION_SECONDS.labels(method, template).observe(time.perf_counter() - started)


class MetricsServer:
    """The ``/metrics`` HTTP server of a process (a daemon thread, one thread per connection)."""

    def __init__(self, server: Any, thread: Any, host: str) -> None:
        self._server, self._thread = server, thread
        self.host = host
        self.port = int(server.server_port)

    def close(self) -> None:
        """Stop answering and free the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SilentHandler(BoundedRequestHandlerMixIn, WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr


class _MetricsHttpServer(BoundedThreadingMixIn, TlsSocketServerMixin, ThreadingWSGIServer):
    """prometheus-client's threaded WSGI server with the kit's bounds on slow clients
    (:mod:`creditrisk_kit.threaded_http`) and TLS per accepted connection (reloaded on change)."""


def start_metrics_server(
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    tls: ReloadingSslContext | None = None,
    *,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> MetricsServer:
    """Serve the Prometheus registry on ``http://host:port/metrics`` from a daemon thread.

    prometheus-client's WSGI app (``make_wsgi_app``: the text format, gzip, ``name[]`` filters) on
    its threaded WSGI server, each connection bounded (:mod:`creditrisk_kit.threaded_http`).

    Args:
        port: TCP port; 0 lets the system pick a free one (tests).
        host: Interface to bind.
        registry: Defaults to prometheus-client's global registry (every instrument of the process).
        tls: Serve HTTPS with this context (client certificates required if it says so),
            reloaded on change at each accepted connection (:mod:`creditrisk_kit.tls`); None:
            plain HTTP.
        idle_timeout_s: Seconds a connection gets for its request head, and for each later read
            or 64 KiB of the answer (> 0).
        max_connections: Connections served at once (>= 1); a further one is closed at once.

    Returns:
        The running :class:`MetricsServer` (``.port`` is the bound port).

    Raises:
        OSError: When the port cannot be bound (or ``host`` does not resolve).
        ValueError: ``idle_timeout_s`` or ``max_connections`` out of range.
    """
    if not idle_timeout_s > 0 or max_connections < 1:
        raise ValueError(
            f"idle_timeout_s must be > 0 and max_connections >= 1, got {idle_timeout_s}, {max_connections}"
        )
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    family, address = info[0], str(info[4][0])
    attributes = {
        "address_family": family,
        "tls_context": tls,
        "idle_timeout_s": idle_timeout_s,
        "max_connections": max_connections,
    }
    server_class = type("MetricsServer", (_MetricsHttpServer,), attributes)
    app = make_wsgi_app(registry or REGISTRY)
    server: Any = make_server(address, port, app, server_class, handler_class=_SilentHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    metrics_server = MetricsServer(server, thread, host)
    _LOGGER.info(
        "Prometheus metrics on %s:%d/metrics (%s)",
        host,
        metrics_server.port,
        "plaintext" if tls is None else "TLS",
        extra={"metrics_port": metrics_server.port},
    )
    return metrics_server

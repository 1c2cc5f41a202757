"""Run a ``grpc.aio`` service: health, reflection, error mapping, tracing, readiness, drain.

A service's entrypoint does not call this module directly: it declares a
:class:`~creditrisk_kit.service.ServiceSpec` and calls :func:`~creditrisk_kit.service.run_service`,
which loads the settings and telemetry and runs a :class:`ServiceRunner` with :meth:`ServiceRunner.run`.
In-process tests build a :class:`ServiceRunner` (or ``Service.runner(settings)``) and start it on
port 0.

Health (``grpc.health.v1``): the overall service ``""`` and every name in ``service_names`` start
NOT_SERVING and become SERVING only when every readiness check passes; a background task re-runs
the checks every ``health_check_interval_s`` and flips the status both ways.

Transport: plaintext by default; with ``tls_cert_file`` / ``tls_key_file`` set the port speaks TLS
only, with ``tls_client_ca_file`` mutual TLS, certificates reloaded on change
(:mod:`creditrisk_kit.tls`); the ``/metrics`` server follows the same settings, on
``metrics_host`` (default ``host``), each connection bounded (``http_idle_timeout_s``,
``http_max_connections``: :mod:`creditrisk_kit.threaded_http`). The extra name
:data:`LIVENESS_SERVICE` is SERVING while the process serves at all, for a Kubernetes
``livenessProbe`` (``grpc: {port: 50051, service: liveness}``), kept apart from readiness
(``readinessProbe`` with ``service: ""``), as kserve keeps ServerLive apart from ServerReady.

An extra server (``http_server``: an async context manager, e.g.
:class:`creditrisk_kit.http.UvicornServer` for an ASGI app) is entered right after the gRPC server
starts, before the readiness loop; if it fails to start, the gRPC server is stopped and
:meth:`ServiceRunner.start` raises.

Shutdown (SIGTERM / SIGINT, or :meth:`ServiceRunner.request_stop`): 0. the ``on_stop`` callback
runs (e.g. refuse new jobs); 1. health goes NOT_SERVING for every name; 2.
``server.stop(grace_period_s)``: new calls are refused, in-flight calls get up to
``grace_period_s`` seconds to finish, then are cancelled; 3. the extra server is exited (it
finishes its own in-flight requests); 4. the shutdown hooks run in order, once each, a failing one
logged and the next one still run; a hook still running after ``shutdown_hook_timeout_s`` is
cancelled and logged, so a stop always ends.
Open ``Health/Watch`` streams receive NOT_SERVING in step 1 and then end (status OK), so the drain
waits only for real calls; ``Health/List`` answers every name's status
(:class:`~creditrisk_kit.health.HealthServicer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from creditrisk_telemetry import instrument_grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from .auth import Authenticator, AuthInterceptor, MethodPolicy
from .health import HealthServicer, add_health_servicer
from .interceptors import ErrorInterceptor
from .metrics import GrpcMetricsInterceptor, MetricsServer, start_metrics_server
from .settings import ServiceSettings
from .tls import ServerTls

_LOGGER = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[object]]
"""An async callable answering "does my backend answer?": passes unless it raises, returns False,
or takes longer than the check timeout."""

ShutdownHook = Callable[[], Awaitable[object]]
"""An async callable run after the drain (close pools, flush telemetry)."""

ExtraServer = contextlib.AbstractAsyncContextManager[Any]
"""A server beside gRPC (REST, HTML reports): entering starts it and returns once it listens,
exiting stops it after it finished its in-flight requests."""

StopCallback = Callable[[], object]
"""A plain callable run as a stop begins, before health goes NOT_SERVING (refuse new work)."""

RegisterServicers = Callable[[grpc.aio.Server], None]
"""Adds the service's servicers to the server (``add_XServicer_to_server(servicer, server)``)."""

LIVENESS_SERVICE = "liveness"
"""Health service name that is SERVING whenever the process serves, whatever its backends."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """Server channel arguments from the settings.

    Returns:
        Message limits of ``settings.max_message_bytes`` both ways, and ``grpc.so_reuseport=0`` so
        that a second server on a taken port fails to bind instead of sharing it silently.
    """
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


class ServiceRunner:
    """Owns one ``grpc.aio`` server from start to drained stop. Also usable in-process in tests.

    Args:
        settings: Host, port, grace period, message limit, check interval.
        service_names: Full names of the gRPC services served (``package.Service``); each gets a
            health status and is listed by server reflection.
        register: Adds the servicers (or generic handlers) to the server.
        readiness_checks: Named async checks; all must pass for SERVING. None or empty: SERVING
            as soon as the server starts.
        shutdown_hooks: Async callables run, in order, after the drain; a failing hook is logged
            and the next one still runs.
        interceptors: Further server interceptors, run inside the error interceptor.
        check_timeout_s: Time limit of one check, in seconds; default the check interval.
        instrument: Trace the server with OpenTelemetry (``instrument_grpc()``).
        reflection: Register gRPC server reflection.
        http_server: An extra server started with the gRPC server and stopped after the drain,
            before the shutdown hooks (:data:`ExtraServer`).
        on_stop: Called (synchronously, in the event loop) when a stop begins, before health goes
            NOT_SERVING; an exception is logged and the stop goes on.
        auth: The access policy of every method (:mod:`creditrisk_kit.auth`): checked at start to
            cover every method of ``service_names`` (default deny), then enforced on each call by
            an :class:`~creditrisk_kit.auth.AuthInterceptor` inside the error interceptor. None:
            no authentication.
        authenticator: Verifies the credentials; default ``Authenticator.from_settings(settings)``.

    Raises:
        RuntimeError: From :meth:`start` when the port cannot be bound, the TLS files cannot be
            loaded or the extra server fails to start.
        ValueError: From :meth:`start` when ``auth`` misses a method of a served service.
        AuthConfigurationError: From :meth:`start` when ``auth`` is given and the settings name no
            credential source (and do not disable authentication).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        service_names: Sequence[str],
        register: RegisterServicers,
        readiness_checks: Mapping[str, ReadinessCheck] | None = None,
        shutdown_hooks: Sequence[ShutdownHook] = (),
        interceptors: Sequence[Any] = (),
        check_timeout_s: float | None = None,
        instrument: bool = True,
        reflection: bool = True,
        http_server: ExtraServer | None = None,
        on_stop: StopCallback | None = None,
        auth: MethodPolicy | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self._authenticator = authenticator
        self.service_names = tuple(service_names)
        self._register = register
        self._checks = dict(readiness_checks or {})
        self._shutdown_hooks = tuple(shutdown_hooks)
        self._interceptors = tuple(interceptors)
        self._check_timeout_s = check_timeout_s or settings.health_check_interval_s
        self._instrument = instrument
        self._reflection = reflection
        self.http_server = http_server
        self._on_stop = on_stop
        self._extra = contextlib.AsyncExitStack()
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.metrics: MetricsServer | None = None
        self._ready: bool | None = None
        self._failing: dict[str, str] = {}
        self._checks_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._terminated = asyncio.Event()
        self._signals: list[signal.Signals] = []

    @property
    def readiness_names(self) -> tuple[str, ...]:
        """Health names that follow the readiness checks: ``""`` and each service name."""
        return (health.OVERALL_HEALTH, *self.service_names)

    @property
    def ready(self) -> bool:
        """True when the last round of readiness checks passed (and no stop began)."""
        return bool(self._ready) and self._stop_task is None

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_task is not None

    async def start(self) -> int:
        """Build, bind and start the server, then start the readiness loop.

        Returns:
            The bound TCP port (the real one when ``settings.port`` is 0).

        Raises:
            RuntimeError: When the address cannot be bound, or on a second start.
        """
        if self.server is not None:
            raise RuntimeError("ServiceRunner.start() called twice")
        auth_interceptors: list[Any] = []
        if self.auth is not None:
            self.auth.check_covers(self.service_names)
            authenticator = self._authenticator or Authenticator.from_settings(self.settings)
            auth_interceptors.append(AuthInterceptor(authenticator, self.auth))
        if self._instrument:
            instrument_grpc()
        # Looked up on the module at call time: instrument_grpc() wraps grpc.aio.server and puts
        # the OpenTelemetry interceptor first, so the error interceptor runs inside the span. The
        # metrics interceptor sits outside the error interceptor: it counts the mapped status. The
        # auth interceptor sits inside it (its refusals are mapped) and before the service's own.
        server = grpc.aio.server(
            interceptors=[
                GrpcMetricsInterceptor(),
                ErrorInterceptor(),
                *auth_interceptors,
                *self._interceptors,
            ],
            options=server_options(self.settings),
        )
        for name in (*self.readiness_names, LIVENESS_SERVICE):
            await self.health.set(name, _NOT_SERVING)
        add_health_servicer(self.health, server)
        self._register(server)
        if self._reflection:
            reflection.enable_server_reflection(
                (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
            )
        tls = ServerTls.from_settings(self.settings)
        try:
            credentials = tls.grpc_credentials() if tls else None
            metrics_tls = tls.ssl_context() if tls and self.settings.metrics_port is not None else None
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise RuntimeError(f"cannot load the TLS certificate files: {exc}") from exc
        try:
            if credentials is None:
                port = server.add_insecure_port(self.settings.bind_address)
            else:
                port = server.add_secure_port(self.settings.bind_address, credentials)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot bind {self.settings.bind_address}: {exc}") from exc
        if not port:
            raise RuntimeError(f"cannot bind {self.settings.bind_address}")
        if self.settings.metrics_port is not None and self.metrics is None:
            metrics_host = self.settings.metrics_bind_host
            try:
                self.metrics = start_metrics_server(
                    self.settings.metrics_port,
                    metrics_host,
                    tls=metrics_tls,
                    idle_timeout_s=self.settings.http_idle_timeout_s,
                    max_connections=self.settings.http_max_connections,
                )
            except OSError as exc:
                raise RuntimeError(
                    f"cannot bind the metrics port {metrics_host}:{self.settings.metrics_port}: {exc}"
                ) from exc
        await server.start()
        if self.http_server is not None:
            try:
                await self._extra.enter_async_context(self.http_server)
            except Exception as exc:
                await server.stop(0)
                if self.metrics is not None:
                    self.metrics.close()
                    self.metrics = None
                raise RuntimeError(f"cannot start the extra server {self.http_server!r}: {exc}") from exc
        self.server, self.port = server, int(port)
        await self.health.set(LIVENESS_SERVICE, _SERVING)
        self._checks_task = asyncio.create_task(self._readiness_loop(), name="readiness-checks")
        transport = "plaintext" if tls is None else "mutual TLS" if tls.mutual else "TLS"
        _LOGGER.info(
            "serving %s on %s:%d (%s)",
            ", ".join(self.service_names) or "(no services)",
            self.settings.host,
            self.port,
            transport,
            extra={"port": self.port, "services": list(self.service_names), "transport": transport},
        )
        return self.port

    async def check_readiness(self) -> bool:
        """Run every readiness check once, concurrently, and set the health statuses.

        Returns:
            True when all passed.
        """
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_check(name) for name in names))
        failing = {name: reason for name, reason in zip(names, results, strict=True) if reason is not None}
        ready = not failing
        if self._stop_task is not None:
            return ready
        if ready != self._ready or failing.keys() != self._failing.keys():
            if ready:
                _LOGGER.info("ready: SERVING", extra={"health": "SERVING"})
            else:
                _LOGGER.warning(
                    "not ready: NOT_SERVING (%s)",
                    "; ".join(f"{name}: {reason}" for name, reason in failing.items()),
                    extra={"health": "NOT_SERVING", "failing_checks": sorted(failing)},
                )
        self._ready, self._failing = ready, failing
        for name in self.readiness_names:
            await self.health.set(name, _SERVING if ready else _NOT_SERVING)
        return ready

    async def _run_check(self, name: str) -> str | None:
        try:
            result = await asyncio.wait_for(self._checks[name](), timeout=self._check_timeout_s)
        except TimeoutError:
            return f"no answer within {self._check_timeout_s} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "returned False" if result is False else None

    async def _readiness_loop(self) -> None:
        while True:
            try:
                await self.check_readiness()
            except Exception:  # pragma: no cover - check_readiness guards each check
                _LOGGER.exception("readiness round failed")
            await asyncio.sleep(self.settings.health_check_interval_s)

    def request_stop(self, reason: str = "requested") -> None:
        """Begin the graceful stop (see the module docstring) without waiting; idempotent.

        Safe to call from a signal handler installed with ``loop.add_signal_handler``.
        """
        if self._stop_task is not None:
            return
        _LOGGER.info("stopping (%s): health NOT_SERVING, draining", reason)
        if self._on_stop is not None:
            try:
                self._on_stop()
            except Exception:
                _LOGGER.exception("stop callback %r failed", self._on_stop)
        self._stop_task = asyncio.get_running_loop().create_task(self._stop(), name="service-stop")

    def handle_signal(self, signum: int) -> None:
        """The SIGTERM / SIGINT handler: :meth:`request_stop`."""
        self.request_stop(signal.Signals(signum).name)

    async def stop(self) -> None:
        """Stop gracefully and wait until done: NOT_SERVING, drain, shutdown hooks; idempotent."""
        self.request_stop()
        assert self._stop_task is not None
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        try:
            if self._checks_task is not None:
                self._checks_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._checks_task
            # 1. Health first, so load balancers and health-checking clients move away. Watch
            # streams get NOT_SERVING and end, so they do not hold the drain.
            await self.health.enter_graceful_shutdown()
            # 2. Drain: refuse new calls, give in-flight ones up to the grace period.
            if self.server is not None:
                await self.server.stop(self.settings.grace_period_s)
            _LOGGER.info("drained")
            # 3. The extra server finishes its in-flight requests and stops.
            try:
                await self._extra.aclose()
            except Exception:
                _LOGGER.exception("stopping the extra server %r failed", self.http_server)
            # 4. Release what the service holds.
            for hook in self._shutdown_hooks:
                try:
                    await asyncio.wait_for(hook(), self.settings.shutdown_hook_timeout_s)
                except TimeoutError:
                    _LOGGER.error(
                        "shutdown hook %r still running after %s s: cancelled",
                        hook,
                        self.settings.shutdown_hook_timeout_s,
                    )
                except Exception:
                    _LOGGER.exception("shutdown hook %r failed", hook)
            if self.metrics is not None:
                self.metrics.close()
        finally:
            self._terminated.set()

    async def wait_for_termination(self) -> None:
        """Wait until a stop (signal or :meth:`request_stop`) has completed."""
        await self._terminated.wait()

    def install_signal_handlers(
        self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Make ``signals`` start the graceful stop (running loop, main thread only)."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_signal, sig)
            self._signals.append(sig)

    def remove_signal_handlers(self) -> None:
        """Undo :meth:`install_signal_handlers`."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    async def run(self) -> None:
        """Start, stop gracefully on SIGTERM / SIGINT, return when the stop completed.

        A failed start still runs the stop (shutdown hooks included), then raises. Cancelled from
        outside, it still drains before the cancellation propagates.

        Raises:
            RuntimeError: When the port cannot be bound or the extra server fails to start.
        """
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        self.install_signal_handlers()
        try:
            await self.wait_for_termination()
        finally:
            self.remove_signal_handlers()
            if not self.stopping:  # cancelled from outside: still drain
                await self.stop()

    async def __aenter__(self) -> ServiceRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def serve(
    settings: ServiceSettings,
    *,
    service_names: Sequence[str],
    register: RegisterServicers,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    shutdown_hooks: Sequence[ShutdownHook] = (),
    interceptors: Sequence[Any] = (),
    http_server: ExtraServer | None = None,
    on_stop: StopCallback | None = None,
) -> None:
    """Run a :class:`ServiceRunner` until SIGTERM / SIGINT and its drain (:meth:`ServiceRunner.run`).

    Args: as :class:`ServiceRunner`.

    Raises:
        RuntimeError: When the port cannot be bound or the extra server fails to start.
    """
    runner = ServiceRunner(
        settings,
        service_names=service_names,
        register=register,
        readiness_checks=readiness_checks,
        shutdown_hooks=shutdown_hooks,
        interceptors=interceptors,
        http_server=http_server,
        on_stop=on_stop,
    )
    await runner.run()

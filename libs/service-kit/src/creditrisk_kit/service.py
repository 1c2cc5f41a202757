"""One entry for every service: ``python -m <package>`` runs ``run_service(SPEC)``.

A service's ``__main__`` declares what it is and how its parts are built::

    async def build(settings: FeatureServiceSettings) -> Service:
        core = FeatureStoreCore(settings)
        return Service(
            service_names=[SERVICE_NAME],
            register=lambda server: add_FeatureStoreServiceServicer_to_server(Servicer(core), server),
            readiness_checks={"feature store": core.ready},
            shutdown_hooks=[core.aclose],
        )

    SPEC = ServiceSpec("feature-service", FeatureServiceSettings, build)

    if __name__ == "__main__":
        run_service(SPEC)

:func:`run_service` then does, in this order: OpenTelemetry from the standard ``OTEL_*``
variables (``configure_telemetry(spec.name)``; first, so that spans of the build are kept); the
settings (:meth:`ServiceSettings.load_or_exit`: exit status 2 naming each wrong variable, never
its value); JSON logs at ``settings.log_level``; the build (in the event loop; it may be async);
then a :class:`~creditrisk_kit.server.ServiceRunner` run until SIGTERM / SIGINT: health
NOT_SERVING until every readiness check passes; on the signal the stop callback, health
NOT_SERVING, the gRPC drain within ``grace_period_s``, the extra HTTP server's stop, the service's
shutdown hooks in order, and last the telemetry flush; exit status 0. A start that fails (port
taken) still runs the shutdown hooks, then raises (exit status 1 with the traceback).

The model-server cannot use this entry: seldon-core and MLServer own its processes (see
``model_server``'s package docstring).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from creditrisk_telemetry import Telemetry, configure_logging, configure_telemetry

from .auth import AuthConfigurationError, Authenticator, MethodPolicy
from .server import (
    ExtraServer,
    ReadinessCheck,
    RegisterServicers,
    ServiceRunner,
    ShutdownHook,
    StopCallback,
)
from .settings import EXIT_BAD_CONFIGURATION, ServiceSettings

EXIT_INTERRUPTED = 130
"""Exit status when a second SIGINT interrupts the process (128 + SIGINT, the shells' rule)."""


@dataclass(frozen=True, kw_only=True)
class Service:
    """What a service's build function returns: the parts the runner serves and stops.

    Attributes:
        service_names: Full names of the gRPC services served (``package.Service``).
        register: Adds the servicers to the server (``add_XServicer_to_server``).
        readiness_checks: Named async checks; all must pass for SERVING (empty: SERVING at once).
        shutdown_hooks: Async callables run in order after the drain and the extra server's stop;
            each runs once, a failing one is logged and the next one still runs.
        http_server: An extra server (an async context manager; an ASGI app goes in
            :class:`creditrisk_kit.http.UvicornServer`) started with the gRPC server and stopped
            after the drain.
        on_stop: Called as a stop begins, before health goes NOT_SERVING (refuse new work).
        interceptors: Further server interceptors, run inside the error interceptor.
        auth: Per-method access policy (:class:`~creditrisk_kit.auth.MethodPolicy`), checked at
            start to cover every method (default deny) and on every call; None: no
            authentication.
        authenticator: Verifies credentials; default from the settings' ``auth_*`` fields.
    """

    service_names: Sequence[str]
    register: RegisterServicers
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    shutdown_hooks: Sequence[ShutdownHook] = ()
    http_server: ExtraServer | None = None
    on_stop: StopCallback | None = None
    interceptors: Sequence[Any] = ()
    auth: MethodPolicy | None = None
    authenticator: Authenticator | None = None

    def runner(
        self, settings: ServiceSettings, *, shutdown_hooks: Sequence[ShutdownHook] = ()
    ) -> ServiceRunner:
        """A :class:`ServiceRunner` (not started) serving this service.

        Args:
            settings: The service's validated settings.
            shutdown_hooks: More hooks, run after the service's own (the telemetry flush).
        """
        return ServiceRunner(
            settings,
            service_names=self.service_names,
            register=self.register,
            readiness_checks=self.readiness_checks,
            shutdown_hooks=(*self.shutdown_hooks, *shutdown_hooks),
            interceptors=self.interceptors,
            http_server=self.http_server,
            on_stop=self.on_stop,
            auth=self.auth,
            authenticator=self.authenticator,
        )


@dataclass(frozen=True)
class ServiceSpec[S: ServiceSettings]:
    """How one service starts.

    Attributes:
        name: The service's name: OpenTelemetry's default ``service.name`` (``OTEL_SERVICE_NAME``
            overrides it) and the ``service`` field of every log line.
        settings: Its settings class (a :class:`ServiceSettings` with its own ``env_prefix``).
        build: Builds the service's parts from the validated settings, in the event loop; may be
            a coroutine function.
    """

    name: str
    settings: type[S]
    build: Callable[[S], Service | Awaitable[Service]]


async def build_service[S: ServiceSettings](spec: ServiceSpec[S], settings: S) -> Service:
    """Run ``spec.build(settings)``, awaiting it when it is a coroutine function.

    Raises:
        TypeError: When the build returns something else than a :class:`Service`.
    """
    built = spec.build(settings)
    service = await built if inspect.isawaitable(built) else built
    if not isinstance(service, Service):
        raise TypeError(f"{spec.name}: the build returned {type(service).__name__}, not a Service")
    return service


async def serve_spec[S: ServiceSettings](spec: ServiceSpec[S], settings: S, telemetry: Telemetry) -> None:
    """Build the service and run it until SIGTERM / SIGINT and its drain; telemetry flushed last."""

    async def flush_telemetry() -> None:
        await asyncio.to_thread(telemetry.shutdown)

    try:
        service = await build_service(spec, settings)
    except BaseException:
        await flush_telemetry()
        raise
    await service.runner(settings, shutdown_hooks=[flush_telemetry]).run()


def run_service[S: ServiceSettings](spec: ServiceSpec[S]) -> None:
    """Run the service of ``spec`` in this process; returns after the graceful stop.

    Raises:
        SystemExit: Status 2 (:data:`~creditrisk_kit.settings.EXIT_BAD_CONFIGURATION`) on invalid
            settings, each wrong variable named on stderr; status 130
            (:data:`EXIT_INTERRUPTED`) when a SIGINT arrives before the signal handlers are in
            place; status 2 when the service wires auth and no credential source is set
            (the ``auth_*`` settings named on stderr).
        RuntimeError: When the port cannot be bound or the extra server fails to start.
    """
    telemetry = configure_telemetry(spec.name)
    settings = spec.settings.load_or_exit()
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve_spec(spec, settings, telemetry))
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except AuthConfigurationError as exc:
        print(f"{spec.name}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIGURATION) from None

"""OpenTelemetry tracing (and a minimal metrics) set-up driven by the standard ``OTEL_*`` variables.

The rule this module implements: **no exporter unless one is asked for**. A process started with no
``OTEL_*`` variables still gets a real SDK ``TracerProvider`` (so spans carry real trace and span ids
into responses and log lines) but sends nothing anywhere. An exporter is chosen when:

* ``OTEL_TRACES_EXPORTER`` is set: a comma-separated list of ``otlp``, ``console`` or ``none``; or
* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: ``otlp``.

The OTLP exporter speaks ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``
(``grpc`` or ``http/protobuf``). When neither is set it speaks ``grpc``, the default of the Python
SDK's own auto-configuration (the OTel specification recommends ``http/protobuf``; the Collector
listens for both, on 4317 and 4318). The exporters read their endpoint, headers, timeout and TLS
settings from the same variables themselves.

Everything else is the SDK's and the API's own handling of the variables: ``OTEL_TRACES_SAMPLER``
/ ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``), ``OTEL_PROPAGATORS`` (default
``tracecontext,baggage``), ``OTEL_BSP_*`` for the batch processor, and ``OTEL_RESOURCE_ATTRIBUTES``.
``OTEL_SERVICE_NAME`` overrides the service name given in code.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

_OTLP_GRPC = "grpc"
_OTLP_HTTP = "http/protobuf"


@dataclass(frozen=True)
class Telemetry:
    """What :func:`configure_telemetry` built; keep it to flush and shut down at exit.

    Attributes:
        service_name: The effective ``service.name`` (``OTEL_SERVICE_NAME`` wins over code).
        resource: The OTel resource shared by traces and metrics.
        tracer_provider: The SDK tracer provider (always present, even with no exporter).
        meter_provider: The SDK meter provider (no reader unless ``OTEL_METRICS_EXPORTER`` is set:
            an OTLP endpoint alone does not turn metrics export on).
        span_exporters: The exporters spans are sent to; empty when none was asked for.
    """

    service_name: str
    resource: Resource
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporters: tuple[SpanExporter, ...] = field(default=())

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export every finished span (and metric) still buffered.

        Args:
            timeout_s: Upper bound for each provider, in seconds.

        Returns:
            True when both providers flushed within the time.
        """
        millis = int(timeout_s * 1000)
        traces_ok = self.tracer_provider.force_flush(millis)
        metrics_ok = self.meter_provider.force_flush(millis)
        return bool(traces_ok and metrics_ok)

    def shutdown(self) -> None:
        """Flush and shut down the providers; call once, at process exit (safe to call twice)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _otlp_protocol(environ: Mapping[str, str], signal: str) -> str:
    protocol = (
        _env(environ, f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or _env(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
        or _OTLP_GRPC
    )
    if protocol not in (_OTLP_GRPC, _OTLP_HTTP):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use {_OTLP_GRPC!r} or {_OTLP_HTTP!r}"
        )
    return protocol


def selected_exporters(environ: Mapping[str, str], signal: str = "TRACES") -> list[str]:
    """Names of the exporters the environment asks for, for one signal.

    Args:
        environ: The environment (``os.environ`` in production).
        signal: ``"TRACES"`` or ``"METRICS"``.

    Returns:
        A list drawn from ``"otlp"`` and ``"console"``; empty means "export nothing".

    Raises:
        ValueError: On an exporter name other than ``otlp``, ``console`` or ``none``.
    """
    explicit = _env(environ, f"OTEL_{signal}_EXPORTER")
    if explicit:
        names = [name.strip().lower() for name in explicit.split(",") if name.strip()]
    elif _env(environ, f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or _env(
        environ, "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        names = ["otlp"]
    else:
        names = []
    unknown = sorted(set(names) - {"otlp", "console", "none"})
    if unknown:
        raise ValueError(
            f"OTEL_{signal}_EXPORTER: unsupported exporter(s) {unknown}; use otlp, console or none"
        )
    return [name for name in names if name != "none"]


def _span_exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported lazily: each OTLP flavour pulls in its transport (grpcio or requests).
    if _otlp_protocol(environ, "TRACES") == _OTLP_GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def _metric_exporter(name: str, environ: Mapping[str, str]) -> MetricExporter:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if _otlp_protocol(environ, "METRICS") == _OTLP_GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter()


def build_resource(
    service_name: str, *, service_version: str | None = None, environ: Mapping[str, str] | None = None
) -> Resource:
    """The resource of this process: code-given name/version, overridden by the ``OTEL_*`` variables.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` is set.
        service_version: ``service.version`` unless ``OTEL_RESOURCE_ATTRIBUTES`` sets it.
        environ: Read instead of ``os.environ`` (tests).

    Returns:
        The SDK defaults (``telemetry.sdk.*``) merged with the code's and the environment's attributes.
    """
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    if service_version:
        attributes[SERVICE_VERSION] = service_version
    resource = Resource.create(attributes)
    if environ is None:
        return resource.merge(OTELResourceDetector().detect())
    # OTELResourceDetector reads os.environ only; emulate it for an explicit mapping.
    from_env: dict[str, str] = {}
    for item in _env(environ, "OTEL_RESOURCE_ATTRIBUTES").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            from_env[key.strip()] = value.strip()
    if _env(environ, "OTEL_SERVICE_NAME"):
        from_env[SERVICE_NAME] = _env(environ, "OTEL_SERVICE_NAME")
    return resource.merge(Resource(from_env))


def build_telemetry(
    service_name: str, *, service_version: str | None = None, environ: Mapping[str, str] | None = None
) -> Telemetry:
    """Build providers from the environment without installing them globally (see module docstring).

    Args:
        service_name: Default ``service.name``.
        service_version: Default ``service.version``.
        environ: Read instead of ``os.environ``; the OTLP exporters themselves always read
            ``os.environ`` for their endpoint and headers.

    Returns:
        A :class:`Telemetry` whose providers are not yet the global ones.

    Raises:
        ValueError: On an unsupported exporter name or OTLP protocol.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    resource = build_resource(service_name, service_version=service_version, environ=env)

    # sampler=None: the SDK reads OTEL_TRACES_SAMPLER / _ARG (default parentbased_always_on).
    tracer_provider = TracerProvider(resource=resource)
    exporters: list[SpanExporter] = []
    for name in selected_exporters(env, "TRACES"):
        exporter = _span_exporter(name, env)
        processor: SpanProcessor
        # Console output is for a developer watching; print at once rather than in batches.
        processor = SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)
        tracer_provider.add_span_processor(processor)
        exporters.append(exporter)

    # Metrics come later (named instruments per service); until then a reader is added only when
    # OTEL_METRICS_EXPORTER asks for one, never implied by an OTLP endpoint.
    metric_names = selected_exporters(env, "METRICS") if _env(env, "OTEL_METRICS_EXPORTER") else []
    readers: list[MetricReader] = [
        PeriodicExportingMetricReader(_metric_exporter(name, env)) for name in metric_names
    ]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    effective_name = str(resource.attributes.get(SERVICE_NAME, service_name))
    return Telemetry(
        service_name=effective_name,
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        span_exporters=tuple(exporters),
    )


_LOCK = threading.Lock()
_CONFIGURED: Telemetry | None = None


def configure_telemetry(service_name: str, *, service_version: str | None = None) -> Telemetry:
    """Configure OpenTelemetry for this process from the ``OTEL_*`` variables; idempotent.

    The first call builds the providers (:func:`build_telemetry`) and installs them as the global
    tracer and meter providers; later calls return the same :class:`Telemetry`, whatever their
    arguments. Call :meth:`Telemetry.shutdown` at exit to flush buffered spans.

    Args:
        service_name: Default ``service.name``; ``OTEL_SERVICE_NAME`` overrides it.
        service_version: Default ``service.version``.

    Returns:
        The process-wide :class:`Telemetry`.

    Raises:
        ValueError: On an unsupported exporter name or OTLP protocol.
    """
    global _CONFIGURED
    with _LOCK:
        if _CONFIGURED is not None:
            return _CONFIGURED
        telemetry = build_telemetry(service_name, service_version=service_version)
        trace.set_tracer_provider(telemetry.tracer_provider)
        metrics.set_meter_provider(telemetry.meter_provider)
        if trace.get_tracer_provider() is not telemetry.tracer_provider:
            _LOGGER.warning("a global tracer provider was already installed; spans go to that one")
        _CONFIGURED = telemetry
        _LOGGER.debug(
            "telemetry configured",
            extra={"span_exporters": [type(e).__name__ for e in telemetry.span_exporters]},
        )
        return telemetry


def configured_telemetry() -> Telemetry | None:
    """The :class:`Telemetry` installed by :func:`configure_telemetry`, or None before it ran."""
    return _CONFIGURED


def current_trace_id() -> str:
    """The current span's trace id as 32 lowercase hex characters, or ``""`` outside any span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def current_span_id() -> str:
    """The current span's id as 16 lowercase hex characters, or ``""`` outside any span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_span_id(context.span_id) if context.is_valid else ""


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in a copy of the submitter's context.

    A plain executor runs each task in the worker thread's own (empty) context, so the current
    span, and with it the trace id of logs and outgoing calls, is lost at the hand-over;
    ``asyncio.to_thread`` copies the context, ``loop.run_in_executor`` does not. Tasks submitted
    here see the submitter's ``contextvars`` (the OpenTelemetry context among them) as they were at
    ``submit()``.
    """

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)

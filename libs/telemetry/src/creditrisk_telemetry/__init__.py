"""Telemetry shared by every process of the platform: OpenTelemetry from ``OTEL_*``, JSON logs.

Usage at start-up::

    telemetry = configure_telemetry("feature-service", service_version="1.2.0")
    configure_logging(settings.log_level)
    instrument_grpc()          # needs the [grpc] extra
    ...
    telemetry.shutdown()       # at exit: flush buffered spans

Works without the gRPC contracts and on protobuf 5.29 (the model server's environment); the gRPC
instrumentation is the optional ``[grpc]`` extra, imported only by :func:`instrument_grpc`.
"""

from .grpc_instrumentation import instrument_grpc, is_grpc_instrumented
from .logs import (
    TraceContextFilter,
    configure_logging,
    json_formatter,
    uvicorn_log_config,
)
from .tracing import (
    ContextThreadPoolExecutor,
    Telemetry,
    build_resource,
    build_telemetry,
    configure_telemetry,
    configured_telemetry,
    current_span_id,
    current_trace_id,
    selected_exporters,
)

__all__ = [
    "ContextThreadPoolExecutor",
    "Telemetry",
    "TraceContextFilter",
    "build_resource",
    "build_telemetry",
    "configure_logging",
    "configure_telemetry",
    "configured_telemetry",
    "current_span_id",
    "current_trace_id",
    "instrument_grpc",
    "is_grpc_instrumented",
    "json_formatter",
    "selected_exporters",
    "uvicorn_log_config",
]

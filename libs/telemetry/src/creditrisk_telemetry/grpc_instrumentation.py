"""gRPC tracing through opentelemetry-instrumentation-grpc (the ``[grpc]`` extra), imported lazily.

Kept apart so that ``creditrisk_telemetry`` imports in environments without grpc instrumentation
(the model server's, on protobuf 5.29).
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_INSTRUMENTED = False


def instrument_grpc() -> None:
    """Trace every gRPC server and channel created from now on, sync and ``grpc.aio``; idempotent.

    Installs ``GrpcInstrumentorServer``, ``GrpcAioInstrumentorServer``, ``GrpcInstrumentorClient``
    and ``GrpcAioInstrumentorClient``. They wrap the factory functions (``grpc.server``,
    ``grpc.aio.server``, ``grpc.insecure_channel``, ``grpc.aio.insecure_channel`` and the secure
    variants), so servers and channels made *before* this call stay untraced: call it at start-up,
    after :func:`creditrisk_telemetry.configure_telemetry`. The instrumentation injects and extracts
    context with the global propagator (``OTEL_PROPAGATORS``, W3C ``traceparent`` by default).
    ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES`` (e.g. ``grpc.health.v1.Health``) leaves services untraced.

    Raises:
        ImportError: When the ``[grpc]`` extra (opentelemetry-instrumentation-grpc) is missing.
    """
    global _INSTRUMENTED
    with _LOCK:
        if _INSTRUMENTED:
            return
        try:
            from opentelemetry.instrumentation.grpc import (
                GrpcAioInstrumentorClient,
                GrpcAioInstrumentorServer,
                GrpcInstrumentorClient,
                GrpcInstrumentorServer,
            )
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "instrument_grpc() needs the grpc extra: install creditrisk-telemetry[grpc]"
            ) from exc
        for instrumentor in (
            GrpcInstrumentorServer(),  # type: ignore[no-untyped-call]
            GrpcAioInstrumentorServer(),  # type: ignore[no-untyped-call]
            GrpcInstrumentorClient(),  # type: ignore[no-untyped-call]
            GrpcAioInstrumentorClient(),  # type: ignore[no-untyped-call]
        ):
            # BaseInstrumentor is a per-class singleton that ignores a second instrument() itself.
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()
        _INSTRUMENTED = True


def is_grpc_instrumented() -> bool:
    """True once :func:`instrument_grpc` has run in this process."""
    return _INSTRUMENTED

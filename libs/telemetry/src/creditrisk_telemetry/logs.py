"""JSON logs, one object a line, carrying the current span's trace and span ids.

Every line has ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``service``,
``trace_id`` (32 hex characters) and ``span_id`` (16 hex characters); the two ids are ``""`` when
the line was written outside any span. Fields passed with ``extra={...}`` are added as they are;
an exception's traceback goes to ``exc_info``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from .tracing import configured_telemetry

# Loggers of libraries that install their own handlers; their records are sent to the root's JSON
# handler instead. Uvicorn re-configures its loggers in ``uvicorn.run`` unless ``log_config=None``.
THIRD_PARTY_LOGGERS: tuple[str, ...] = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "grpc",
    "grpc._cython.cygrpc",
    "grpc.aio",
    "grpc._server",
)

_FIELDS = ["levelname", "name", "message", "service", "trace_id", "span_id"]
_RENAMES = {"levelname": "level", "name": "logger"}


class TraceContextFilter(logging.Filter):
    """Stamps ``service``, ``trace_id`` and ``span_id`` on each record, from the current span.

    Runs when the record is emitted, in the thread (and asyncio task context) that logged it.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = ""
            record.span_id = ""
        if not getattr(record, "service", None):
            record.service = self.service
        return True


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (marked so a second call replaces it)."""


def json_formatter() -> logging.Formatter:
    """The JSON formatter used by :func:`configure_logging` (for handlers set up elsewhere)."""
    return JsonFormatter(_FIELDS, rename_fields=_RENAMES, timestamp="time")


def _service_name(service: str | None) -> str:
    if service:
        return service
    telemetry = configured_telemetry()
    if telemetry is not None:
        return telemetry.service_name
    return str(os.environ.get("OTEL_SERVICE_NAME", "")) or "unknown_service"


def configure_logging(
    level: int | str = "INFO",
    *,
    service: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record of the process to ``stream`` as one JSON object a line.

    Replaces the root logger's handlers (a second call replaces the first one's handler), and makes
    the uvicorn and grpc loggers hand their records to the root instead of printing on their own.

    Args:
        level: Root level, a name (``"INFO"``) or a number.
        service: The ``service`` field; defaults to the configured telemetry's ``service.name``,
            else ``OTEL_SERVICE_NAME``, else ``"unknown_service"``.
        stream: Where lines go; default ``sys.stderr``.

    Returns:
        The installed handler.

    Raises:
        ValueError: On an unknown level name.
    """
    if isinstance(level, str):
        numeric = logging.getLevelNamesMapping().get(level.upper())
        if numeric is None:
            raise ValueError(f"unknown log level {level!r}")
        level = numeric
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(TraceContextFilter(_service_name(service)))

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _JsonHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        lib_logger = logging.getLogger(name)
        for old in list(lib_logger.handlers):
            lib_logger.removeHandler(old)
        lib_logger.propagate = True
    return handler


def uvicorn_log_config() -> dict[str, Any]:
    """A ``log_config`` for ``uvicorn.run`` that keeps :func:`configure_logging`'s set-up.

    Returns:
        A :func:`logging.config.dictConfig` mapping that only makes uvicorn's loggers propagate.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {name: {"handlers": [], "propagate": True} for name in THIRD_PARTY_LOGGERS[:3]},
    }

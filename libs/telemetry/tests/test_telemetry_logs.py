"""configure_logging: one JSON object a line, with the active span's trace and span ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from creditrisk_telemetry import configure_logging
from opentelemetry.sdk.trace import TracerProvider


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", service="scoring", stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_outside_a_span(stream: io.StringIO) -> None:
    logging.getLogger("creditrisk.test").warning("hello %s", "world", extra={"applicant_id": 7})
    (line,) = lines(stream)
    assert line["message"] == "hello world"
    assert line["level"] == "WARNING"
    assert line["logger"] == "creditrisk.test"
    assert line["service"] == "scoring"
    assert line["applicant_id"] == 7
    assert line["trace_id"] == ""
    assert line["span_id"] == ""
    assert str(line["time"]).endswith("+00:00")


def test_line_inside_a_span_carries_its_ids(stream: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("score") as span:
        logging.getLogger("creditrisk.test").info("scored")
    (line,) = lines(stream)
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_exception_and_library_loggers(stream: io.StringIO) -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addHandler(logging.StreamHandler(io.StringIO()))
    configure_logging("INFO", service="scoring", stream=stream)  # a second call replaces the first
    assert uvicorn.handlers == []
    uvicorn.info("started")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("creditrisk.test").exception("failed")
    logging.getLogger("creditrisk.test").debug("filtered by level")
    started, failed = lines(stream)
    assert started["logger"] == "uvicorn.error"
    assert "ValueError: boom" in str(failed["exc_info"])
    assert len(logging.getLogger().handlers) == 1


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging("LOUD")

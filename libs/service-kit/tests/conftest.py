"""Fixtures: OpenTelemetry configured once with an in-memory span exporter, gRPC instrumented."""

from __future__ import annotations

import pytest
from creditrisk_telemetry import configure_telemetry, instrument_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    telemetry = configure_telemetry("service-kit-tests")
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_grpc()
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    span_exporter.clear()
    return span_exporter

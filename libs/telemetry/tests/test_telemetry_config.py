"""configure_telemetry / build_telemetry: no exporter unless asked, OTLP on an endpoint, console."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from creditrisk_telemetry import (
    Telemetry,
    build_telemetry,
    configure_telemetry,
    current_span_id,
    current_trace_id,
    instrument_grpc,
    is_grpc_instrumented,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpOTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

OTEL_VARS = [
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def built() -> Iterator[list[Telemetry]]:
    made: list[Telemetry] = []
    yield made
    for telemetry in made:
        telemetry.shutdown()


def processors(telemetry: Telemetry) -> tuple[object, ...]:
    return tuple(telemetry.tracer_provider._active_span_processor._span_processors)


def test_no_exporter_by_default_but_real_ids(built: list[Telemetry]) -> None:
    telemetry = build_telemetry("feature-service", service_version="1.2.3")
    built.append(telemetry)
    assert telemetry.span_exporters == ()
    assert processors(telemetry) == ()
    assert telemetry.service_name == "feature-service"
    assert telemetry.resource.attributes["service.version"] == "1.2.3"
    with telemetry.tracer_provider.get_tracer("t").start_as_current_span("s") as span:
        assert re.fullmatch(r"[0-9a-f]{32}", current_trace_id())
        assert current_trace_id() == format(span.get_span_context().trace_id, "032x")
        assert re.fullmatch(r"[0-9a-f]{16}", current_span_id())
    assert current_trace_id() == ""
    assert current_span_id() == ""


def test_otlp_grpc_when_endpoint_set(monkeypatch: pytest.MonkeyPatch, built: list[Telemetry]) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4317")
    telemetry = build_telemetry("svc")
    built.append(telemetry)
    (exporter,) = telemetry.span_exporters
    assert isinstance(exporter, GrpcOTLPSpanExporter)
    (processor,) = processors(telemetry)
    assert isinstance(processor, BatchSpanProcessor)


def test_otlp_http_protocol(monkeypatch: pytest.MonkeyPatch, built: list[Telemetry]) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.invalid:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    telemetry = build_telemetry("svc")
    built.append(telemetry)
    (exporter,) = telemetry.span_exporters
    assert isinstance(exporter, HttpOTLPSpanExporter)
    assert exporter._endpoint == "http://collector.invalid:4318/v1/traces"


def test_console_exporter_and_none(monkeypatch: pytest.MonkeyPatch, built: list[Telemetry]) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    telemetry = build_telemetry("svc")
    built.append(telemetry)
    (exporter,) = telemetry.span_exporters
    assert isinstance(exporter, ConsoleSpanExporter)
    assert isinstance(processors(telemetry)[0], SimpleSpanProcessor)

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4317")
    telemetry = build_telemetry("svc")
    built.append(telemetry)
    assert telemetry.span_exporters == ()


def test_unsupported_values_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        build_telemetry("svc")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ValueError, match="carrier-pigeon"):
        build_telemetry("svc")


def test_environment_overrides_resource(monkeypatch: pytest.MonkeyPatch, built: list[Telemetry]) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.version=9")
    telemetry = build_telemetry("feature-service", service_version="1.0")
    built.append(telemetry)
    assert telemetry.service_name == "renamed"
    assert telemetry.resource.attributes["deployment.environment"] == "staging"
    assert telemetry.resource.attributes["service.version"] == "9"


def test_configure_is_idempotent_and_global() -> None:
    first = configure_telemetry("telemetry-tests")
    assert configure_telemetry("other-name") is first
    assert trace.get_tracer_provider() is first.tracer_provider
    assert first.force_flush(1.0)


def test_instrument_grpc_is_idempotent() -> None:
    instrument_grpc()
    instrument_grpc()
    assert is_grpc_instrumented()


def test_works_without_grpc_instrumentation() -> None:
    """The model server's environment: no [grpc] extra. Import and configure work; only
    instrument_grpc() fails, with a message naming the extra."""
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.instrumentation.grpc'] = None\n"
        "import creditrisk_telemetry as t\n"
        "tel = t.configure_telemetry('model-server')\n"
        "assert 'grpc' not in sys.modules, 'grpc imported'\n"
        "try:\n"
        "    t.instrument_grpc()\n"
        "except ImportError as e:\n"
        "    print('ImportError', e)\n"
        "tel.shutdown()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "creditrisk-telemetry[grpc]" in result.stdout

"""Online reads leave telemetry: the online-store read span (counts only) and the Prometheus
freshness and missing-feature instruments (labels: feature views and statuses, never values)."""

from __future__ import annotations

from feature_service.core import FeatureStoreCore
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_online_read_counts_statuses_observes_ages_and_traces_the_store_read(
    german: FeatureStoreCore,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    warm = german.online.get_online_features([{"applicant_id": 2}], feature_service="credit_risk_v1")
    view = warm.features[0].view
    missing0 = _value("feature_service_online_values_total", feature_view=view, status="MISSING")
    present0 = _value("feature_service_online_values_total", feature_view=view, status="PRESENT")
    ages0 = _value("feature_service_online_feature_age_seconds_count", feature_view=view)

    import feature_service.online_read as read_module

    saved = read_module._TRACER
    read_module._TRACER = tracer
    try:
        with tracer.start_as_current_span("caller") as caller:
            result = german.online.get_online_features(
                [{"applicant_id": 10_000_001}, {"applicant_id": 2}], feature_service="credit_risk_v1"
            )
    finally:
        read_module._TRACER = saved
    per_view = sum(1 for s in result.features if s.view == view)
    assert _value("feature_service_online_values_total", feature_view=view, status="MISSING") == (
        missing0 + per_view
    )
    assert _value("feature_service_online_values_total", feature_view=view, status="PRESENT") == (
        present0 + per_view
    )
    # one age per entity found (the unknown applicant has no row)
    assert _value("feature_service_online_feature_age_seconds_count", feature_view=view) == ages0 + 1

    spans = {s.name: s for s in exporter.get_finished_spans()}
    read = spans["feature_store.online_read"]
    assert read.parent is not None
    assert read.parent.span_id == caller.get_span_context().span_id
    assert read.kind == trace.SpanKind.CLIENT
    assert dict(read.attributes or {})["feature.entity_count"] == 2
    exposition = generate_latest().decode()
    assert "10000001" not in exposition
    assert "10000001" not in str(dict(read.attributes or {}))


def test_metrics_stay_in_process_memory_after_feast_switched_to_files(german: FeatureStoreCore) -> None:
    """``import feast`` sets PROMETHEUS_MULTIPROC_DIR (feast.metrics); the core undoes it: no
    variable handed to child processes, the feature-service's own metrics in memory, not mmapped."""
    import os

    from feast import metrics as feast_metrics
    from feature_service import metrics
    from prometheus_client import values

    assert feast_metrics._owns_mp_dir  # Feast did switch it at import (the state this test undoes)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert "PROMETHEUS_MULTIPROCESS_DIR" not in os.environ
    german.online.get_online_features([{"applicant_id": 1}], [{}], "credit_risk_v1", None, None)
    child = metrics.ONLINE_VALUES.labels(feature_view="applicant_profile", status="PRESENT")
    assert isinstance(child._value, values.MutexValue)
    assert "feature_service_online_values_total" in generate_latest(REGISTRY).decode()

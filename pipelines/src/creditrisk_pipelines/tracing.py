"""One trace per pipeline run: each component's span, and its calls into the services under it.

A component runs in a process of its own (a pod on a cluster, a subprocess under ``kfp.local``),
so the run's trace context travels as a pipeline parameter, ``traceparent`` (W3C Trace Context,
``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``):

* given (the local runner, :func:`creditrisk_pipelines.local.run`, starts a root span
  ``pipeline.<name>`` and passes its context; a caller may pass its own): every component's span
  is a child of that span;
* empty (a run started from the Kubeflow UI or API): the context is derived from the run's job id
  (:func:`run_context`: trace id and parent span id from ``sha256("kfp-run:<job id>")``), so the
  components of one run still share one trace, whose root is the (unrecorded) run itself.

:func:`component_span` configures OpenTelemetry from the standard ``OTEL_*`` variables
(``creditrisk_telemetry``: no exporter unless one is set), starts ``pipeline.<component>`` under
that parent, and flushes the spans before the component's process exits. The gRPC channels of the
kit (:func:`creditrisk_kit.client.aio_channel`, under the :mod:`creditrisk_clients` clients) are
instrumented, so each call is a client span under the component's span, and the service's server
span under that. Attributes: the component's name and the run's job id (ids only, never data).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_PROPAGATOR = TraceContextTextMapPropagator()


def check_traceparent(value: str) -> str:
    """``value`` stripped, when it is empty or a W3C ``traceparent`` with non-zero ids.

    Raises:
        ValueError: naming the ``traceparent`` parameter otherwise.
    """
    text = (value or "").strip().lower()
    if not text:
        return ""
    match = _TRACEPARENT.match(text)
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        raise ValueError(
            f"traceparent {value!r} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not zero)"
        )
    return text


def run_context(pipeline_job_id: str) -> SpanContext:
    """The remote parent of a run started without a ``traceparent``: ids from its job id.

    Trace id: the first 16 bytes of ``sha256("kfp-run:<job id>")``; parent span id: the next 8.
    The same job id always gives the same context (every component of the run agrees).
    """
    digest = hashlib.sha256(f"kfp-run:{pipeline_job_id}".encode()).digest()
    return SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def parent_context(traceparent: str, pipeline_job_id: str) -> otel_context.Context:
    """The OpenTelemetry context a component's span starts in (see the module docstring)."""
    text = check_traceparent(traceparent)
    if text:
        return _PROPAGATOR.extract({"traceparent": text})
    return trace.set_span_in_context(NonRecordingSpan(run_context(pipeline_job_id)))


def traceparent_of(span: trace.Span) -> str:
    """The W3C ``traceparent`` naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


@contextmanager
def component_span(component: str, traceparent: str, pipeline_job_id: str) -> Iterator[trace.Span]:
    """Run a component's work inside its span ``pipeline.<component>`` (see the module docstring).

    Raises:
        ValueError: a malformed ``traceparent`` (before any call is made).
    """
    from creditrisk_telemetry import configure_telemetry

    parent = parent_context(traceparent, pipeline_job_id)
    telemetry = configure_telemetry("pipelines")
    tracer = trace.get_tracer("creditrisk_pipelines")
    try:
        with tracer.start_as_current_span(
            f"pipeline.{component}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes={"pipeline.component": component, "kfp.pipeline_job_id": pipeline_job_id},
        ) as span:
            yield span
    finally:
        telemetry.tracer_provider.force_flush()

"""Work handed to a thread pool keeps the submitter's trace (ContextThreadPoolExecutor)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from creditrisk_telemetry import ContextThreadPoolExecutor, build_telemetry
from opentelemetry import trace


def _ids() -> tuple[int, int]:
    context = trace.get_current_span().get_span_context()
    return context.trace_id, context.span_id


def test_tasks_run_in_the_submitters_span_and_a_plain_pool_loses_it() -> None:
    tracer = build_telemetry("executor-test", environ={}).tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        expected = (span.get_span_context().trace_id, span.get_span_context().span_id)
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            assert [f.result() for f in [pool.submit(_ids) for _ in range(4)]] == [expected] * 4
        with ThreadPoolExecutor(max_workers=2) as plain:
            assert plain.submit(_ids).result() == (0, 0)  # the hand-over loses the context

"""Run a pipeline on this machine with ``kfp.local``: ``python -m creditrisk_pipelines.local``.

The subprocess runner without a venv (``SubprocessRunner(use_venv=False)``): each component runs
as a subprocess of this environment's Python (``pipelines/.venv``, which has this package): a new
interpreter per task. kfp.local ignores retries and caching (they are for the cluster). Used by
``make demo`` and the end-to-end tests, which run in the development environment (no kfp there)::

    pipelines/.venv/bin/python -m creditrisk_pipelines.local training \\
        --arguments '{"feature_service": "127.0.0.1:50051", ...}' --output result.json

The run is one trace (:mod:`creditrisk_pipelines.tracing`): a root span ``pipeline.<name>`` here
(a child of the caller's ``traceparent`` argument when one is given), whose context every component
receives as its ``traceparent`` parameter; spans are exported by the standard ``OTEL_*`` variables,
which the components' subprocesses inherit.

The pipeline's credential is not an argument: kfp.local's subprocess runner starts each component
with this process's environment (``subprocess.Popen`` without ``env``), so
``CREDITRISK_CREDENTIAL_FILE`` (a file holding it, e.g. ``.run/demo/<profile>/secrets/pipeline.key``)
or ``CREDITRISK_CREDENTIAL`` set for this command reaches every component
(:mod:`creditrisk_pipelines.credential`). It is checked before the run starts; a former
``registry_token`` / ``token`` argument is refused, naming the variables.

The result (printed as JSON, and written to ``--output``) is ``{"pipeline", "seconds",
"trace_id", "traceparent", "outputs": the pipeline's outputs, "tasks": {task name: its output
parameters}}``; ``tasks``
includes the tasks of a sub-pipeline (the monitoring pipeline's training run), so a caller can
tell which stages ran. A failed task makes the command exit with status 1 and the task's error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def _task_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob("executor_output.json")):
        values = json.loads(path.read_text()).get("parameterValues", {})
        tasks[path.parent.relative_to(run_dir).as_posix()] = values
    return tasks


def run(pipeline: str, arguments: dict[str, Any], pipeline_root: Path | None = None) -> dict[str, Any]:
    """Run ``pipeline`` (``training`` or ``monitoring``) with ``arguments`` under ``kfp.local``.

    Args:
        pipeline: the pipeline's name in :data:`creditrisk_pipelines.pipelines.PIPELINES`.
        arguments: the pipeline's parameters by name.
        pipeline_root: where task outputs go; a fresh temporary folder when None.

    Returns:
        ``{"pipeline", "seconds", "trace_id", "traceparent", "outputs", "tasks"}`` (see the module
        docstring).

    Raises:
        KeyError: an unknown pipeline name.
        ValueError: a malformed ``traceparent`` argument.
        CredentialError: (a ``ValueError``) a ``registry_token`` / ``token`` argument, or no
            usable credential in ``CREDITRISK_CREDENTIAL_FILE`` / ``CREDITRISK_CREDENTIAL``.
        RuntimeError: a task failed (kfp.local's error, naming the task).
    """
    from creditrisk_telemetry import configure_telemetry
    from kfp import local
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from creditrisk_pipelines.credential import pipeline_credential, refuse_removed_parameters
    from creditrisk_pipelines.pipelines import PIPELINES
    from creditrisk_pipelines.tracing import check_traceparent, traceparent_of

    if pipeline not in PIPELINES:
        raise KeyError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    refuse_removed_parameters(arguments)
    pipeline_credential()  # fail before the run, not in its first component
    root = Path(pipeline_root or tempfile.mkdtemp(prefix=f"kfp-{pipeline}-")).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    arguments = dict(arguments)
    given = check_traceparent(str(arguments.get("traceparent", "")))
    caller = TraceContextTextMapPropagator().extract({"traceparent": given}) if given else None
    telemetry = configure_telemetry("pipelines")
    tracer = trace.get_tracer("creditrisk_pipelines")
    began = time.monotonic()
    try:
        with (
            tracer.start_as_current_span(
                f"pipeline.{pipeline}", context=caller, attributes={"pipeline.name": pipeline}
            ) as span,
            warnings.catch_warnings(),
        ):
            # the components' image is the pipelines' own (no "python" in its name): kfp.local warns
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            arguments["traceparent"] = traceparent_of(span)
            task = PIPELINES[pipeline](**arguments)
    finally:
        telemetry.tracer_provider.force_flush()
    seconds = time.monotonic() - began
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return {
        "pipeline": pipeline,
        "seconds": round(seconds, 1),
        "trace_id": format(span.get_span_context().trace_id, "032x"),
        "traceparent": arguments["traceparent"],
        "outputs": dict(task.outputs),
        "tasks": _task_outputs(runs[-1]) if runs else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a pipeline with kfp.local (subprocess runner).")
    parser.add_argument("pipeline", choices=["training", "monitoring"])
    parser.add_argument("--arguments", required=True, help="the pipeline's parameters as a JSON object")
    parser.add_argument("--output", type=Path, help="also write the result JSON here")
    parser.add_argument("--pipeline-root", type=Path, help="where task outputs go (default: a temp folder)")
    args = parser.parse_args(argv)
    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        parser.error(f"--arguments is not JSON: {exc}")
    if not isinstance(arguments, dict):
        parser.error("--arguments must be a JSON object of parameter names to values")
    try:
        result = run(args.pipeline, arguments, args.pipeline_root)
    except Exception as exc:  # kfp.local raises RuntimeError naming the failed task
        print(f"pipeline {args.pipeline} failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

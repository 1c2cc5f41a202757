"""Observability in ``make demo``: where a prediction's spans can be read, and every metrics endpoint.

Two calls from ``scripts/demo.py``::

    observability = demo_observability.start(demo_state.spans_file(ROOT, PROFILE))   # before any service
    ...
    demo_observability.show(observability, rest_url, supervisor, applicant, token)   # once serving

:func:`start` runs an OTLP/gRPC trace receiver in the demo's process (``creditrisk_devstack.otlp``)
that appends every span, as one OTLP/JSON object a line, to the run's trace file
(``.run/demo/<profile>/traces/spans.jsonl``: one per profile, kept with the run's state); it puts
the standard ``OTEL_*`` variables into the demo's own environment, which every service process
inherits (each one's metrics port is set in the stack file, ``deploy/stack/local.toml``).
:func:`show` sends one prediction with a fresh ``traceparent``, prints its trace id, the file and
the command that reads its spans, the span tree, and checks that every service's Prometheus
endpoint answers.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import demo_state
import httpx
from closed_loop import ca_file, http_verify
from creditrisk_devstack.otlp import OtlpReceiver, ReceivedSpan
from rich.console import Console
from rich.tree import Tree

console = Console()

#: The services built on the kit (each with the kit's Prometheus endpoint), by process name.
_METRICS = ("feature-service", "training-service", "registry-gateway", "drift-service", "inference-gateway")


@dataclass
class Observability:
    receiver: OtlpReceiver
    spans_file: Path


def start(spans_file: Path) -> Observability:
    """Start the receiver writing to ``spans_file`` (emptied first) and export ``OTEL_*`` to every
    process started later (each one's metrics port is in the stack file)."""
    spans_file.parent.mkdir(parents=True, exist_ok=True)
    spans_file.unlink(missing_ok=True)
    receiver = OtlpReceiver(jsonl=spans_file).start()
    atexit.register(receiver.stop)
    os.environ.update(receiver.env())
    return Observability(receiver, spans_file)


def _tree(spans: list[ReceivedSpan], root_parent: str) -> Tree:
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)
    known = {s.span_id for s in spans}
    tree = Tree("[bold]caller[/bold]")

    def add(node: Tree, parent: str) -> None:
        for span in children.get(parent, []):
            add(node.add(f"{span.service}: {span.name}"), span.span_id)

    add(tree, root_parent)
    for orphan in (s for s in spans if s.parent_span_id not in known and s.parent_span_id != root_parent):
        add(tree.add(f"{orphan.service}: {orphan.name}"), orphan.span_id)
    return tree


def _logged_metrics_port(log: Path) -> int | None:
    found = None
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if '"metrics_port"' in line:
                try:
                    found = int(json.loads(line)["metrics_port"])
                except (ValueError, KeyError, TypeError):
                    continue
    return found


def show(observability: Observability, rest_url: str, supervisor: Any, applicant: int, token: str) -> str:
    """One traced prediction (as ``token``, an API key with the predict role): print its trace id,
    where its spans are, its tree; check /metrics.

    Returns:
        The trace id.
    """
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    answer = httpx.post(
        f"{rest_url}/v1/predict",
        json={"applicant_id": applicant},
        headers={"traceparent": f"00-{trace_id}-{parent}-01", "authorization": f"Bearer {token}"},
        timeout=30,
        verify=http_verify(),
    )
    answer.raise_for_status()
    assert answer.json()["trace_id"] == trace_id
    deadline = time.monotonic() + 20
    wanted = {"inference-gateway", "feature-service", "model-server"}
    while {
        s.service for s in observability.receiver.spans(trace_id)
    } < wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    spans = observability.receiver.spans(trace_id)
    console.print(f"\nprediction for applicant {applicant}: trace id [bold]{trace_id}[/bold]")
    where = demo_state.shown(observability.spans_file)
    console.print(f"its {len(spans)} spans (OTLP/JSON, one a line) are in {where}", soft_wrap=True)
    console.print(f"  read them: grep {trace_id} {where}", soft_wrap=True)
    console.print(_tree(spans, parent))
    linked = [s for s in observability.receiver.spans() if s.name == "prediction_log.deliver" and s.links]
    if any(link[0] == trace_id for s in linked for link in s.links):
        console.print(
            "the prediction log's batch span links to it (drift-service LogPredictions under that span)"
        )
    ports = {}
    for name in (*_METRICS, "model-server-champion"):
        if name not in supervisor:
            continue
        argv = list(supervisor[name].spec.argv)
        if "--metrics-port" in argv:  # the model-server's (seldon-core's) own endpoint
            ports[name] = int(argv[argv.index("--metrics-port") + 1])
        elif (port := _logged_metrics_port(supervisor.log_dir / f"{name}.log")) is not None:
            ports[name] = port  # the bound port the kit logged (the demo may ask for port 0)
    scheme = "https" if ca_file() is not None else "http"  # every server of a TLS stack
    for name, port in ports.items():
        try:
            status = httpx.get(
                f"{scheme}://127.0.0.1:{port}/metrics", timeout=5, verify=http_verify()
            ).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        console.print(f"metrics of {name}: {scheme}://127.0.0.1:{port}/metrics -> {status}")
    return trace_id

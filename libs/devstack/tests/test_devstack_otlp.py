"""The OTLP receiver as a process of its own: endpoint on its first line, spans counted at SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def test_receiver_process_counts_what_it_received(tmp_path: Path) -> None:
    jsonl = tmp_path / "spans.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "creditrisk_devstack.otlp", "--jsonl", str(jsonl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        provider = TracerProvider(resource=Resource({"service.name": "otlp-test"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for name in ("one", "two"):
            provider.get_tracer("t").start_span(name).end()
        provider.shutdown()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out.strip().splitlines()[-1] == "2"
    rows = jsonl.read_text().splitlines()
    assert len(rows) == 2
    assert '"service_name": "otlp-test"' in rows[0]

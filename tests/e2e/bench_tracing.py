"""Benchmark the cost of tracing on the gateway's Predict, in one run on one machine (issue 10).

Starts the end-to-end stack (:mod:`e2e_stack`, embedded profile) under the supervisor and times
REST ``POST /v1/predict`` and gRPC ``Predict`` at concurrency 1 (warm-up excluded) in three
configurations of the processes on the online path (inference-gateway, feature-service,
model-server champion, drift-service), restarted between them with only the ``OTEL_*`` variables
changed:

* ``export``: OTLP/gRPC export to an in-process receiver (``otlp_receiver.OtlpReceiver``) with
  the SDK's default batch processor settings;
* ``no exporter``: no ``OTEL_*`` variable (the default): real spans and ids into responses and
  logs, exported nowhere;
* ``disabled``: ``OTEL_SDK_DISABLED=true``: no spans at all (non-recording), the floor.

Run from the repository root in the development environment::

    .tools/bin/uv run python tests/e2e/bench_tracing.py [--requests 600]

Needs ``make setup``. Prints a table; every process stops at the end. Not a test: figures vary with
the machine's load (``uptime`` is printed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
import httpx
from bench_gateway import latency
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from creditrisk_devstack import Supervisor
from creditrisk_devstack.otlp import OtlpReceiver
from e2e_stack import Stack, inference_gateway_http
from test_gateway_e2e import materialized

ONLINE_PATH = ("inference-gateway", "model-server-champion", "feature-service", "drift-service")


def _configure(stack: Stack, env: dict[str, str]) -> None:
    """Restart the online path's processes with ``env`` as their OTEL_* variables."""
    for name in ONLINE_PATH:
        if name in stack.targets:
            stack.stop(name)
    stack.extra_env = dict(env)
    inference_gateway_http(stack)


def _measure(stack: Stack, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    base = inference_gateway_http(stack)
    ids = list(range(1, args.applicants + 1))
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(base_url=base, timeout=30) as client:

        def rest(i: int) -> None:
            client.post("/v1/predict", json={"applicant_id": i}).raise_for_status()

        out["REST"] = latency(rest, ids, args.requests, args.warmup)
    with grpc.insecure_channel(stack.targets["inference-gateway"]) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)

        def rpc(i: int) -> None:
            stub.Predict(pb.PredictRequest(applicant_id=i), timeout=30)

        out["gRPC"] = latency(rpc, ids, args.requests, args.warmup)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--applicants", type=int, default=200)
    args = parser.parse_args(argv)
    receiver = OtlpReceiver().start()
    export_env = {k: v for k, v in receiver.env().items() if k != "OTEL_BSP_SCHEDULE_DELAY"}
    configs: list[tuple[str, dict[str, str]]] = [
        ("export (OTLP/gRPC to a receiver)", export_env),
        ("no exporter (default)", {}),
        ("disabled (OTEL_SDK_DISABLED=true)", {"OTEL_SDK_DISABLED": "true"}),
    ]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    loads: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="trace-bench-") as tmp:
            workdir = Path(tmp)
            with Supervisor(workdir / "logs") as supervisor:
                stack = Stack(supervisor, workdir, extra_env=export_env)
                inference_gateway_http(stack)
                materialized(stack)
                for label, env in configs:
                    _configure(stack, env)
                    results[label] = _measure(stack, args)
                    loads.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        spans = len(receiver.spans())
        receiver.stop()
    report(results, loads, spans, args)
    return 0


def report(results: dict[str, Any], loads: list[str], spans: int, args: argparse.Namespace) -> None:
    print(f"date: {datetime.now(UTC).isoformat(timespec='minutes')}; requests {args.requests} per path")
    for load in loads:
        print(f"load: {load}")
    print(f"spans received in the export run: {spans}")
    print("| configuration | REST p50 ms | REST p99 ms | gRPC p50 ms | gRPC p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, paths in results.items():
        rest, rpc = paths["REST"], paths["gRPC"]
        print(f"| {label} | {rest[0]:.2f} | {rest[1]:.1f} | {rpc[0]:.2f} | {rpc[1]:.1f} |")
    labels = list(results)
    base = results[labels[1]]
    for path in ("REST", "gRPC"):
        ratio = results[labels[0]][path][0] / base[path][0]
        print(f"{path}: export / no exporter at p50 = {ratio:.2f}x (target <= 1.1x)")
        ratio = base[path][0] / results[labels[2]][path][0]
        print(f"{path}: no exporter / disabled at p50 = {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())

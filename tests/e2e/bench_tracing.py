"""Benchmark the cost of tracing on the gateway's Predict, in one run on one machine (issue 10).

Starts the end-to-end stack (:mod:`e2e_stack`, embedded profile) under the supervisor and times
REST ``POST /v1/predict`` and gRPC ``Predict`` at concurrency 1, one REST and one gRPC call in
turn (so a load burst of the shared machine hits both paths alike; warm-up excluded), in three
configurations of the processes on the online path (inference-gateway, feature-service,
model-server champion, drift-service), restarted between them with only the ``OTEL_*`` variables
changed:

* ``export``: OTLP/gRPC export to a receiver in a process of its own
  (``python -m creditrisk_devstack.otlp``: receiving costs the measuring process nothing) with the
  SDK's default batch processor settings;
* ``no exporter``: no ``OTEL_*`` variable (the default): real spans and ids into responses and
  logs, exported nowhere;
* ``disabled``: ``OTEL_SDK_DISABLED=true``: no spans at all (non-recording), the floor.

The three run in turn for ``--rounds`` rounds (load on a shared machine drifts between windows:
one window each once put ``disabled`` 14% above ``no exporter``); the table pools every round's
samples and adds the CPU each online-path process group spent per measured call (``/proc``: less
sensitive to other load than latency).

Run from the repository root in the development environment::

    .tools/bin/uv run python tests/e2e/bench_tracing.py [--requests 300 --rounds 2]

Needs ``make setup``. Prints a table; every process stops at the end. Not a test: figures vary with
the machine's load (``uptime`` is printed).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_gateway import percentiles
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from creditrisk_devstack import Supervisor
from creditrisk_devstack.otlp import otlp_env
from creditrisk_devstack.procgroup import group_cpu_seconds
from e2e_stack import GATEWAY_HEADERS, VERIFY, Stack, gateway_channel, inference_gateway_http
from test_gateway_e2e import materialized

ONLINE_PATH = ("inference-gateway", "model-server-champion", "feature-service", "drift-service")


def _configure(stack: Stack, env: dict[str, str]) -> None:
    """Restart the online path's processes with ``env`` as their OTEL_* variables."""
    for name in ONLINE_PATH:
        if name in stack.targets:
            stack.stop(name)
    stack.extra_env = dict(env)
    inference_gateway_http(stack)


def _measure(stack: Stack, args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float]]:
    """One REST and one gRPC Predict in turn: the latency samples (s) of each path, and the CPU
    seconds each online-path process group spent over the measured calls."""
    base = inference_gateway_http(stack)
    ids = list(range(1, args.applicants + 1))
    samples: dict[str, list[float]] = {"REST": [], "gRPC": []}
    groups = {name: stack.supervisor[name].pgid for name in ONLINE_PATH if name in stack.targets}
    with (
        httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client,
        gateway_channel(stack.targets["inference-gateway"]) as channel,
    ):
        stub = pb_grpc.InferenceServiceStub(channel)
        calls = {
            "REST": lambda i: client.post("/v1/predict", json={"applicant_id": i}).raise_for_status(),
            "gRPC": lambda i: stub.Predict(pb.PredictRequest(applicant_id=i), timeout=30),
        }
        cpu: dict[str, float] = {}
        for k in range(args.warmup + args.requests):
            if k == args.warmup:
                cpu = {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}
            for path, call in calls.items():
                began = time.perf_counter()
                call(ids[k % len(ids)])
                if k >= args.warmup:
                    samples[path].append(time.perf_counter() - began)
        time.sleep(1.0)  # the batch processors' last export of these calls (5 s schedule: partly)
        spent = {name: group_cpu_seconds(pgid) - cpu[name] for name, pgid in groups.items()}
    return samples, spent


def _start_receiver() -> tuple[subprocess.Popen[str], str]:
    """``python -m creditrisk_devstack.otlp`` and its endpoint (its first line on stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "creditrisk_devstack.otlp"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint.startswith("http://"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the OTLP receiver did not start (said {endpoint!r})")
    return proc, endpoint


def _stop_receiver(proc: subprocess.Popen[str]) -> int:
    """SIGTERM the receiver (by its PID); the number of spans it received."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -1
    lines = out.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].isdigit() else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="measured calls per path and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three configurations")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--applicants", type=int, default=200)
    args = parser.parse_args(argv)
    receiver, endpoint = _start_receiver()
    export_env = {k: v for k, v in otlp_env(endpoint).items() if k != "OTEL_BSP_SCHEDULE_DELAY"}
    configs: list[tuple[str, dict[str, str]]] = [
        ("export (OTLP/gRPC to a receiver)", export_env),
        ("no exporter (default)", {}),
        ("disabled (OTEL_SDK_DISABLED=true)", {"OTEL_SDK_DISABLED": "true"}),
    ]
    samples: dict[str, dict[str, list[float]]] = {label: {"REST": [], "gRPC": []} for label, _ in configs}
    rounds: dict[str, list[dict[str, tuple[float, float]]]] = {label: [] for label, _ in configs}
    cpu: dict[str, dict[str, float]] = {label: {} for label, _ in configs}
    loads: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="trace-bench-") as tmp:
            workdir = Path(tmp)
            with Supervisor(workdir / "logs") as supervisor:
                stack = Stack(supervisor, workdir, extra_env=export_env)
                inference_gateway_http(stack)
                materialized(stack)
                for _ in range(args.rounds):
                    for label, env in configs:
                        _configure(stack, env)
                        got, spent = _measure(stack, args)
                        for path, values in got.items():
                            samples[label][path].extend(values)
                        rounds[label].append({path: percentiles(values) for path, values in got.items()})
                        for name, seconds in spent.items():
                            cpu[label][name] = cpu[label].get(name, 0.0) + seconds
                        loads.append(
                            subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
                        )
    finally:
        spans = _stop_receiver(receiver)
    report(samples, rounds, cpu, loads, spans, args)
    return 0


def report(
    samples: dict[str, dict[str, list[float]]],
    rounds: dict[str, list[dict[str, tuple[float, float]]]],
    cpu: dict[str, dict[str, float]],
    loads: list[str],
    spans: int,
    args: argparse.Namespace,
) -> None:
    """Print the pooled table, each round's p50, the CPU per call of each process and the ratios."""
    calls = 2 * args.requests * args.rounds  # REST + gRPC calls measured per configuration
    print(
        f"date: {datetime.now(UTC).isoformat(timespec='minutes')}; {args.rounds} rounds x "
        f"{args.requests} calls per path and configuration, REST and gRPC in turn"
    )
    for load in loads:
        print(f"load: {load}")
    print(f"spans received (all export rounds): {spans}")
    print("| configuration | REST p50 ms | REST p99 ms | gRPC p50 ms | gRPC p99 ms | CPU ms per call |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    pooled = {label: {p: percentiles(v) for p, v in paths.items()} for label, paths in samples.items()}
    for label, paths in pooled.items():
        rest, rpc = paths["REST"], paths["gRPC"]
        per_call = sum(cpu[label].values()) / calls * 1e3
        print(f"| {label} | {rest[0]:.2f} | {rest[1]:.1f} | {rpc[0]:.2f} | {rpc[1]:.1f} | {per_call:.2f} |")
    print(
        "CPU ms per call by process: "
        + "; ".join(
            f"{label.split(' (')[0]}: "
            + ", ".join(f"{n} {s / calls * 1e3:.2f}" for n, s in sorted(spent.items()))
            for label, spent in cpu.items()
        )
    )
    for label, per_round in rounds.items():
        print(
            f"p50 per round, {label}: "
            + ", ".join(f"{r['REST'][0]:.2f} / {r['gRPC'][0]:.2f}" for r in per_round)
        )
    labels = list(pooled)
    base = pooled[labels[1]]
    for path in ("REST", "gRPC"):
        ratio = pooled[labels[0]][path][0] / base[path][0]
        print(f"{path}: export / no exporter at p50 = {ratio:.2f}x (target <= 1.1x)")
        ratio = base[path][0] / pooled[labels[2]][path][0]
        print(f"{path}: no exporter / disabled at p50 = {ratio:.2f}x")
    export_cpu, base_cpu = sum(cpu[labels[0]].values()), sum(cpu[labels[1]].values())
    print(f"CPU per call: export / no exporter = {export_cpu / base_cpu:.2f}x")


if __name__ == "__main__":
    sys.exit(main())

"""The floor of a Python gRPC gateway on this machine: an empty relay in front of two backends.

Issue 8 asks the gateway's p50 to be at most 1.3 x (feature-service p50 + model-server p50), each
backend timed directly. This script measures what that ratio is for a gateway that does **nothing**:
three processes, bare ``grpc.aio`` servers (no interceptors, no tracing, no metrics), raw bytes (no
protobuf), and a client in a fourth:

* ``backend-a`` and ``backend-b``: answer each call after ``--work-a-us`` / ``--work-b-us``
  microseconds of CPU (a busy loop standing in for the feature-service's and the model-server's
  own work; defaults near their measured CPU per call);
* ``relay``: on each call, awaits ``backend-a`` then ``backend-b`` (one ``grpc.aio`` channel each)
  and answers: the gateway's shape with none of its logic.

The client (sync ``grpc``, like the gateway benchmark's) times, in turn in ``--rounds`` rounds, a
direct call to each backend and a call through the relay, and prints p50 / p99 and the ratio
``relay / (a + b)``; and the CPU per call of each server process (``/proc``).

Run from the repository root in the development environment::

    .tools/bin/uv run python tests/e2e/bench_hop_floor.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from creditrisk_devstack import free_port

METHOD = "/floor.Floor/Call"
_IDENTITY = None  # raw bytes in and out: no (de)serializer


def _burn(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


async def _serve(role: str, port: int, work_us: float, targets: list[str]) -> None:
    server = grpc.aio.server()
    if role == "backend":

        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            _burn(work_us)
            return request

    else:
        channels = [grpc.aio.insecure_channel(t) for t in targets]
        stubs = [c.unary_unary(METHOD) for c in channels]

        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            for stub in stubs:
                request = await stub(request, timeout=10)
            return request

    handler = grpc.method_handlers_generic_handler(
        "floor.Floor", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Floor:
    """One measurement: pooled samples (s) and CPU ms per call of each server, per path."""

    samples: dict[str, list[float]]
    cpu: dict[str, dict[str, float]]
    load: str

    def p50(self, path: str) -> float:
        """p50 of a path in ms."""
        return statistics.median(self.samples[path]) * 1e3

    @property
    def ratio(self) -> float:
        """relay p50 / (backend a p50 + backend b p50)."""
        return self.p50(RELAY) / (self.p50(A) + self.p50(B))


A, B, RELAY = "backend a (direct)", "backend b (direct)", "relay: a then b"


def measure(work_a_us: float, work_b_us: float, *, requests: int, rounds: int, warmup: int) -> Floor:
    """Start the three servers, time the three paths in ``rounds`` interleaved rounds, stop them."""
    ports = {name: free_port() for name in ("a", "b", "relay")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        for name, work in (("a", work_a_us), ("b", work_b_us)):
            procs[name] = subprocess.Popen(
                [*me, "--serve", "backend", "--port", str(ports[name]), "--work-us", str(work)],
                stdout=subprocess.PIPE,
            )
        targets = f"127.0.0.1:{ports['a']},127.0.0.1:{ports['b']}"
        procs["relay"] = subprocess.Popen(
            [*me, "--serve", "relay", "--port", str(ports["relay"]), "--targets", targets],
            stdout=subprocess.PIPE,
        )
        for name, p in procs.items():
            line = p.stdout.readline().strip() if p.stdout is not None else b""
            if line != b"ready":
                raise RuntimeError(f"{name} did not start: {line!r}")
        channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
        calls = {name: c.unary_unary(METHOD) for name, c in channels.items()}
        payload = b"x" * 600  # about a feature row
        paths = {A: "a", B: "b", RELAY: "relay"}
        samples: dict[str, list[float]] = {p: [] for p in paths}
        cpu: dict[str, dict[str, float]] = {p: dict.fromkeys(procs, 0.0) for p in paths}
        per_round = max(requests // rounds, 1)
        for r in range(rounds):
            for path, target in paths.items():
                call = calls[target]
                for _ in range(warmup if r == 0 else 20):
                    call(payload, timeout=10)
                before = {n: _cpu_seconds(p.pid) for n, p in procs.items()}
                for _ in range(per_round):
                    t = time.perf_counter()
                    call(payload, timeout=10)
                    samples[path].append(time.perf_counter() - t)
                for n, p in procs.items():
                    cpu[path][n] += (_cpu_seconds(p.pid) - before[n]) * 1e3 / (per_round * rounds)
        for c in channels.values():
            c.close()
        load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=10)
    return Floor(samples, cpu, load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["backend", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--targets", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work-us", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--work-a-us", type=float, default=900.0, help="CPU per call of backend a (us)")
    parser.add_argument("--work-b-us", type=float, default=700.0, help="CPU per call of backend b (us)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve, args.port, args.work_us, [t for t in args.targets.split(",") if t]))
        return 0
    floor = measure(
        args.work_a_us, args.work_b_us, requests=args.requests, rounds=args.rounds, warmup=args.warmup
    )
    print(f"conditions: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `uptime`: {floor.load}")
    print(
        f"bare grpc.aio servers (grpcio {grpc.__version__}), raw bytes; backend CPU per call: "
        f"a {args.work_a_us:.0f} us, b {args.work_b_us:.0f} us; {args.requests} calls per path in "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    print(f"{'path':28s} {'p50 ms':>8s} {'p99 ms':>8s}   CPU ms per call: a  b  relay")
    for path, got in floor.samples.items():
        q = statistics.quantiles(got, n=100, method="inclusive")
        used = "  ".join(f"{floor.cpu[path][n]:.2f}" for n in ("a", "b", "relay"))
        print(f"{path:28s} {floor.p50(path):8.2f} {q[98] * 1e3:8.2f}   {used}")
    a, b, relay = floor.p50(A), floor.p50(B), floor.p50(RELAY)
    print(f"relay / (a + b) = {relay:.2f} / {a + b:.2f} = {floor.ratio:.2f} x (issue 8's budget: 1.3 x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of one alias slot, one run on this machine (figures for docs/benchmarks.md).

    cd services/model-server && .venv/bin/python scripts/bench.py [--requests 1000] [--seconds 10]

Starts a real ``mlflow server`` and logs the model with the training-service's code in ITS env,
registers version 1 as the registry-gateway does, then measures one German credit row per request:

* in process: the ONNX fast scorer and the scikit-learn pipeline (the reference path);
* seldon-core microservice (1 REST worker + 1 gRPC worker) over REST and gRPC;
* MLServer (custom runtime, parallel_workers 0) over V2 REST and gRPC;
* ``mlflow models serve`` (1 worker, local env) serving the same ONNX fast scorer as a pyfunc.

p50 / p99 at concurrency 1 (``--requests`` sequential requests after 100 warm-up ones), throughput
at concurrency 4 (4 client threads for ``--seconds``). Clients run on the same 2 cores as the
servers. Every process it starts is stopped by PID (process groups).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx
import numpy as np
from mlflow import MlflowClient
from model_server.__main__ import mlserver_command, seldon_command
from model_server.settings import Settings
from model_server.signature import columns_from_records
from model_server.slot import load_version
from model_server.testing import fixtures as fx
from model_server.testing.clients import Clients

MODEL = "credit-risk"


def latency(call: Callable[[], Any], n: int) -> tuple[float, float]:
    for _ in range(100):
        call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    q = np.percentile(times, [50, 99])
    return float(q[0]), float(q[1])


def throughput(make_call: Callable[[], Callable[[int], Any]], seconds: float, threads: int = 4) -> float:
    count = [0] * threads
    stop = threading.Event()

    def run(k: int) -> None:
        call = make_call()
        i = 0
        while not stop.is_set():
            call(i)
            i += 1
        count[k] = i

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(count) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="model-server-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, float]] = {}
    try:
        fx.use_mlflow_users()
        fx.use_api_keys()  # the slots check credentials; the clients send the predict key
        argv, env, url = fx.mlflow_server_command(work / "mlflow", fx.free_port())
        procs.append(fx.start_process(argv, fx.clean_env(**env), work / "mlflow.log"))
        fx.wait_http(f"{url}/health", 180, procs[-1])
        runs = fx.make_runs(url, work / "runs")
        version = fx.register_version(url, MODEL, runs["lr"], work / "reg").version
        fx.set_alias(url, MODEL, "champion", version)
        records = fx.model_input_rows(work / "runs")

        client = MlflowClient(tracking_uri=url, registry_uri=url)
        settings = Settings(
            model_name=MODEL,
            mlflow_tracking_uri=url,
            state_dir=work / "st",
            serving_processes=1,
            cache_dir=work / "cache",
            require_approval=False,  # loaded in process by hand: no alias followed
        )
        model = load_version(settings, client, client.get_model_version(MODEL, version))
        typed = [columns_from_records([r], model.columns, "jsonData") for r in records]
        for name, scorer in (
            ("in-process fast scorer (ONNX)", model.fast),
            ("in-process scikit-learn pipeline", model.reference),
        ):
            it = iter(range(10**9))
            p50, p99 = latency(
                lambda s=scorer, it=it: s.predict_default(typed[next(it) % 1000], 1), args.requests
            )
            results[name] = {"p50_ms": p50, "p99_ms": p99}
            print(name, results[name], flush=True)

        from model_server import pyfunc_fast

        pyfunc_dir = pyfunc_fast.save(model.artifacts.scorer_dir, work / "pyfunc")
        ports = [fx.free_port() for _ in range(7)]
        seldon = seldon_command(
            model=MODEL, alias="champion", http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]
        )
        mls = mlserver_command(
            model=MODEL,
            alias="champion",
            directory=work / "mlserver",
            http_port=ports[3],
            grpc_port=ports[4],
            metrics_port=ports[5],
        )
        common = {
            "MLFLOW_TRACKING_URI": url,
            "MODEL_SERVER_POLL_INTERVAL_S": "5",
            "MODEL_SERVER_CACHE_DIR": str(work / "c"),
            "MODEL_SERVER_TRUSTED_KEYS_FILE": str(fx.trusted_keys_file(work / "keys")),
        }
        procs.append(
            fx.start_process(
                seldon.argv,
                fx.clean_env(**{**common, **seldon.env, "MODEL_SERVER_STATE_DIR": str(work / "s1")}),
                work / "seldon.log",
            )
        )
        fx.wait_http(f"http://127.0.0.1:{ports[0]}/health/ready", 180, procs[-1])
        procs.append(
            fx.start_process(
                mls.argv,
                fx.clean_env(**{**common, **mls.env, "MODEL_SERVER_STATE_DIR": str(work / "s2")}),
                work / "mlserver.log",
            )
        )
        fx.wait_http(f"http://127.0.0.1:{ports[3]}/v2/health/ready", 180, procs[-1])
        procs.append(
            fx.start_process(
                [
                    str(Path(sys.executable).parent / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    str(pyfunc_dir),
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ports[6]),
                    "-w",
                    "1",
                ],
                # mlflow models serve execs `uvicorn` from PATH: this environment's bin first
                fx.clean_env(PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"),
                work / "mlflow-serve.log",
            )
        )
        fx.wait_http(f"http://127.0.0.1:{ports[6]}/ping", 180, procs[-1])

        def clients() -> Clients:
            return Clients(
                model=MODEL,
                kinds=model.signature,
                seldon_http=f"http://127.0.0.1:{ports[0]}",
                seldon_grpc=f"127.0.0.1:{ports[1]}",
                mlserver_http=f"http://127.0.0.1:{ports[3]}",
                mlserver_grpc=f"127.0.0.1:{ports[4]}",
                headers=fx.auth_headers(),
            )

        def mlflow_serve_call() -> Callable[[int], Any]:
            http = httpx.Client(timeout=30)

            def call(i: int) -> Any:
                r = http.post(
                    f"http://127.0.0.1:{ports[6]}/invocations",
                    json={"dataframe_records": [records[i % 1000]]},
                )
                r.raise_for_status()
                return r

            return call

        # sanity: mlflow models serve gives the same score
        got = mlflow_serve_call()(0).json()["predictions"][0]
        assert abs(got - model.fast.predict_default(typed[0], 1)[0]) <= 1e-12, got

        paths: dict[str, Callable[[], Callable[[int], Any]]] = {}
        for label, method in (
            ("seldon-core REST", "seldon_rest"),
            ("seldon-core gRPC", "seldon_grpc"),
            ("MLServer V2 REST", "mlserver_rest"),
            ("MLServer V2 gRPC", "mlserver_grpc"),
        ):

            def make(m: str = method) -> Callable[[int], Any]:
                c = clients()
                return lambda i: getattr(c, m)([records[i % 1000]])

            paths[label] = make
        paths["mlflow models serve (pyfunc, same ONNX scorer)"] = mlflow_serve_call
        for label, make in paths.items():
            call = make()
            it = iter(range(10**9))
            p50, p99 = latency(lambda c=call, it=it: c(next(it)), args.requests)
            rps = throughput(make, args.seconds)
            results[label] = {"p50_ms": p50, "p99_ms": p99, "rps_c4": rps}
            print(label, results[label], flush=True)
    finally:
        for proc in reversed(procs):
            fx.stop_process(proc)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "cores": os.cpu_count(),
                "uptime": load,
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

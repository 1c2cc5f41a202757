"""Benchmark the inference-gateway against its parts, in one run on one machine (issue 8).

Starts the end-to-end stack (:mod:`e2e_stack`) under the supervisor, its feature-service on the
``real`` profile by default (Redis online store, PostgreSQL offline store and SQL registry, in a
project of its own that is torn down at the end; ``--profile embedded``: SQLite online store),
then times, at concurrency 1 (warm-up excluded), the same German credit applicants, every
concurrency-1 path in turn for ``--rounds`` rounds (samples pooled; each round's p50 printed), so
that the machine's drifts fall on all paths alike and the ratios hold:

* gateway ``Predict`` over REST (``POST /v1/predict``) and gRPC, p50 / p99, and throughput with
  8 client threads;
* a direct feature-service ``GetOnlineFeatures`` (gRPC, feature service ``credit_risk_v1``);
* a direct model-server call (the champion slot, in the gateway's own protocol: seldon-core REST
  ``jsonData``, or with ``--runtime mlserver`` the MLServer runtime over Open Inference Protocol V2
  REST, the gateway then configured with ``v2``) with the features the gateway used;
* the raw floor: the online store read with its raw client — real profile: redis-py ``HGETALL`` of
  the same hashes (feature-service environment; Feast's key format); embedded: ``sqlite3`` read of
  the same rows — with no decoding, plus the ONNX fast scorer in process on the applicant's values
  (model-server environment). Real profile: the floor is the sum of the two p50s (two
  environments: the model-server's has no redis client); embedded: read + score timed together;
* Feast's ``feast serve`` (``POST /get-online-features``) over the stack's ``feature_store.yaml``;
* the floor of the gateway's shape in the same run (:mod:`bench_hop_floor`): a bare ``grpc.aio``
  relay with no logic in front of two bare backends whose p50s are brought near the measured
  feature-service and model-server p50s; its ratio is the best any Python gRPC gateway could do;
* with ``--baseline DIR`` (a checkout of an earlier commit with its
  ``services/inference-gateway/.venv``, e.g. ``git worktree add --detach ../base <commit>`` then
  ``make setup`` there), that commit's gateway too, started beside this one over the same backends
  with the same settings, its REST and gRPC paths timed in turn with this one's, round by round:
  the before/after comparison of a change to the gateway, in one run (issue 17);
* with ``--auth-off-gateway``, a second gateway of this same code with
  ``INFERENCE_GATEWAY_AUTH_DISABLED=true`` over the same backends, timed in turn like the baseline:
  the cost of authentication (issue 18; every call of both carries the client's API key, which
  the second ignores; rate limits, echo and access log run in both);
* a diagnostic: the direct feature-service and model-server calls made one after the other by one
  client, timed per pair. On this 2-core VM that pair costs much more than the sum of the two p50s
  measured back to back: each process sleeps while the other works, and waking it (and its cold
  caches) costs CPU and time that the gateway's path pays too.

Run from the repository root in the development environment::

    .tools/bin/uv run python tests/e2e/bench_gateway.py [--requests 1000] [--rounds 5] [--seconds 10] \
        [--profile real] [--runtime seldon|mlserver] [--baseline ../base] [--auth-off-gateway]

Needs ``make setup`` (each service's ``.venv``); the real profile needs Redis and PostgreSQL
(``CREDITRISK_REDIS_URL``, ``CREDITRISK_POSTGRES_DSN``, the test suite's defaults). Prints a table;
every process stops at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_hop_floor
import httpx
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from creditrisk_devstack import HttpReadiness, ProcessSpec, Supervisor, free_port
from creditrisk_devstack.procgroup import group_cpu_seconds
from creditrisk_testing.servers import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL
from e2e_stack import (
    GATEWAY_HEADERS,
    MODEL_NAME,
    MODEL_SERVER_HEADERS,
    ROOT,
    TLS,
    VERIFY,
    Stack,
    authed_channel,
    inference_gateway_http,
    mlflow_env,
    service_python,
    stack_channel,
)
from google.protobuf import timestamp_pb2

FEATURE_SERVICE = "credit_risk_v1"
#: ``--runtime``: (gateway service, model-server slot service, the direct model-server path's name).
RUNTIMES = {
    "seldon": ("inference-gateway", "model-server-champion", "model-server seldon REST jsonData"),
    "mlserver": ("inference-gateway-v2", "model-server-mlserver", "model-server MLServer V2 REST infer"),
}
FLOOR = "raw floor: store read + fast scorer"
#: Diagnostic: the two direct calls one after the other from one client (no gateway), per pair.
PAIR = "fs then ms, direct, in turn (one client)"
#: ``--baseline``: the earlier commit's gateway, its process name and its two timed paths.
BASELINE = "inference-gateway-baseline"
BASELINE_PATHS = ("baseline gateway REST Predict", "baseline gateway gRPC Predict")
#: ``--auth-off-gateway``: this code's gateway with authentication disabled, and its two paths.
AUTH_OFF = "inference-gateway-auth-off"
AUTH_OFF_PATHS = ("auth-off gateway REST Predict", "auth-off gateway gRPC Predict")
#: The bench's gateways: a rate limit far above what 8 client threads reach (the limiter still
#: counts every call), so that no timed call is refused.
BENCH_GATEWAY_ENV = {"INFERENCE_GATEWAY_RATE_LIMIT_PER_S": "1000000"}
#: gRPC metadata of the bench's calls (the e2e stack's gateway-analyst key; static, like REST's header).
GATEWAY_METADATA = tuple(GATEWAY_HEADERS.items())

_FS_HELPER = """
import json, sys
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feature_service.core import FeatureStoreCore
from feature_service.settings import FeatureServiceSettings
ids = json.loads(sys.argv[1])
core = FeatureStoreCore(FeatureServiceSettings())
yaml = core.write_feature_store_yaml()
plan = core.plans.get("credit_risk_v1", None, online=True)
store = core.store
version = store.config.entity_key_serialization_version
tables = [_table_id(store.project, store.get_feature_view(v)) for v in sorted(plan.online_views)]
keys = {
    str(i): serialize_entity_key(
        EntityKey(join_keys=["applicant_id"], entity_values=[Value(int64_val=i)]), version
    ).hex()
    for i in ids
}
db = store.config.online_store.path
print(json.dumps({"yaml": yaml, "tables": tables, "keys": keys, "db": str(db)}))
"""

_REDIS_HELPER = """
import json, statistics, sys, time
import redis
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feature_service.core import FeatureStoreCore
from feature_service.settings import FeatureServiceSettings
a = json.loads(sys.argv[1])
settings = FeatureServiceSettings()
core = FeatureStoreCore(settings)
version = core.store.config.entity_key_serialization_version
client = redis.Redis.from_url(settings.redis_url)
def key(i):
    entity = EntityKey(join_keys=["applicant_id"], entity_values=[Value(int64_val=i)])
    return _redis_key(settings.project, entity, version)
keys = {i: key(i) for i in a["ids"]}
seq = [a["ids"][k % len(a["ids"])] for k in range(a["warmup"] + a["n"])]
for i in seq[: a["warmup"]]:
    assert client.hgetall(keys[i])
samples = []
for i in seq[a["warmup"]:]:
    t = time.perf_counter(); client.hgetall(keys[i]); samples.append(time.perf_counter() - t)
q = statistics.quantiles(samples, n=100, method="inclusive")
read = [statistics.median(samples) * 1e3, q[98] * 1e3]
print(json.dumps({"yaml": core.write_feature_store_yaml(), "read": read}))
"""

_TEARDOWN_HELPER = """
from feature_service.core import FeatureStoreCore
from feature_service.settings import FeatureServiceSettings
FeatureStoreCore(FeatureServiceSettings()).teardown()
print("{}")
"""

_FLOOR_HELPER = """
import json, shutil, sqlite3, statistics, sys, time, tempfile
from pathlib import Path
from mlflow import MlflowClient
from model_server.settings import Settings
from model_server.signature import columns_from_records
from model_server.slot import load_version
a = json.load(sys.stdin)
client = MlflowClient(tracking_uri=a["mlflow"], registry_uri=a["mlflow"])
work = Path(tempfile.mkdtemp(prefix="gw-bench-floor-"))
settings = Settings(model_name=a["model"], mlflow_tracking_uri=a["mlflow"], state_dir=work / "st",
                    serving_processes=1, cache_dir=work / "cache", require_approval=False)
model = load_version(settings, client, client.get_model_version(a["model"], a["version"]))
ids = a["ids"]
records = {i: a["records"][str(i)] for i in ids}
keys = {i: bytes.fromhex(a["keys"][str(i)]) for i in ids} if a["db"] else {}
con = sqlite3.connect(a["db"], check_same_thread=False) if a["db"] else None
queries = [f'SELECT feature_name, value, event_ts FROM "{t}" WHERE entity_key = ?' for t in a["tables"]]
def read(i):
    rows = []
    for q in queries:
        rows += con.execute(q, (keys[i],)).fetchall()
    assert rows
    return rows
def score(i):
    return model.fast.predict_default(columns_from_records([records[i]], model.columns, "jsonData"), 1)
def floor(i):
    read(i)
    return score(i)
out = {}
for name, call in (("read", read), ("score", score), ("floor", floor)) if con else (("score", score),):
    seq = [ids[k % len(ids)] for k in range(a["warmup"] + a["n"])]
    for i in seq[: a["warmup"]]:
        call(i)
    samples = []
    for i in seq[a["warmup"]:]:
        t = time.perf_counter(); call(i); samples.append(time.perf_counter() - t)
    q = statistics.quantiles(samples, n=100, method="inclusive")
    out[name] = [statistics.median(samples) * 1e3, q[98] * 1e3]
shutil.rmtree(work, ignore_errors=True)
print(json.dumps(out))
"""


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def v2_body(record: dict[str, Any]) -> dict[str, Any]:
    """An Open Inference Protocol V2 request of one record, one typed input per feature (as the
    gateway's ``v2`` client sends it; JSON null for a missing value)."""
    inputs = []
    for name, value in record.items():
        if isinstance(value, bool):
            datatype = "BOOL"
        elif isinstance(value, int):
            datatype = "INT64"
        elif isinstance(value, str):
            datatype = "BYTES"
        else:
            datatype = "FP64"
        inputs.append({"name": name, "shape": [1], "datatype": datatype, "data": [value]})
    return {"inputs": inputs}


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples) * 1e3, q[98] * 1e3


class CpuMeter:
    """CPU milliseconds per request of named process groups over a timed loop (load-robust: the
    work a process does, not how long it waited for a core)."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self.before = {name: group_cpu_seconds(pgid) for name, pgid in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = {name: group_cpu_seconds(g) - self.before[name] for name, g in self.groups.items()}

    def per_request(self, n: int) -> dict[str, float]:
        return {name: spent * 1e3 / n for name, spent in self.spent.items()}


def timed(call: Callable[[int], Any], ids: list[int], n: int, warmup: int, start: int = 0) -> list[float]:
    """Seconds of each of ``n`` sequential calls (after ``warmup`` untimed ones), ids cycled."""
    for k in range(warmup):
        call(ids[(start + k) % len(ids)])
    samples = []
    for k in range(n):
        began = time.perf_counter()
        call(ids[(start + k) % len(ids)])
        samples.append(time.perf_counter() - began)
    return samples


def interleaved(
    paths: dict[str, Callable[[int], Any]],
    ids: list[int],
    n: int,
    warmup: int,
    rounds: int,
    groups: dict[str, int],
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, dict[str, float]]]:
    """Time every path in turn, ``rounds`` times (``n / rounds`` calls per path and round), the
    order rotated by one path each round: the machine's drifts (other work, CPU frequency) then
    fall on every path alike, and the ratios between paths hold even when the absolute figures
    move between runs.

    Returns:
        pooled samples (s) per path, the p50 (ms) of each round per path, and CPU ms per timed
        call of each process group per path (warm-up calls included in the CPU, as counted).
    """
    per_round = max(n // rounds, 1)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    medians: dict[str, list[float]] = {name: [] for name in paths}
    spent: dict[str, dict[str, float]] = {name: dict.fromkeys(groups, 0.0) for name in paths}
    calls = 0  # per path, warm-up included (the CPU meter counts it)
    names = list(paths)
    for r in range(rounds):
        warm = warmup if r == 0 else max(warmup // rounds, 10)
        calls += warm + per_round
        # the order rotates by one path each round: no path always follows the same one (a path
        # timed right after `feast serve` or the pair meets colder caches)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = paths[name]
            with CpuMeter(groups) as meter:
                got = timed(call, ids, per_round, warm, r * per_round)
            samples[name] += got
            medians[name].append(statistics.median(got) * 1e3)
            for group, seconds in meter.spent.items():
                spent[name][group] += seconds
    cpu = {name: {g: v * 1e3 / calls for g, v in per.items()} for name, per in spent.items()}
    return samples, medians, cpu


def throughput(
    make_call: Callable[[], Callable[[int], Any]], ids: list[int], seconds: float, threads: int
) -> tuple[float, int]:
    counts = [0] * threads
    errors = [0] * threads
    done = threading.Event()
    calls = [make_call() for _ in range(threads)]

    def run(t: int) -> None:
        call, k = calls[t], t
        while not done.is_set():
            try:
                call(ids[k % len(ids)])
                counts[t] += 1
            except Exception:
                errors[t] += 1
            k += threads

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    done.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began), sum(errors)


def run_helper(service: str, code: str, *args: str, stdin: str | None = None, env: dict[str, str]) -> Any:
    result = subprocess.run(
        [str(service_python(service)), "-c", code, *args],
        cwd=ROOT / "services" / service,
        env={
            k: v for k, v in {**os.environ, "VIRTUAL_ENV": "", "PYTHONWARNINGS": "ignore", **env}.items() if v
        },
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{service} helper failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def versions() -> str:
    out = []
    for service, names in (
        ("inference-gateway", ["fastapi", "uvicorn", "grpcio", "httpx"]),
        ("feature-service", ["feast"]),
        ("model-server", ["seldon-core", "mlserver", "onnxruntime"]),
    ):
        code = (
            "import sys; from importlib.metadata import version as v; "
            "print(', '.join(f'{n} {v(n)}' for n in sys.argv[1:]))"
        )
        got = subprocess.run(
            [str(service_python(service)), "-c", code, *names], capture_output=True, text=True, check=False
        )
        out.append(got.stdout.strip() or f"{service}: ?")
    return "; ".join(out)


def start_baseline(
    stack: Stack, gateway: str, checkout: Path, name: str = BASELINE, env_over: dict[str, str] | None = None
) -> tuple[str, str]:
    """Start the gateway of the checkout ``checkout`` (its own ``.venv`` and code) as process
    ``name``, with the settings of this stack's ``gateway`` (same backends, same deadlines) and
    ``env_over`` on ports of its own; returns its REST base URL and gRPC target."""
    python = checkout / "services" / "inference-gateway" / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"--baseline: {python} is missing: run `make setup` in {checkout}")
    spec = stack.resolve(gateway).spec
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    data = stack.workdir / name
    env = {
        **stack.extra_env,
        **spec.env,
        **(env_over or {}),
        "INFERENCE_GATEWAY_PORT": str(grpc_port),
        "INFERENCE_GATEWAY_HTTP_PORT": str(http_port),
        "INFERENCE_GATEWAY_METRICS_PORT": str(metrics_port),
        "INFERENCE_GATEWAY_BUFFER_PATH": str(data / "buffer.sqlite3"),
    }
    stack.supervisor.start(
        ProcessSpec(
            name=name,
            argv=[str(python), *spec.argv[1:]],
            cwd=checkout / "services" / "inference-gateway",
            env=env,
            ready=HttpReadiness(f"https://127.0.0.1:{http_port}/readyz", ca_file=str(TLS.ca_cert)),
            timeout_s=spec.timeout_s,
            dirs=(data,),
        )
    )
    return f"https://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"


def bench(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    gateway, slot, ms_path = RUNTIMES[args.runtime]
    stack.extra_env = {**stack.extra_env, **BENCH_GATEWAY_ENV}
    base = inference_gateway_http(stack, gateway)
    gw_grpc = stack.targets[gateway]
    baseline = start_baseline(stack, gateway, args.baseline) if args.baseline else None
    auth_off = (
        start_baseline(stack, gateway, ROOT, AUTH_OFF, {"INFERENCE_GATEWAY_AUTH_DISABLED": "true"})
        if args.auth_off_gateway
        else None
    )
    print(f"stack up in {time.monotonic() - began:.0f} s", flush=True)
    results: dict[str, Any] = {}
    # materialize the online store (as the gateway's e2e test does)
    with authed_channel(stack.targets["feature-service"]) as fs_setup:
        fpb_grpc.FeatureStoreServiceStub(fs_setup).Materialize(
            fpb.MaterializeRequest(
                range=time_range_pb2.TimeRange(
                    start=_timestamp(datetime(2022, 1, 1, tzinfo=UTC)), end=_timestamp(datetime.now(UTC))
                )
            ),
            timeout=120,
        )

    # the features the gateway used, per applicant (input of the direct model-server call / floor)
    http = httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY)
    records: dict[int, dict[str, Any]] = {}
    version = None
    unknown = 0
    for i in range(1, 1001):
        response = http.post("/v1/predict", json={"applicant_id": i})
        if response.status_code == 404:  # not (or no longer) in the online store
            unknown += 1
            continue
        response.raise_for_status()
        body = response.json()
        records[i] = body["features"]
        version = body["model_version"]
        if len(records) == args.applicants:
            break
    ids = sorted(records)
    print(f"{len(ids)} applicants answer (skipped {unknown} unknown to the online store)", flush=True)

    def rest_call(i: int, client: httpx.Client = http) -> None:
        client.post("/v1/predict", json={"applicant_id": i}).raise_for_status()

    channel = stack_channel(gw_grpc)
    stub = pb_grpc.InferenceServiceStub(channel)

    def grpc_call(i: int, s: Any = stub) -> None:
        s.Predict(pb.PredictRequest(applicant_id=i), timeout=10, metadata=GATEWAY_METADATA)

    # --- direct feature-service
    fs_channel = authed_channel(stack.targets["feature-service"])
    fs = fpb_grpc.FeatureStoreServiceStub(fs_channel)

    def fs_call(i: int) -> None:
        response = fs.GetOnlineFeatures(
            fpb.GetOnlineFeaturesRequest(
                feature_service=FEATURE_SERVICE,
                entity_rows=[
                    fpb.EntityRow(join_keys={"applicant_id": values_pb2.FeatureValue(int64_value=i)})
                ],
            ),
            timeout=10,
        )
        assert len(response.rows) == 1

    # --- direct model-server (champion slot, the gateway's protocol: seldon REST jsonData or V2 REST)
    ms = httpx.Client(
        base_url=f"https://{stack.targets[slot]}", timeout=30, headers=MODEL_SERVER_HEADERS, verify=VERIFY
    )

    def ms_call(i: int) -> None:
        if args.runtime == "seldon":
            r = ms.post("/api/v1.0/predictions", json={"jsonData": records[i]})
        else:
            r = ms.post(f"/v2/models/{MODEL_NAME}/infer", json=v2_body(records[i]))
        r.raise_for_status()

    # --- raw floor (redis-py / sqlite3 read + the fast scorer in process), in helper processes
    fs_env = {
        "FEATURE_SERVICE_PROFILE": "embedded",
        "FEATURE_SERVICE_DATA_DIR": str(stack.workdir / "feature-store"),
        **stack.feature_env,
    }
    if args.profile == "real":
        info = run_helper(
            "feature-service",
            _REDIS_HELPER,
            json.dumps({"ids": ids, "n": args.requests, "warmup": args.warmup}),
            env=fs_env,
        )
        info.update(keys={}, tables=[], db="")
    else:
        info = run_helper("feature-service", _FS_HELPER, json.dumps(ids), env=fs_env)
    floor = run_helper(
        "model-server",
        _FLOOR_HELPER,
        stdin=json.dumps(
            {
                "mlflow": f"https://{stack.targets['mlflow']}",
                "model": MODEL_NAME,
                "version": str(version),
                "ids": ids,
                "records": {str(i): r for i, r in records.items()},
                "keys": info["keys"],
                "tables": info["tables"],
                "db": info["db"],
                "n": args.requests,
                "warmup": args.warmup,
            }
        ),
        env={
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": "",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **mlflow_env("model-server"),  # the slot's own MLflow user: a reader
        },
    )
    floors: dict[str, tuple[float, float]] = {}
    if args.profile == "real":
        floors["floor: redis-py HGETALL"] = tuple(info["read"])
        floors["floor: fast scorer in process"] = tuple(floor["score"])
        floors[FLOOR] = (info["read"][0] + floor["score"][0], info["read"][1] + floor["score"][1])
    else:
        floors["floor: sqlite3 read"] = tuple(floor["read"])
        floors["floor: fast scorer in process"] = tuple(floor["score"])
        floors[FLOOR] = tuple(floor["floor"])

    # --- feast serve over the stack's feature_store.yaml, up before the timed rounds
    port = free_port()
    feast_bin = service_python("feature-service").with_name("feast")
    log = stack.workdir / "feast-serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [
                str(feast_bin),
                "-c",
                str(Path(info["yaml"]).parent),
                "serve",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--workers",
                "1",
                "--max-requests",
                "0",
            ],
            env={
                k: v
                for k, v in {**os.environ, **fs_env, "VIRTUAL_ENV": "", "PYTHONWARNINGS": "ignore"}.items()
                if v
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        feast_http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"feast serve did not start:\n{log.read_text()[-3000:]}")
            try:
                if feast_http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)

        def feast_call(i: int) -> None:
            body = {
                "feature_service": FEATURE_SERVICE,
                "entities": {
                    "applicant_id": [i],
                    "requested_credit_amount": [None],
                    "requested_duration_in_month": [None],
                },
            }
            r = feast_http.post("/get-online-features", json=body)
            r.raise_for_status()
            assert len(r.json()["results"][0]["values"]) == 1

        groups = {  # process groups: the model-server's gunicorn and gRPC workers are in its group
            name: stack.supervisor[name].pgid
            for name in (gateway, "feature-service", slot, "drift-service", *_extra_gateways(args))
        }
        paths = {
            "gateway REST Predict": rest_call,
            "gateway gRPC Predict": grpc_call,
        }
        if baseline is not None:  # in turn with this gateway's paths, over the same backends
            base_http = httpx.Client(base_url=baseline[0], timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY)
            base_stub = pb_grpc.InferenceServiceStub(stack_channel(baseline[1]))
            paths[BASELINE_PATHS[0]] = lambda i: rest_call(i, base_http)
            paths[BASELINE_PATHS[1]] = lambda i: grpc_call(i, base_stub)
        if auth_off is not None:  # in turn with this gateway's paths, over the same backends
            off_http = httpx.Client(base_url=auth_off[0], timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY)
            off_stub = pb_grpc.InferenceServiceStub(stack_channel(auth_off[1]))
            paths[AUTH_OFF_PATHS[0]] = lambda i: rest_call(i, off_http)
            paths[AUTH_OFF_PATHS[1]] = lambda i: grpc_call(i, off_stub)
        paths |= {
            "feature-service GetOnlineFeatures (gRPC)": fs_call,
            ms_path: ms_call,
            PAIR: lambda i: (fs_call(i), ms_call(i)),
            "feast serve /get-online-features": feast_call,
        }
        samples, medians, cpu = interleaved(paths, ids, args.requests, args.warmup, args.rounds, groups)
        for name, got in samples.items():
            results[name] = percentiles(got)
        results.update(floors)
        results["cpu"] = {n: per for n, per in cpu.items() if n != "feast serve /get-online-features"}
        results["rounds"] = medians
        print("latency", {name: f"{v[0]:.2f}" for name, v in results.items() if name in paths}, flush=True)
    finally:
        # idle keep-alive connections would hold the servers' graceful stop at the end
        ms.close()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()

    def make_rest() -> Callable[[int], Any]:
        client = httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY)
        return lambda i: rest_call(i, client)

    def make_grpc() -> Callable[[int], Any]:
        s = pb_grpc.InferenceServiceStub(stack_channel(gw_grpc))
        return lambda i: grpc_call(i, s)

    results["rps REST"] = throughput(make_rest, ids, args.seconds, 8)
    results["rps gRPC"] = throughput(make_grpc, ids, args.seconds, 8)
    print("throughput", results["rps REST"], results["rps gRPC"], flush=True)

    # --- the floor of the gateway's shape in this run: a bare grpc.aio relay (no logic) in front of
    # two bare backends whose busy loops bring their p50s near the measured fs and ms p50s
    # (a bare hop costs ~0.5 ms of p50 here: bench_hop_floor.py)
    direct = ("feature-service GetOnlineFeatures (gRPC)", ms_path)
    work = [max(results[name][0] - 0.5, 0.05) * 1e3 for name in direct]
    results["relay"] = bench_hop_floor.measure(
        work[0], work[1], requests=args.requests, rounds=args.rounds, warmup=args.warmup
    )
    channel.close()
    fs_channel.close()
    http.close()
    return results


def report(results: dict[str, Any], args: argparse.Namespace, load: str) -> None:
    print()
    print(
        f"conditions: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {args.profile} profile "
        f"({'Redis' if args.profile == 'real' else 'SQLite'} online store), `uptime`: {load}; "
        f"{args.requests} timed requests per path at concurrency 1 after {args.warmup} warm-up, "
        f"{args.applicants} applicants cycled; throughput: 8 client threads for {args.seconds:g} s"
    )
    print(f"versions: {versions()}")
    print(f"{'path':45} {'p50 ms':>8} {'p99 ms':>8} {'req/s c=8':>10}")
    for name, value in results.items():
        if name.startswith("rps") or name in ("cpu", "rounds", "relay"):
            continue
        rps = ""
        if name.startswith("gateway"):
            key = "rps REST" if "REST" in name else "rps gRPC"
            rps = f"{results[key][0]:10.0f} ({results[key][1]} errors)"
        print(f"{name:45} {value[0]:8.2f} {value[1]:8.2f} {rps}")
    print()
    print(f"p50 of each round (ms; {args.rounds} rounds, every path in turn within a round):")
    for name, values in results["rounds"].items():
        print(f"{name:45} " + " ".join(f"{v:7.2f}" for v in values))
    print()
    print("CPU ms per request (user + system, process groups; includes each process's background work):")
    gateway, slot, ms_path = RUNTIMES[args.runtime]
    names = [gateway, "feature-service", slot, "drift-service", *_extra_gateways(args)]
    print(f"{'path':45} " + " ".join(f"{n[:14]:>14}" for n in names))
    for path, per in results["cpu"].items():
        print(f"{path:45} " + " ".join(f"{per[n]:14.2f}" for n in names))
    fs = results["feature-service GetOnlineFeatures (gRPC)"][0]
    ms = results[ms_path][0]
    feast = results["feast serve /get-online-features"][0]
    floor = results[FLOOR][0]
    pair = results[PAIR][0]
    print()
    print(
        f"diagnostic: the direct fs and ms calls made one after the other take {pair:.2f} ms per pair, "
        f"{pair / (fs + ms):.2f} x the sum of their p50s when each is called back to back "
        "(each process waits idle while the other works: wake-up and cache cost on this machine)"
    )
    relay = results["relay"]
    a, b, r = (relay.p50(p) for p in (bench_hop_floor.A, bench_hop_floor.B, bench_hop_floor.RELAY))
    print(
        f"floor of the shape, same run (tests/e2e/bench_hop_floor.py): a bare grpc.aio relay with no logic "
        f"over two bare backends of p50 {a:.2f} and {b:.2f} ms answers in {r:.2f} ms = {relay.ratio:.2f} x "
        f"their sum (relay CPU {relay.cpu[bench_hop_floor.RELAY]['relay']:.2f} ms per call)"
    )
    if args.baseline:
        print()
        print(f"this commit's gateway vs the baseline's ({args.baseline}), same run, same backends:")
        for proto, before in zip(("REST", "gRPC"), BASELINE_PATHS, strict=True):
            now, then = results[f"gateway {proto} Predict"], results[before]
            cpu_now = results["cpu"][f"gateway {proto} Predict"][gateway]
            cpu_then = results["cpu"][before][BASELINE]
            print(
                f"{proto}: p50 {now[0]:.2f} vs {then[0]:.2f} ms = {now[0] / then[0]:.2f} x; "
                f"p99 {now[1]:.2f} vs {then[1]:.2f} ms = {now[1] / then[1]:.2f} x; "
                f"gateway CPU per prediction {cpu_now:.2f} vs "
                f"{cpu_then:.2f} ms = {cpu_now / cpu_then:.2f} x"
            )
            # control: the feature-service does the same work for either gateway, so the ratio of
            # its CPU per prediction between the two paths is the measurement's own noise
            fs_now = results["cpu"][f"gateway {proto} Predict"]["feature-service"]
            fs_then = results["cpu"][before]["feature-service"]
            print(
                f"  control: feature-service CPU per prediction {fs_now:.2f} vs {fs_then:.2f} ms = "
                f"{fs_now / fs_then:.2f} x; gateway ratio over the control's = "
                f"{(cpu_now / cpu_then) / (fs_now / fs_then):.2f}"
            )
    if args.auth_off_gateway:
        print()
        print("cost of authentication: this gateway vs the same code with authentication off, same run:")
        for proto, off in zip(("REST", "gRPC"), AUTH_OFF_PATHS, strict=True):
            now, then = results[f"gateway {proto} Predict"], results[off]
            cpu_now = results["cpu"][f"gateway {proto} Predict"][gateway]
            cpu_then = results["cpu"][off][AUTH_OFF]
            print(
                f"{proto}: p50 {now[0]:.2f} (auth on) vs {then[0]:.2f} ms (off) = "
                f"{now[0] / then[0]:.3f} x, {now[0] - then[0]:+.2f} ms; "
                f"p99 {now[1]:.2f} vs {then[1]:.2f} ms = {now[1] / then[1]:.2f} x; "
                f"gateway CPU per prediction {cpu_now:.2f} vs {cpu_then:.2f} ms = "
                f"{cpu_now / cpu_then:.3f} x, {cpu_now - cpu_then:+.2f} ms"
            )
    for proto in ("REST", "gRPC"):
        p50 = results[f"gateway {proto} Predict"][0]
        print(
            f"{proto}: p50 {p50:.2f} vs 1.3 x (fs {fs:.2f} + ms {ms:.2f}) = {1.3 * (fs + ms):.2f} -> "
            f"{'met' if p50 <= 1.3 * (fs + ms) else 'NOT met'}; vs 10 x floor {10 * floor:.2f} -> "
            f"{'met' if p50 <= 10 * floor else 'NOT met'}; vs feast serve {feast:.2f} -> "
            f"{'met' if p50 <= feast else 'NOT met'}; {p50 / pair:.2f} x the in-turn pair"
        )


def _extra_gateways(args: argparse.Namespace) -> list[str]:
    """The process names of the gateways timed beside the stack's (``--baseline``, ``--auth-off-gateway``)."""
    return [*([BASELINE] if args.baseline else []), *([AUTH_OFF] if args.auth_off_gateway else [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--applicants", type=int, default=200, help="applicant ids 1..N, cycled")
    parser.add_argument("--profile", choices=["real", "embedded"], default="real")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of the concurrency-1 paths, timed in turn in each"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout of an earlier commit (after `make setup` there): its gateway is timed too, in turn",
    )
    parser.add_argument(
        "--auth-off-gateway",
        action="store_true",
        help="also time this code's gateway with INFERENCE_GATEWAY_AUTH_DISABLED=true, in turn: "
        "the cost of authentication",
    )
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default="seldon",
        help="the champion slot's runtime: seldon-core (Seldon REST) or MLServer (V2 REST)",
    )
    args = parser.parse_args(argv)
    feature_env: dict[str, str] = {}
    if args.profile == "real":
        feature_env = {
            "FEATURE_SERVICE_PROFILE": "real",
            "FEATURE_SERVICE_PROJECT": f"gwbench_{os.getpid()}",
            "FEATURE_SERVICE_REDIS_URL": os.environ.get("CREDITRISK_REDIS_URL", DEFAULT_REDIS_URL),
            "FEATURE_SERVICE_POSTGRES_DSN": os.environ.get("CREDITRISK_POSTGRES_DSN", DEFAULT_POSTGRES_DSN),
        }
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        workdir = Path(tmp)
        try:
            with Supervisor(workdir / "logs") as supervisor:
                stack = Stack(supervisor, workdir, feature_env=feature_env)
                results = bench(stack, args)
                load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        finally:
            if feature_env:  # the real profile's project: Redis keys, PostgreSQL tables, registry rows
                env = {**feature_env, "FEATURE_SERVICE_DATA_DIR": tmp}
                run_helper("feature-service", _TEARDOWN_HELPER, env=env)
    report(results, args, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the feature-service on the real profile: online lookups side by side, materialization.

In one run, on one machine, with the same data (100,000 synthetic entities: rows of the product's
raw file sampled with replacement, new ids 1..N, application times drawn as at ingestion; the
product is the one configured, ``FEATURE_SERVICE_PRODUCTS_DIR`` / ``_PRODUCTS``, and its file
``--csv``, by default the checkout's German credit data), in a dedicated Feast project that is torn
down at the end:

1. Materialization into Redis of every online feature view: Feast 0.67's own engine (``local``),
   then ours (:mod:`feature_service.materialization`); rows/s = applicants / seconds for all views.
   A sample of the Redis hashes written by both is compared byte for byte.
2. ``GetOnlineFeatures`` (the product's model feature service) for 1 and 100 entities, p50 / p99:
   * gRPC: ``python -m feature_service`` started as its own process, a client using the contracts
     package over the kit's channel, concurrency 1;
   * (a) redis-py reading the same hashes directly (HGETALL for 1 entity, one pipeline of HMGET of
     the service's fields for 100 entities): the floor;
   * (b) Feast's own ``feast serve`` HTTP server on the same store (a subprocess over a written
     ``feature_store.yaml``), ``POST /get-online-features`` over one pooled keep-alive connection.
   Warm-up calls are excluded; the same random entity ids are used by every client.

Needs Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database ``test``; override with
``--redis-url`` / ``--postgres-dsn``). Run from ``services/feature-service``::

    .venv/bin/python scripts/bench_online.py [--applicants 100000] [--calls 2000] [--calls-100 300]

Prints a table; writes nothing but the benchmark project (removed at the end) and a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from creditrisk_testing.processes import stop_group

ROOT = Path(__file__).resolve().parents[3]
SERVICE_DIR = Path(__file__).resolve().parents[1]
BENCH_KEY = f"bench-{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic_tables(core: Any, csv: Path, n: int, seed: int) -> dict[str, Any]:
    """``n`` entities sampled (with replacement) from the product's raw file, ids 1..n (int keys)."""
    from feature_service.ingest import derive, read_rows

    frame = read_rows(csv, core.product, core.layout)
    rows = np.random.default_rng(seed).integers(0, len(frame), size=n)
    sample = frame.iloc[rows].reset_index(drop=True)
    sample = sample.drop(columns=[core.layout.entity_key], errors="ignore")
    return derive(sample, core.product, core.layout, seed)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples) * 1e3, q[98] * 1e3


def timed(call: Callable[[list[int]], Any], batches: list[list[int]], warmup: int) -> tuple[float, float]:
    for ids in batches[:warmup]:
        call(ids)
    samples = []
    for ids in batches[warmup:]:
        began = time.perf_counter()
        call(ids)
        samples.append(time.perf_counter() - began)
    return percentiles(samples)


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"feast serve exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def materialize_both(settings: Any, product: Any, n: int) -> dict[str, Any]:
    """Feast's engine, then ours, into Redis (online data cleared in between); hashes compared."""
    import redis
    from feature_service.core import FeatureStoreCore

    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime.now(UTC)
    client = redis.Redis.from_url(settings.redis_url)
    suffix = settings.project.encode()
    out: dict[str, Any] = {}
    snapshot: dict[bytes, dict[bytes, bytes]] = {}
    for engine in ("feast", "fast"):
        core = FeatureStoreCore(settings.model_copy(update={"materialization_engine": engine}), product)
        for key in client.scan_iter(match=b"*" + suffix, count=10_000):
            client.delete(key)
        began = time.perf_counter()
        result = core.writes.materialize(start, end)
        seconds = time.perf_counter() - began
        out[engine] = {
            "seconds": seconds,
            "rows_per_s": n / seconds,
            "views": {v.feature_view: v.seconds for v in result.views},
        }
        keys = sorted(client.scan_iter(match=b"*" + suffix, count=10_000))
        out[engine]["keys"] = len(keys)
        sample = keys[:: max(1, len(keys) // 2000)]
        hashes = {k: client.hgetall(k) for k in sample}
        if engine == "feast":
            snapshot = hashes
        else:
            out["equal_hashes"] = sum(snapshot.get(k) == h for k, h in hashes.items())
            out["compared_hashes"] = len(hashes)
    return out


def online_benchmarks(core: Any, n: int, calls_1: int, calls_100: int, warmup: int, seed: int) -> dict:
    """p50 / p99 of the three clients for 1 and 100 entities."""
    import grpc
    import redis
    import requests
    from creditrisk.common.v1 import values_pb2
    from creditrisk.feature.v1 import feature_service_pb2 as pb
    from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
    from creditrisk_kit.client import insecure_channel, wait_until_serving_sync
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    rng = np.random.default_rng(seed)
    batches = {
        1: [[int(i)] for i in rng.integers(1, n + 1, size=calls_1 + warmup)],
        100: [list(map(int, rng.integers(1, n + 1, size=100))) for _ in range(calls_100 + warmup)],
    }
    results: dict[str, dict[int, tuple[float, float]]] = {}
    settings = core.settings
    key_name = core.layout.entity_key
    FEATURE_SERVICE = core.layout.model_service
    env = {
        **os.environ,
        "FEATURE_SERVICE_PROFILE": "real",
        "FEATURE_SERVICE_PROJECT": settings.project,
        "FEATURE_SERVICE_DATA_DIR": str(settings.resolved_data_dir),
        "FEATURE_SERVICE_REDIS_URL": settings.redis_url,
        "FEATURE_SERVICE_POSTGRES_DSN": settings.postgres_dsn or "",
        "FEATURE_SERVICE_LOG_LEVEL": "WARNING",
        # the service refuses to start without a credential source; the client sends this key
        "FEATURE_SERVICE_AUTH_API_KEYS": json.dumps(
            {BENCH_KEY: {"subject": "bench", "roles": ["read_features"]}}
        ),
        "PYTHONWARNINGS": "ignore",
    }

    # --- gRPC: the service as its own process
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "feature_service"],
        env={**env, "FEATURE_SERVICE_HOST": "127.0.0.1", "FEATURE_SERVICE_PORT": str(port)},
        cwd=SERVICE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        channel = insecure_channel(f"127.0.0.1:{port}", instrument=False, default_timeout_s=10)
        wait_until_serving_sync(channel, timeout_s=120)
        stub = pb_grpc.FeatureStoreServiceStub(channel)

        def grpc_call(ids: list[int]) -> None:
            request = pb.GetOnlineFeaturesRequest(
                feature_service=FEATURE_SERVICE,
                entity_rows=[
                    pb.EntityRow(join_keys={key_name: values_pb2.FeatureValue(int64_value=i)}) for i in ids
                ],
            )
            response = stub.GetOnlineFeatures(request, metadata=(("authorization", f"Bearer {BENCH_KEY}"),))
            assert len(response.rows) == len(ids)

        results["gRPC GetOnlineFeatures (feature-service)"] = {
            k: timed(grpc_call, b, warmup) for k, b in batches.items()
        }
        print("gRPC", results["gRPC GetOnlineFeatures (feature-service)"], flush=True)
        channel.close()
    except grpc.RpcError as exc:
        raise RuntimeError(f"gRPC benchmark failed: {exc}") from exc
    finally:
        stop_group(service)

    # --- (a) redis-py directly: the same hashes
    client = redis.Redis.from_url(settings.redis_url)
    plan = core.plans.get(FEATURE_SERVICE, None, online=True)
    fields: list[bytes] = []
    for spec in plan.specs:
        if spec.view not in plan.odfv_sources:
            fields.append(_mmh3(f"{spec.view}:{spec.feature}"))
    fields += [f"_ts:{v}".encode() for v in sorted(plan.online_views)]
    version = core.store.config.entity_key_serialization_version

    def key(i: int) -> bytes:
        return _redis_key(
            settings.project,
            EntityKey(join_keys=[key_name], entity_values=[Value(int64_val=i)]),
            version,
        )

    def redis_call(ids: list[int]) -> None:
        if len(ids) == 1:
            assert client.hgetall(key(ids[0]))
            return
        with client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(key(i), fields)
            assert len(pipe.execute()) == len(ids)

    results["(a) redis-py, same hashes (floor)"] = {
        k: timed(redis_call, b, warmup) for k, b in batches.items()
    }

    # --- (b) feast serve
    repo_dir = Path(core.write_feature_store_yaml()).parent
    http_port = free_port()
    feast_bin = Path(sys.executable).with_name("feast")
    log = repo_dir / "feast-serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [
                str(feast_bin),
                "-c",
                str(repo_dir),
                "serve",
                "-h",
                "127.0.0.1",
                "-p",
                str(http_port),
                "--workers",
                "1",
                "--max-requests",
                "0",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_http(f"{base}/health", 180, server)
        session = requests.Session()

        def http_call(ids: list[int]) -> None:
            body = {
                "feature_service": FEATURE_SERVICE,
                "entities": {
                    key_name: ids,
                    **{f: [None] * len(ids) for f in core.layout.request_source_fields},
                },
            }
            response = session.post(f"{base}/get-online-features", json=body, timeout=10)
            response.raise_for_status()
            assert len(response.json()["results"][0]["values"]) == len(ids)

        results["(b) feast serve HTTP /get-online-features"] = {
            k: timed(http_call, b, warmup) for k, b in batches.items()
        }
        session.close()
    except Exception:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_group(server)
    return results


def versions() -> str:
    from importlib.metadata import version

    names = ["feast", "grpcio", "protobuf", "redis", "hiredis", "pyarrow", "pandas", "requests"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls with 1 entity")
    parser.add_argument("--calls-100", type=int, default=300, help="timed calls with 100 entities")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--redis-url", default=os.environ.get("CREDITRISK_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "CREDITRISK_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres sslmode=disable"
        ),
    )
    parser.add_argument("--skip-materialization", action="store_true")
    parser.add_argument(
        "--csv", type=Path, default=ROOT / "data" / "german_credit.csv", help="the product's raw file"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from feature_service.core import FeatureStoreCore
    from feature_service.offline import offline_writer
    from feature_service.settings import FeatureServiceSettings

    with tempfile.TemporaryDirectory(prefix="fs-bench-") as data_dir:
        settings = FeatureServiceSettings(
            profile="real",
            project=f"fsbench_{uuid.uuid4().hex[:8]}",
            data_dir=Path(data_dir),
            redis_url=args.redis_url,
            postgres_dsn=args.postgres_dsn,
        )
        core = FeatureStoreCore(settings)
        try:
            began = time.perf_counter()
            tables = synthetic_tables(core, args.csv, args.applicants, args.seed)
            writer = offline_writer(core.settings)
            for view in core.layout.views:
                writer.replace(view, tables[view.name])
            core.apply()
            print(f"loaded {args.applicants:,} synthetic applicants in {time.perf_counter() - began:.1f} s")
            if args.skip_materialization:
                core.writes.materialize(datetime(2022, 1, 1, tzinfo=UTC), datetime.now(UTC))
                mat = None
            else:
                mat = materialize_both(settings, core.product, args.applicants)
            online = online_benchmarks(
                core, args.applicants, args.calls, args.calls_100, args.warmup, args.seed
            )
        finally:
            core.teardown()

    print()
    print(
        f"conditions: {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "concurrency 1, real profile (Redis online, PostgreSQL offline + registry), "
        f"{args.applicants:,} entities of product {core.product.name}, feature service "
        f"{core.layout.model_service} ({sum(len(v.features) for v in core.layout.model_views)} stored "
        f"features in {len(core.layout.model_views)} views + {len(core.layout.on_demand)} on-demand "
        f"view(s)), warm-up {args.warmup} calls excluded"
    )
    print(f"versions: {versions()}")
    print()
    print(
        f"{'GetOnlineFeatures':45} {'1 entity p50':>13} {'p99':>9} {'100 entities p50':>17} {'p99':>9}   (ms)"
    )
    for name, figures in online.items():
        (p50_1, p99_1), (p50_100, p99_100) = figures[1], figures[100]
        print(f"{name:45} {p50_1:13.2f} {p99_1:9.2f} {p50_100:17.2f} {p99_100:9.2f}")
    print(f"calls timed: {args.calls} (1 entity), {args.calls_100} (100 entities)")
    if mat is not None:
        print()
        print(
            f"materialization of {args.applicants:,} applicants x {len(mat['fast']['views'])} views "
            "into Redis"
        )
        for engine, label in (("feast", "Feast 0.67 local engine"), ("fast", "feature-service engine")):
            m = mat[engine]
            views = ", ".join(f"{k} {v:.2f} s" for k, v in m["views"].items())
            print(f"  {label:26} {m['seconds']:7.2f} s  {m['rows_per_s']:9,.0f} applicants/s  ({views})")
        print(f"  speed-up: {mat['feast']['seconds'] / mat['fast']['seconds']:.1f}x")
        print(
            f"  Redis hashes byte-equal: {mat['equal_hashes']} of {mat['compared_hashes']} sampled "
            f"(keys: {mat['feast']['keys']:,} / {mat['fast']['keys']:,})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job (`make demo`): runs what exists of the platform so far and says what comes next.

Run by `make demo` in the development environment, after `make setup` created every environment.
Each step is a function; later issues add theirs (serving, the training pipeline, the closed loop).

So far (issue 3): the German credit data is ingested into the feature store of the chosen profile
(`PROFILE=embedded`: DuckDB/Parquet + SQLite + file registry under `.run/demo/`; `PROFILE=real`:
PostgreSQL + Redis, project `credit_risk_demo`), the feature-service runs as its own process under
the supervisor (log in `.run/logs/feature-service.log`), and this script speaks to it over gRPC
only: Materialize, then the online features of real applicants, then a request-time override.
Every process is stopped at the end, also on Ctrl-C or a failure (the supervisor's `with` block).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_devstack import GrpcReadiness, ProcessSpec, Supervisor, free_port
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.table import Column, Table

ROOT = Path(__file__).resolve().parent.parent
PROFILE = os.environ.get("PROFILE", "embedded")
console = Console(width=None if sys.stdout.isatty() else 140)

FEATURE_SERVICE = ROOT / "services" / "feature-service"
GERMAN_CSV = ROOT / "data" / "german_credit.csv"
#: Real applicants shown (row numbers of the file) and one that exists nowhere.
APPLICANTS = (1, 2, 3)
UNKNOWN_APPLICANT = 5000
STEPS = 6

#: Deployables and the packages that show what each environment is for.
DEPLOYABLES: dict[str, list[str]] = {
    "services/feature-service": ["feast", "protobuf", "numpy"],
    "services/training-service": ["mlflow", "scikit-learn", "protobuf", "numpy"],
    "services/registry-gateway": ["mlflow", "scikit-learn", "protobuf"],
    "services/inference-gateway": ["fastapi", "grpcio", "protobuf"],
    "services/drift-service": ["evidently", "pandas", "protobuf"],
    "services/model-server": ["seldon-core", "mlflow", "scikit-learn", "protobuf", "numpy"],
    "pipelines": ["kfp", "protobuf"],
}


def step(number: int, title: str) -> None:
    console.rule(f"[bold]Step {number}/{STEPS}: {title}")


def timed(action: Callable[[], Any]) -> Any:
    """Run ``action`` and print how long it took."""
    began = time.monotonic()
    result = action()
    console.print(f"[dim]  ({time.monotonic() - began:.1f} s)[/dim]")
    return result


def show_environments() -> None:
    """One locked environment per deployable: print the interpreter and the versions that matter."""
    table = Table("deployable", "python", "key packages")
    probe = (
        "import sys, importlib.metadata as m; "
        "print(sys.version.split()[0]); "
        "print(' '.join(f'{p}=={m.version(p)}' for p in sys.argv[1:]))"
    )
    for folder, packages in DEPLOYABLES.items():
        python = ROOT / folder / ".venv" / "bin" / "python"
        out = subprocess.run(
            [str(python), "-c", probe, *packages], capture_output=True, text=True, check=True, timeout=120
        ).stdout.splitlines()
        table.add_row(folder, out[0], out[1])
    console.print(table)


def feature_service_env() -> dict[str, str]:
    """Settings of the demo's feature store: the profile's stores under `.run/demo/`."""
    env = {
        "FEATURE_SERVICE_PROFILE": PROFILE,
        "FEATURE_SERVICE_DATA_DIR": str(ROOT / ".run" / "demo" / PROFILE / "feature-store"),
        "OMP_NUM_THREADS": "1",
    }
    if PROFILE == "real":
        env["FEATURE_SERVICE_PROJECT"] = "credit_risk_demo"
    return env


def ingest() -> None:
    """Load the German credit data into the offline store and apply the Feast repository."""
    result = subprocess.run(
        [
            str(FEATURE_SERVICE / ".venv" / "bin" / "python"),
            "-m",
            "feature_service.ingest",
            "--csv",
            str(GERMAN_CSV),
        ],
        cwd=FEATURE_SERVICE,
        env={**os.environ, **feature_service_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ingestion failed:\n{result.stderr[-3000:]}")
    console.print(result.stdout.strip().splitlines()[-1])


def start_feature_service(supervisor: Supervisor) -> str:
    """Start `python -m feature_service` in its own environment; wait for gRPC health SERVING."""
    port = free_port()
    process = supervisor.start(
        ProcessSpec(
            "feature-service",
            [str(FEATURE_SERVICE / ".venv" / "bin" / "python"), "-m", "feature_service"],
            cwd=FEATURE_SERVICE,
            env={
                **feature_service_env(),
                "FEATURE_SERVICE_HOST": "127.0.0.1",
                "FEATURE_SERVICE_PORT": str(port),
                "FEATURE_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
                "FEATURE_SERVICE_GRACE_PERIOD_S": "5",
            },
            ready=GrpcReadiness(f"127.0.0.1:{port}"),
            timeout_s=120,
        )
    )
    console.print(
        f"feature-service pid {process.pid} SERVING on 127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'feature-service.log'})"
    )
    return f"127.0.0.1:{port}"


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return out


def materialize(stub: pb_grpc.FeatureStoreServiceStub) -> None:
    """Materialize every online feature view over all event times up to now."""
    window = time_range_pb2.TimeRange(start=_ts(datetime(2022, 1, 1, tzinfo=UTC)), end=_ts(datetime.now(UTC)))
    response = stub.Materialize(pb.MaterializeRequest(range=window), timeout=300)
    table = Table("feature view", "event-time range", "seconds")
    for view in response.views:
        span = f"{view.range.start.ToDatetime():%Y-%m-%d} .. {view.range.end.ToDatetime():%Y-%m-%d %H:%M}"
        table.add_row(view.feature_view, span, f"{view.duration.ToTimedelta().total_seconds():.2f}")
    console.print(table)


def _show(value: values_pb2.FeatureValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "null_value" or kind is None:
        return "null"
    shown = getattr(value, kind)
    return f"{shown:.2f}" if kind == "double_value" else str(shown)


_STATUS_STYLE = {
    pb.FEATURE_STATUS_PRESENT: "green",
    pb.FEATURE_STATUS_NULL_VALUE: "yellow",
    pb.FEATURE_STATUS_MISSING: "red",
    pb.FEATURE_STATUS_OUTSIDE_TTL: "magenta",
}


def _row(applicant: int, **request_values: int) -> pb.EntityRow:
    return pb.EntityRow(
        join_keys={"applicant_id": values_pb2.FeatureValue(int64_value=applicant)},
        request_values={k: values_pb2.FeatureValue(int64_value=v) for k, v in request_values.items()},
    )


def online_features(stub: pb_grpc.FeatureStoreServiceStub) -> None:
    """The feature service credit_risk_v1 for real applicants and one unknown applicant."""
    ids = (*APPLICANTS, UNKNOWN_APPLICANT)
    began = time.perf_counter()
    response = stub.GetOnlineFeatures(
        pb.GetOnlineFeaturesRequest(
            feature_service="credit_risk_v1", entity_rows=[_row(i) for i in ids], feature_service_version="1"
        ),
        timeout=10,
    )
    elapsed_ms = (time.perf_counter() - began) * 1000
    table = Table(
        Column("feature", no_wrap=True),
        "type",
        *(f"applicant {i}" for i in ids),
        title=f"credit_risk_v1 (version {response.feature_service_version}), one call, {elapsed_ms:.0f} ms",
    )
    for j, spec in enumerate(response.features):
        cells = []
        for row in response.rows:
            value = row.values[j]
            style = _STATUS_STYLE.get(value.status, "white")
            cells.append(f"[{style}]{_show(value.value)}[/{style}]")
        table.add_row(
            spec.name, values_pb2.ValueType.Name(spec.value_type).removeprefix("VALUE_TYPE_"), *cells
        )
    table.add_section()
    statuses, stamps = [], []
    for row in response.rows:
        counts: dict[str, int] = {}
        for value in row.values:
            name = pb.FeatureStatus.Name(value.status).removeprefix("FEATURE_STATUS_")
            counts[name] = counts.get(name, 0) + 1
        statuses.append(", ".join(f"{n} x {name}" for name, n in counts.items()))
        times = {v.event_timestamp.ToDatetime() for v in row.values if v.HasField("event_timestamp")}
        stamps.append(", ".join(f"{t:%Y-%m-%d %H:%M:%S}" for t in sorted(times)) or "-")
    table.add_row("[bold]status", "", *statuses)
    table.add_row("[bold]event timestamp (UTC)", "", *stamps)
    console.print(table)


def request_override(stub: pb_grpc.FeatureStoreServiceStub) -> None:
    """A request-time credit_amount replaces the stored one in monthly_installment."""
    refs = pb.FeatureRefs(
        refs=[
            "loan_request:credit_amount",
            "loan_request:duration_in_month",
            "loan_affordability:monthly_installment",
        ]
    )
    applicant = APPLICANTS[0]
    stored = stub.GetOnlineFeatures(
        pb.GetOnlineFeaturesRequest(features=refs, entity_rows=[_row(applicant)]), timeout=10
    )
    amount = stored.rows[0].values[0].value.int64_value
    asked = amount * 2
    override = stub.GetOnlineFeatures(
        pb.GetOnlineFeaturesRequest(features=refs, entity_rows=[_row(applicant, credit_amount=asked)]),
        timeout=10,
    )
    table = Table("request", "credit_amount (stored)", "duration_in_month", "monthly_installment")
    for label, response in (("stored values", stored), (f"credit_amount={asked} in the request", override)):
        table.add_row(label, *(_show(v.value) for v in response.rows[0].values))
    console.print(table)


def main() -> int:
    started = time.monotonic()
    console.print(f"[bold]credit-risk platform demo[/bold] (profile: {PROFILE})")
    step(1, "one locked environment per deployable")
    timed(show_environments)
    step(2, f"ingest the German credit data into the {PROFILE} profile's offline store")
    timed(ingest)
    with Supervisor(ROOT / ".run" / "logs") as supervisor:
        step(3, "start the feature-service (its own process, gRPC health SERVING)")
        target = timed(lambda: start_feature_service(supervisor))
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.FeatureStoreServiceStub(channel)
            step(4, "Materialize over gRPC: offline store -> online store")
            timed(lambda: materialize(stub))
            step(5, "GetOnlineFeatures: real applicants (green PRESENT, red MISSING)")
            timed(lambda: online_features(stub))
            step(6, "a request-time credit_amount overrides the stored one in monthly_installment")
            timed(lambda: request_override(stub))
        console.print("stopping the feature-service (SIGTERM, drain)")
    console.rule("[bold]What comes next")
    console.print(
        "The feature-service serves online features and point-in-time training sets over gRPC. Next: the "
        "training-service (issue 4) builds a training set through GetHistoricalFeatures (labelled entities "
        "from credit_label), fits and tracks the model in MLflow; then the registry gate (5), drift (6), "
        "the model-server (7), the inference-gateway (8) and the closed loop (9)."
    )
    console.print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job (`make demo`): the closed loop of the platform, on the embedded profile by default.

Run by `make demo` in the development environment, after `make setup` created every environment.
Every service runs as its own process under the supervisor (logs in `.run/logs/`); this script
speaks to them over gRPC (and REST) only, and runs the Kubeflow pipelines with kfp.local in the
pipelines' own environment (`pipelines/.venv/bin/python -m creditrisk_pipelines.local`).

1. environments; 2. the German credit data ingested into the profile's offline store
(`PROFILE=embedded`: DuckDB/Parquet + SQLite + file registry under `.run/demo/embedded/`, emptied at
the start, the previous run's kept as `embedded.previous`; `PROFILE=real`: PostgreSQL + Redis,
project `credit_risk_demo_<checkout id>`: every name on the shared servers carries the checkout's
id, see `scripts/demo_state.py`); 3. the feature-service, the MLflow tracking server, the
training-service, the registry-gateway (promoter and viewer tokens below), the drift-service, the
champion slot of the model-server (seldon-core runtime) and the inference-gateway; 4. the training
pipeline (materialize -> train -> register -> promote through the gate -> confirm rollout) makes the
first champion; 5-6. online features; 7. held-out applicants scored over REST and gRPC;
8-11. a simulated clock past the data's last date (applications from 2025-02-01; outcomes known 365
days after each application, as in the ingested data): a normal stream and then a shifted stream
of new applicants (`scripts/closed_loop.py`: features pushed to the feature store, applications
through the gateway, outcomes to the label table and the drift-service), each followed by the
monitoring pipeline on its window; on the shifted window the drift-service's policy fires, the
monitoring pipeline runs the training pipeline on the newer data, and the gate promotes or refuses
the challenger and says why; 12. a summary (versions and metrics, the monitoring windows with their
Evidently reports, predictions served and logged, the pipelines' durations).
Every process is stopped at the end, also on Ctrl-C or a failure (the supervisor's `with` block);
the last lines say what the run left and how to look at it afterwards (the command that serves the
MLflow UI on the run's store, the Evidently reports' files, the trace file).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import closed_loop as world
import demo_observability
import demo_state
import grpc
import httpx
import pyarrow.parquet as pq
import stack_certs
import stack_keys
from creditrisk.common.v1 import serving_pb2, time_range_pb2, values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_devstack import (
    CHILD_UMASK,
    ManagedProcess,
    ResolvedProcess,
    Stack,
    Supervisor,
    private_dir,
    process_environment,
    read_stack_file,
)
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

ROOT = Path(__file__).resolve().parent.parent
PROFILE = os.environ.get("PROFILE", "embedded")
console = Console(width=None if sys.stdout.isatty() else 140)

FEATURE_SERVICE = ROOT / "services" / "feature-service"
TRAINING_SERVICE = ROOT / "services" / "training-service"
TRAINING_PYTHON = TRAINING_SERVICE / ".venv" / "bin" / "python"
MLFLOW_POSTGRES_DSN = demo_state.postgres_dsn()
#: The real profile's names on the shared PostgreSQL and Redis: this checkout's own.
REAL = demo_state.real_stores(ROOT)
#: This run's state (the next run of the profile moves it to `.run/demo/<profile>.previous`).
STATE = demo_state.profile_dir(ROOT, PROFILE)
GERMAN_CSV = ROOT / "data" / "german_credit.csv"
#: Every process of the platform, one definition shared with the end-to-end tests (tests/e2e).
STACK = read_stack_file(ROOT / "deploy" / "stack" / "local.toml")
#: The processes the demo runs: the stack file's default set (what `devstack up` starts too; the
#: MLServer and challenger slots and their gateways are `autostart = false`).
DEMO_PROCESSES = STACK.default_names
#: Real applicants shown (row numbers of the file) and one that exists nowhere.
APPLICANTS = (1, 2, 3)
UNKNOWN_APPLICANT = 5000
STEPS = 12

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


def stack_variables() -> dict[str, str]:
    """The stack file's variables for this run: the profile's folder (its keys and the MLflow users'
    passwords are files there, scripts/stack_keys.py); on the real profile this checkout's names on
    the shared servers (`scripts/demo_state.py`)."""
    values = {"data_dir": str(STATE)}
    if PROFILE == "real":
        values.update(
            feature_project=REAL.feature_project,
            drift_schema=REAL.drift_schema,
            postgres_dsn=MLFLOW_POSTGRES_DSN,
            mlflow_postgres_dsn=demo_state.database_dsn(MLFLOW_POSTGRES_DSN, REAL.mlflow_database),
        )
    return values


def resolve(name: str) -> ResolvedProcess:
    """Process `name` of the stack file for this run, on free ports (to see what would run)."""
    return STACK.resolve(name, profile=PROFILE, variables=stack_variables())


def demo_stack() -> Stack:
    """The demo's processes of the stack file, resolved as one stack (each port a free one)."""
    return STACK.resolve_all(DEMO_PROCESSES, profile=PROFILE, variables=stack_variables())


def ingest() -> None:
    """Load the German credit data into the offline store and apply the Feast repository (in the
    feature-service's environment and settings of the stack file)."""
    spec = resolve("feature-service").spec
    result = subprocess.run(
        [
            str(FEATURE_SERVICE / ".venv" / "bin" / "python"),
            "-m",
            "feature_service.ingest",
            "--csv",
            str(GERMAN_CSV),
        ],
        cwd=FEATURE_SERVICE,
        env=process_environment(spec),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        umask=CHILD_UMASK,  # the feature store's files 0600, as the supervisor's children's
    )
    if result.returncode != 0:
        raise RuntimeError(f"ingestion failed:\n{result.stderr[-3000:]}")
    console.print(result.stdout.strip().splitlines()[-1])


def _start(supervisor: Supervisor, stack: Stack, name: str, *, wait: bool) -> ManagedProcess:
    return supervisor.start(next(spec for spec in stack.processes if spec.name == name), wait=wait)


def start_feature_service(supervisor: Supervisor, stack: Stack, *, wait: bool = True) -> str:
    """Start `python -m feature_service` in its own environment; wait for gRPC health SERVING."""
    process = _start(supervisor, stack, "feature-service", wait=wait)
    port = stack.ports["feature-service"]["port"]
    console.print(
        f"feature-service pid {process.pid} {'SERVING' if wait else 'starting'} on 127.0.0.1:{port} "
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


def ensure_mlflow_database() -> None:
    """On the real profile: MLflow's database of this checkout on the local PostgreSQL, created
    when missing (`training_service.mlflow_server.ensure_postgres_database`)."""
    if PROFILE != "real":
        return
    subprocess.run(
        [
            str(TRAINING_PYTHON),
            "-c",
            "import sys; from training_service.mlflow_server import ensure_postgres_database as e; "
            "print(e(sys.argv[1], sys.argv[2]))",
            MLFLOW_POSTGRES_DSN,
            REAL.mlflow_database,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def start_mlflow(supervisor: Supervisor, stack: Stack, *, wait: bool = True) -> str:
    """Start the MLflow tracking server sized for this machine; wait for `/health`."""
    process = _start(supervisor, stack, "mlflow", wait=wait)
    port = stack.ports["mlflow"]["port"]
    console.print(
        f"mlflow server pid {process.pid} {'ready' if wait else 'starting'} on https://127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'mlflow.log'})"
    )
    return f"https://127.0.0.1:{port}"


def start_training_service(supervisor: Supervisor, stack: Stack, *, wait: bool = True) -> str:
    """Start `python -m training_service`; SERVING once MLflow and the feature-service answer."""
    process = _start(supervisor, stack, "training-service", wait=wait)
    port = stack.ports["training-service"]["port"]
    console.print(
        f"training-service pid {process.pid} {'SERVING' if wait else 'starting'} on 127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'training-service.log'})"
    )
    return f"127.0.0.1:{port}"


# ---------------------------------------------------------------------- registry and serving (issues 5, 7, 8)

MODEL_NAME = "credit-risk"
#: The stack's keys of this data folder, by identity (scripts/stack_keys.py: made at the first run
#: in the folder, reused later; filled by :func:`run`, never printed). The demo acts as the
#: training pipeline (``pipeline``), reads the registry as the inference-gateway does, and calls the
#: gateway as its example client (``gateway-client``: ``predict`` only, so no answer echoes the
#: feature values, which need ``read_features``).
KEYS: dict[str, str] = {}
#: The MLflow users' passwords of this data folder (scripts/stack_keys.py's
#: `secrets/mlflow-<user>.password`, made with the keys; filled by :func:`run`, never printed).
MLFLOW_PASSWORDS: dict[str, str] = {}
#: How many held-out applicants the gateway scores over each protocol.
SERVED = 3


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def start_registry_gateway(supervisor: Supervisor, stack: Stack) -> str:
    """Start `python -m registry_gateway` (audit store: SQLite under `.run/demo/<profile>/`) without
    waiting; SERVING once MLflow, the audit database and the feature-service answer."""
    process = _start(supervisor, stack, "registry-gateway", wait=False)
    port = stack.ports["registry-gateway"]["port"]
    console.print(
        f"registry-gateway pid {process.pid} starting on 127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'registry-gateway.log'})"
    )
    return f"127.0.0.1:{port}"


def wait_for(supervisor: Supervisor, *names: str) -> None:
    """Wait until the named processes are ready (started in parallel, each its own readiness)."""
    supervisor.wait_ready(*names)
    console.print(", ".join(f"{name} (pid {supervisor[name].pid})" for name in names) + " ready")


def start_serving(supervisor: Supervisor, stack: Stack, *, wait: bool = True) -> tuple[str, str]:
    """Start the champion slot (seldon-core runtime) and the inference-gateway in front of it; with
    ``wait``, wait until the slot serves the champion (digests verified) and the gateway is ready
    (without: the slot follows the alias and becomes ready once a champion exists)."""
    _start(supervisor, stack, "model-server-champion", wait=False)
    _start(supervisor, stack, "inference-gateway", wait=False)
    if wait:
        supervisor.wait_ready("drift-service", "model-server-champion", "inference-gateway")
    slot, gateway = stack.ports["model-server-champion"], stack.ports["inference-gateway"]
    for name, address in (
        ("model-server-champion", f"https://127.0.0.1:{slot['http']} (seldon-core, Seldon protocol)"),
        (
            "inference-gateway",
            f"REST https://127.0.0.1:{gateway['http']}, gRPC 127.0.0.1:{gateway['port']} (TLS)",
        ),
    ):
        log = supervisor.log_dir / f"{name}.log"
        state = "ready" if wait else "starting"
        console.print(f"{name} pid {supervisor[name].pid} {state} on {address} (log: {log})")
    return f"https://127.0.0.1:{gateway['http']}", f"127.0.0.1:{gateway['port']}"


def held_out_applicants(mlflow_url: str, run_id: str, count: int) -> list[int]:
    """Applicant ids (row numbers of the file) that are not among the run's training rows."""
    response = httpx.get(
        f"{mlflow_url}/get-artifact",
        params={"path": TRAINING_ROWS, "run_uuid": run_id},
        auth=("drift-service", MLFLOW_PASSWORDS["drift-service"]),  # a reader of the training rows
        timeout=60,
        verify=world.http_verify(),
    )
    response.raise_for_status()
    trained = set(pq.read_table(io.BytesIO(response.content)).column("applicant_id").to_pylist())
    return [i for i in range(1, 1001) if i not in trained][:count]


def serve_predictions(rest_url: str, grpc_target: str, applicants: list[int]) -> None:
    """POST /v1/predict and gRPC Predict through the inference-gateway; print the answers."""
    table = Table(
        "via",
        "applicant",
        "PD",
        "decision",
        "threshold",
        "model",
        "event id",
        "trace id",
        "missing features",
        "ms",
        title="predictions of held-out applicants (features from the feature-service)",
    )
    headers = {"authorization": f"Bearer {KEYS['gateway-client']}"}  # the gateway's client (API key)
    echoed: list[bool] = []  # whether each answer carried the feature values
    with httpx.Client(base_url=rest_url, timeout=30, headers=headers, verify=world.http_verify()) as client:
        for applicant in applicants[:SERVED]:
            began = time.perf_counter()
            response = client.post("/v1/predict", json={"applicant_id": applicant})
            elapsed = (time.perf_counter() - began) * 1000
            response.raise_for_status()
            body = response.json()
            echoed.append(bool(body.get("features")))
            table.add_row(
                "REST",
                str(applicant),
                f"{body['probability_of_default']:.3f}",
                body["decision"].removeprefix("DECISION_"),
                f"{body['decision_threshold']:.3f}",
                f"{body['model_name']} v{body['model_version']}",
                body["event_id"][:12],
                body["trace_id"][:12],
                ", ".join(body["missing_features"]) or "-",
                f"{elapsed:.0f}",
            )
    with world.channel(grpc_target) as channel:
        stub = ipb_grpc.InferenceServiceStub(channel)
        for applicant in applicants[SERVED : 2 * SERVED]:
            began = time.perf_counter()
            answer = stub.Predict(
                ipb.PredictRequest(applicant_id=applicant),
                metadata=_bearer(KEYS["gateway-client"]),
                timeout=30,
            )
            elapsed = (time.perf_counter() - began) * 1000
            echoed.append(bool(answer.features))
            table.add_row(
                "gRPC",
                str(applicant),
                f"{answer.probability_of_default:.3f}",
                serving_pb2.Decision.Name(answer.decision).removeprefix("DECISION_"),
                f"{answer.decision_threshold:.3f}",
                f"{answer.model_name} v{answer.model_version}",
                answer.event_id[:12],
                answer.trace_id[:12],
                ", ".join(answer.missing_features) or "-",
                f"{elapsed:.0f}",
            )
        try:
            stub.Predict(
                ipb.PredictRequest(applicant_id=UNKNOWN_APPLICANT),
                metadata=_bearer(KEYS["gateway-client"]),
                timeout=30,
            )
        except grpc.RpcError as error:
            console.print(f"applicant {UNKNOWN_APPLICANT} (unknown, no request values): {error.code().name}")
    console.print(table)
    if any(echoed):
        raise RuntimeError("the gateway echoed feature values to the predict-only client key")
    console.print(
        "the client key holds `predict` only: no answer carries the feature values (they go to "
        "`read_features` callers and to the drift-service's prediction log)"
    )
    console.print("every prediction is logged to the drift-service as an event (LogPredictions, batched)")


# ---------------------------------------------------------------------- drift (issue 6)

TRAINING_ROWS = "training_set/training_rows.parquet"
DRIFT_DIR = STATE / "drift-service"


def start_drift_service(supervisor: Supervisor, stack: Stack, *, wait: bool = True) -> tuple[str, str]:
    """Start `python -m drift_service` (its store: SQLite on the embedded profile, PostgreSQL schema
    `drift_demo_<checkout id>` on the real one; HTML reports in `DRIFT_DIR / "reports"` on both; a
    version's training dataset found through the registry-gateway as a viewer); returns the gRPC
    target and the reports' base URL."""
    process = _start(supervisor, stack, "drift-service", wait=wait)
    port, report_port = stack.ports["drift-service"]["port"], stack.ports["drift-service"]["report"]
    console.print(
        f"drift-service pid {process.pid} {'SERVING' if wait else 'starting'} on 127.0.0.1:{port}, reports "
        f"on https://127.0.0.1:{report_port} (log: {supervisor.log_dir / 'drift-service.log'})"
    )
    return f"127.0.0.1:{port}", f"https://127.0.0.1:{report_port}"


def report_file(report: dpb.DriftReport) -> Path:
    """Where the drift-service wrote the report's Evidently HTML (kept after the demo stops)."""
    return DRIFT_DIR / "reports" / f"{report.id}.html"


_BAND = {dpb.PSI_BAND_STABLE: "stable", dpb.PSI_BAND_WATCH: "watch", dpb.PSI_BAND_SHIFTED: "shifted"}


def _drift_row(table: Table, f: dpb.FeatureDrift, name: str | None = None) -> None:
    style = "red" if f.drifted else "white"
    psi = f"{f.psi:.3f} {_BAND.get(f.psi_band, '')}" if f.HasField("psi") else "-"
    table.add_row(
        f"[{style}]{name or f.feature}[/{style}]",
        f.test_name or "-",
        f"{f.statistic:.3f}",
        f"{f.p_value:.2e}" if f.HasField("p_value") else "-",
        f"{f.threshold:.2e}",
        psi,
        f"[{style}]{'yes' if f.drifted else 'no'}[/{style}]",
    )


def show_drift_report(drift: str, stream: world.Stream) -> dpb.DriftReport:
    """The drift report the monitoring pipeline stored for the stream's window (ListDriftReports,
    as the pipeline's identity: read_monitoring)."""
    with world.authed_channel(drift, KEYS["pipeline"]) as channel:
        reports = (
            dpb_grpc.DriftServiceStub(channel)
            .ListDriftReports(
                dpb.ListDriftReportsRequest(
                    model_name=MODEL_NAME, time_range=world.window(MODEL_NAME, stream).time_range
                ),
                timeout=30,
            )
            .reports
        )
    report = reports[0]
    table = Table(
        "feature",
        "test",
        "statistic",
        "p-value",
        "threshold (adj.)",
        "PSI (band)",
        "drifted",
        title=f"{stream.regime} replay: {report.current_row_count} predictions of v{report.model_version} "
        f"vs {report.reference_row_count} training rows (reference: the version's training dataset)",
    )
    for f in report.features:
        _drift_row(table, f)
    table.add_section()
    _drift_row(table, report.prediction_drift, "prediction: probability_of_default")
    console.print(table)
    verdict = (
        "[bold red]DATASET DRIFT[/bold red]"
        if report.dataset_drift
        else "[bold green]no dataset drift[/bold green]"
    )
    console.print(
        f"{stream.regime}: {verdict}, drift share {report.drift_share:.2f}; rule: {report.dataset_drift_rule}"
    )
    console.print(
        f"  Evidently report: [link={report.html_report_url}]{report.html_report_url}[/link] "
        "(needs a read_monitoring credential: `authorization: Bearer <key>`)"
    )
    console.print(f"    its file: {demo_state.shown(report_file(report))}", soft_wrap=True)
    return report


# ---------------------------------------------------------------------- the pipelines (issue 9)

PIPELINES = ROOT / "pipelines"
PIPELINES_PYTHON = PIPELINES / ".venv" / "bin" / "python"
#: The simulated clock: the ingested applications end on 2025-01-01; the replays come after.
NORMAL_START = datetime(2025, 2, 1, tzinfo=UTC)
SHIFT_START = datetime(2025, 3, 1, tzinfo=UTC)
NORMAL_COUNT, SHIFTED_COUNT = 200, 300
#: How the demo trains (the default model, histogram gradient boosting; docs/model-quality.md).
TRAINING = {
    "algorithm": "hist_gradient_boosting",
    "hyperparameters_json": "{}",
    "cv_folds": 3,
    "cv_repeats": 1,
}


def pipeline_env() -> dict[str, str]:
    """The pipeline process's environment: this one's, with ``CREDITRISK_CREDENTIAL_FILE`` naming the
    folder's pipeline key (``secrets/pipeline.key``). kfp.local's subprocess runner passes it on to
    every component, which reads the key from the file (creditrisk_pipelines.credential): the key
    is never a pipeline argument, so never in kfp's logged executor input nor on a command line."""
    env = {k: v for k, v in os.environ.items() if k != "CREDITRISK_CREDENTIAL"}
    env["CREDITRISK_CREDENTIAL_FILE"] = str(stack_keys.key_file(STATE, "pipeline"))
    return env


def run_pipeline(name: str, arguments: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run a pipeline with kfp.local in the pipelines' environment (its own process); show each
    task as it ends; returns the result (outputs and every task's outputs).

    One clock for every duration shown: the live lines (each task's end, then the run's) and the
    summary (:func:`pipeline_timings`) read ``began`` here; the run's own is
    ``result[WALL_SECONDS]``, from starting the pipeline's process to its exit (the result's
    ``seconds`` is the pipeline's inner time, without the process's start and kfp's import)."""
    index = len(runs) + 1
    out_dir = STATE / "kfp"
    out_dir.mkdir(parents=True, exist_ok=True)
    result_file, log_file = (
        out_dir / f"{index}-{name}.json",
        ROOT / ".run" / "logs" / f"pipeline-{index}-{name}.log",
    )
    argv = [
        str(PIPELINES_PYTHON),
        "-m",
        "creditrisk_pipelines.local",
        name,
        "--arguments",
        json.dumps(arguments),
    ]
    argv += ["--output", str(result_file), "--pipeline-root", str(out_dir / f"{index}-{name}")]
    began = time.monotonic()
    console.print(f"[bold]{name} pipeline[/bold] (kfp.local, subprocess runner; log: {log_file})")
    with (
        log_file.open("w") as log,
        subprocess.Popen(
            argv,
            cwd=PIPELINES,
            env=pipeline_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as process,
        console.status(f"{name}: starting", spinner="dots") as status,
    ):
        try:
            for line in process.stdout or ():
                log.write(line)
                clean = ANSI.sub("", line).strip()
                if "Executing task" in clean:
                    status.update(f"{name}: {clean.split('Executing task', 1)[1].strip()} ...")
                elif "finished with status" in clean and " - " in clean:
                    elapsed = time.monotonic() - began
                    console.print(f"  {clean.split(' - ', 2)[-1]}  [dim]({_seconds(elapsed)})[/dim]")
            process.wait()
        except BaseException:  # Ctrl-C or a failure here: the pipeline's process stops too
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    seconds = time.monotonic() - began
    if process.returncode != 0:
        raise RuntimeError(f"{name} pipeline failed: see {log_file}")
    result = json.loads(result_file.read_text())
    result[WALL_SECONDS] = seconds
    console.print(f"  {name} pipeline done  [dim]({_seconds(seconds)})[/dim]")
    runs.append(result)
    return result


#: The key of a pipeline run's duration as the demo measured it (see :func:`run_pipeline`).
WALL_SECONDS = "demo_seconds"


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s"


def pipeline_timings(runs: list[dict[str, Any]]) -> str:
    """Each pipeline run and its duration, as printed live when it ended."""
    return ", ".join(f"{r['pipeline']} {_seconds(r[WALL_SECONDS])}" for r in runs)


def _task(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    for path, values in result["tasks"].items():
        if path.split("/")[-1] == name:
            return values
    return None


def show_training(result: dict[str, Any], title: str) -> None:
    """The training pipeline's stages: run metrics, registration, the gate's decision and why."""
    train, promote = _task(result, "train"), _task(result, "promote")
    if train is None or promote is None:
        raise RuntimeError(f"the training pipeline's tasks are missing: {sorted(result['tasks'])}")
    metrics = json.loads(train["metrics_json"])
    table = Table("stage", "result", title=title)
    materialized = _task(result, "materialize")
    if materialized:
        table.add_row("materialize", f"{materialized['views']} feature views")
    table.add_row(
        "train (MLflow run)",
        f"run {train['run_id']}: CV ROC AUC {metrics.get('cv_roc_auc_mean', float('nan')):.4f}, "
        f"test ROC AUC {metrics.get('test_roc_auc', float('nan')):.4f}, "
        f"test expected cost {metrics.get('test_expected_cost', float('nan')):.4f}",
    )
    version = _task(result, "register")
    table.add_row("register (checks passed)", f"{MODEL_NAME} v{version['Output'] if version else '?'}")
    figures = json.loads(promote["figures_json"])
    shown = ", ".join(
        f"{k} {v:+.4f}" if k in ("delta", "ci_lower", "ci_upper") else f"{k} {v:.4f}"
        for k, v in sorted(figures.items())
        if k != "window_rows"
    )
    verdict = "[bold green]PROMOTED[/bold green]" if promote["promoted"] else "[bold red]REFUSED[/bold red]"
    table.add_row("promote (the gate)", f"{verdict}; champion now v{promote['champion_version']}")
    table.add_row("gate figures", f"{shown} ({figures.get('window_rows', 0):.0f} gate-window rows)")
    for reason in promote["reasons"].splitlines():
        table.add_row("  why", reason)
    rollout = _task(result, "confirm-rollout")
    table.add_row("confirm rollout", "champion slot serves it" if rollout and rollout["Output"] else "-")
    console.print(table)


def _arguments(targets: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "feature_service": targets["feature-service"],
        "training_service": targets["training-service"],
        "registry": targets["registry-gateway"],
        "inference_gateway": targets["inference-gateway"],
        "model_name": MODEL_NAME,
        "experiment_name": "credit-risk-demo",
        **TRAINING,
        **overrides,
    }


def replay(targets: dict[str, str], stream: world.Stream) -> None:
    """Applications of a stream through the platform, then (the clock past the label delay) their
    outcomes, with progress bars."""
    with Progress(
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        pushed = progress.add_task("features -> feature store (Push)", total=len(stream.applicants))
        world.push_features(targets["feature-service"], stream, KEYS["pipeline"])
        progress.update(pushed, completed=len(stream.applicants))
        scored = progress.add_task("applications -> inference-gateway", total=len(stream.applicants))
        for i in range(0, len(stream.applicants), world.BATCH):
            part = world.Stream(stream.regime, stream.applicants[i : i + world.BATCH])
            world.score(targets["inference-gateway"], part, KEYS["gateway-client"])
            progress.update(scored, advance=len(part.applicants))
        logged = progress.add_task("predictions logged (drift-service)", total=len(stream.applicants))
        progress.update(
            logged,
            completed=world.wait_logged(targets["drift-service"], MODEL_NAME, stream, KEYS["pipeline"]),
        )
        labels = progress.add_task("outcomes -> label table + drift", total=len(stream.applicants))
        _written, joined = world.deliver_labels(
            targets["feature-service"], targets["drift-service"], stream, KEYS["pipeline"]
        )
        progress.update(labels, completed=joined)
    pds = [a.probability_of_default for a in stream.applicants]
    versions = sorted({a.model_version for a in stream.applicants})
    console.print(
        f"{stream.regime} replay: {len(stream.applicants)} applications {stream.start:%Y-%m-%d} .. "
        f"{stream.end:%Y-%m-%d} (simulated), scored by v{', v'.join(map(str, versions))}, mean PD "
        f"{sum(pds) / len(pds):.3f}; outcomes known {LABEL_DELAY_DAYS} days later (clock now "
        f"{stream.labels_known:%Y-%m-%d}), default rate {world.default_rate(stream.applicants):.1%}"
    )


LABEL_DELAY_DAYS = world.LABEL_DELAY.days
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def monitor(targets: dict[str, str], stream: world.Stream, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The monitoring pipeline over the stream's window (retraining on it when a trigger fires)."""
    arguments = _arguments(
        targets,
        drift_service=targets["drift-service"],
        window_start=world.iso(stream.start),
        window_end=world.iso(stream.end),
        training_start=world.iso(stream.start),
        training_end=world.iso(stream.end),
        gate_window_days=10,
        run_name=f"retrained-after-{stream.regime}-window",
    )
    result = run_pipeline("monitoring", arguments, runs)
    outputs = result["outputs"]
    show_drift_report(targets["drift-service"], stream)
    auc = outputs["roc_auc"]
    console.print(
        f"performance of the champion on the window: ROC AUC {auc:.3f} over {outputs['labelled']} labelled "
        "predictions"
        if auc >= 0
        else "performance: not enough labels"
    )
    for reason in outputs["trigger_reasons"].splitlines():
        console.print(f"  [red]trigger[/red]: {reason}")
    decision = "RETRAIN" if outputs["retrain"] else "no retraining"
    console.print(
        f"decide: [bold]{decision}[/bold] ({outputs['trigger_count']} trigger event(s) raised by the "
        "drift-service's policy)"
    )
    if outputs["retrain"]:
        show_training(result, "the training pipeline, started by the monitoring pipeline, on the newer data")
    return result


def summary(
    targets: dict[str, str],
    runs: list[dict[str, Any]],
    windows: list[tuple[world.Stream, dict[str, Any]]],
    served: int,
) -> list[tuple[str, Path]]:
    """Versions and metrics, the drift table, predictions served and logged, the pipelines'
    durations; returns each window's Evidently report file (shown after the demo stops)."""
    with world.channel(targets["registry-gateway"]) as channel:
        versions = (
            rpb_grpc.ModelRegistryServiceStub(channel)
            .ListModelVersions(
                rpb.ListModelVersionsRequest(name=MODEL_NAME),
                metadata=_bearer(KEYS["inference-gateway"]),
                timeout=30,
            )
            .model_versions
        )
    table = Table(
        "version",
        "aliases",
        "run",
        "trained on (applications)",
        "test ROC AUC",
        "gate",
        title="model versions",
    )
    gates = {}
    for result in runs:
        promote, register = _task(result, "promote"), _task(result, "register")
        if promote and register:
            gates[register["Output"]] = "promoted" if promote["promoted"] else "refused"
    for v in sorted(versions, key=lambda v: v.version):
        table.add_row(
            f"v{v.version}",
            ", ".join(v.aliases) or "-",
            v.run_id[:12],
            _trained_on(runs, v.run_id),
            f"{v.metrics.get('test_roc_auc', float('nan')):.4f}",
            gates.get(v.version, "-"),
        )
    console.print(table)
    drift = Table(
        "window (simulated)",
        "predictions",
        "dataset drift",
        "drift share",
        "champion ROC AUC",
        "triggers",
        "retrained",
        title="monitoring windows (the monitoring pipeline's)",
    )
    reports: list[tuple[str, Path]] = []
    with world.authed_channel(targets["drift-service"], KEYS["pipeline"]) as channel:
        stub = dpb_grpc.DriftServiceStub(channel)
        logged = 0
        for stream, result in windows:
            out = result["outputs"]
            report = stub.ListDriftReports(
                dpb.ListDriftReportsRequest(
                    model_name=MODEL_NAME, time_range=world.window(MODEL_NAME, stream).time_range
                ),
                timeout=30,
            ).reports[0]
            drift.add_row(
                f"{stream.regime} {stream.start:%Y-%m-%d} .. {stream.end:%Y-%m-%d}",
                str(report.current_row_count),
                "yes" if out["dataset_drift"] else "no",
                f"{report.drift_share:.2f}",
                f"{out['roc_auc']:.3f}",
                str(out["trigger_count"]),
                "yes" if out["retrain"] else "no",
            )
            reports.append((f"{stream.regime} window", report_file(report)))
        everything = dpb.Window(
            model_name=MODEL_NAME,
            time_range=time_range_pb2.TimeRange(
                start=_ts(datetime(2000, 1, 1, tzinfo=UTC)), end=_ts(datetime.now(UTC) + timedelta(days=1))
            ),
        )
        # The gateway logs asynchronously, in batches: wait (bounded) for the last ones to arrive.
        deadline = time.monotonic() + 30
        while True:
            logged = sum(
                r.prediction_count
                for r in stub.GetPerformance(dpb.GetPerformanceRequest(window=everything), timeout=60).reports
            )
            if logged >= served or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    console.print(drift)
    console.print(
        f"predictions served through the inference-gateway: {served}; logged in the drift-service: {logged}"
    )
    console.print(
        f"pipelines run with kfp.local: {pipeline_timings(runs)}; compiled for Kubeflow: pipelines/compiled/"
    )
    return reports


def mlflow_ui_command(port: int = 5000) -> list[str]:
    """The command that serves the MLflow UI on this run's tracking store and artifacts, with none
    of the demo's processes running (the project's lean `mlflow server`, as the demo started it)."""
    argv = [str(TRAINING_PYTHON), "-m", "training_service.mlflow_server", "--profile", PROFILE]
    argv += ["--dir", str(STATE / "mlflow")]
    if PROFILE == "real":
        argv += ["--postgres-dsn", demo_state.database_dsn(MLFLOW_POSTGRES_DSN, REAL.mlflow_database)]
    return [*argv, "--port", str(port)]


def afterwards(reports: list[tuple[str, Path]], trace_id: str) -> None:
    """The last lines: what the run left and how to look at it once every process has stopped."""
    here = Path.cwd().resolve()
    argv = mlflow_ui_command()
    shown = [demo_state.shown(Path(a)) if a.startswith(str(ROOT)) else a for a in argv]
    previous = demo_state.shown(STATE.with_name(f"{PROFILE}.previous"))
    kept = f"kept until the next {PROFILE} run, which moves them to {previous}/"
    if PROFILE == "real":
        kept += (
            f" and renames the database to {REAL.previous(REAL.mlflow_database)}, the drift schema to "
            f"{REAL.previous(REAL.drift_schema)}"
        )
    console.rule("[bold]afterwards")
    console.print(f"what this run left ({kept}; paths relative to {here}):", soft_wrap=True)
    store = (
        f"SQLite {demo_state.shown(STATE / 'mlflow' / 'mlflow.db')}"
        if PROFILE == "embedded"
        else f"PostgreSQL database {REAL.mlflow_database}"
    )
    console.print(
        f"  MLflow UI on the run's store ({store}, artifacts in "
        f"{demo_state.shown(STATE / 'mlflow' / 'artifacts')}/):",
        soft_wrap=True,
    )
    console.print(f"    {' '.join(shown)}", soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"    then open http://127.0.0.1:5000/#/models/{MODEL_NAME} (busy port: --port N; Ctrl-C stops it)",
        soft_wrap=True,
    )
    console.print(
        "    and sign in as admin, its password in "
        f"{demo_state.shown(STATE / 'mlflow' / 'auth' / 'secrets.json')} (MLflow's basic-auth app)",
        soft_wrap=True,
    )
    for label, path in reports:
        console.print(f"  Evidently drift report, {label}: {demo_state.shown(path)}", soft_wrap=True)
    spans = demo_state.shown(demo_state.spans_file(ROOT, PROFILE))
    console.print(f"  traces (OTLP/JSON spans, one a line): {spans}", soft_wrap=True)
    console.print(f"    the traced prediction of step 7: grep {trace_id} {spans}", soft_wrap=True)
    console.print(f"  logs of every process: {demo_state.shown(ROOT / '.run' / 'logs')}/", soft_wrap=True)
    for line in by_hand():
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def by_hand(http_port: int = 8000, grpc_port: int = 50055) -> list[str]:
    """How to call the gateway of a stack started by hand on this folder, its client key read
    from its file (never printed)."""
    key = f"$(cat {demo_state.shown(stack_keys.key_file(STATE, 'gateway-client'))})"
    ca = demo_state.shown(stack_certs.tls_paths(STATE).ca_cert)  # the folder's CA (TLS on every server)
    profile = [] if PROFILE == "embedded" else [f"--profile {PROFILE}"]
    return [
        f"  the stack's keys (made at this folder's first run, reused): "
        f"{demo_state.shown(stack_keys.secrets_dir(STATE))}/ (mode 0600)",
        "    a stack by hand on this run's state, and the gateway called with the client key:",
        "    "
        + " ".join(
            [
                ".tools/bin/uv run devstack up deploy/stack/local.toml",
                *profile,
                f"--port inference-gateway.http={http_port} --port inference-gateway.port={grpc_port}",
            ]
        ),
        f"    curl -s -H \"authorization: Bearer {key}\" -H 'content-type: application/json' "
        f"--cacert {ca} -d '{{\"applicant_id\": 7}}' https://127.0.0.1:{http_port}/v1/predict",
        f'    grpcurl -cacert {ca} -H "authorization: Bearer {key}" -d \'{{"applicant_id": 7}}\' '
        f"127.0.0.1:{grpc_port} creditrisk.inference.v1.InferenceService/Predict",
    ]


def _trained_on(runs: list[dict[str, Any]], run_id: str) -> str:
    for result in runs:
        train = _task(result, "train")
        if train and train["run_id"] == run_id:
            args = result.get("arguments", {})
            return args.get("training", "")
    return "-"


def main() -> int:
    demo_state.check_profile(PROFILE)
    with demo_state.run_lock(ROOT, PROFILE):
        return run()


def run() -> int:
    started = time.monotonic()
    console.print(f"[bold]credit-risk platform demo[/bold] (profile: {PROFILE})")
    fresh_state()
    KEYS.update(stack_keys.write_keys(STATE))  # the folder's keys (made at its first run), never printed
    MLFLOW_PASSWORDS.update(stack_keys.write_mlflow_passwords(STATE))  # likewise
    # TLS on every server: the folder's CA and certificates (made at its first run, re-issued
    # before they expire); this process, the pipelines' components (kfp.local passes the
    # environment on) and MLflow's clients trust that CA
    tls = stack_certs.write_certificates(STATE, label=PROFILE)
    os.environ[world.CA_FILE_ENV] = str(tls.ca_cert)
    os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(tls.ca_cert)
    step(1, "one locked environment per deployable")
    timed(show_environments)
    step(2, f"ingest the German credit data into the {PROFILE} profile's offline store")
    timed(ingest)
    runs: list[dict[str, Any]] = []
    # OTLP receiver -> .run/demo/<profile>/traces/spans.jsonl (issue 10)
    observability = demo_observability.start(demo_state.spans_file(ROOT, PROFILE))
    with Supervisor(ROOT / ".run" / "logs") as supervisor:
        step(3, "start every service and the champion slot (each its own process, under the supervisor)")
        ensure_mlflow_database()
        stack = demo_stack()  # the processes of deploy/stack/local.toml, each on free ports
        targets: dict[str, str] = {}
        targets["feature-service"] = start_feature_service(supervisor, stack, wait=False)
        mlflow_url = start_mlflow(supervisor, stack, wait=False)
        timed(lambda: wait_for(supervisor, "feature-service", "mlflow"))
        targets["training-service"] = start_training_service(supervisor, stack, wait=False)
        targets["registry-gateway"] = start_registry_gateway(supervisor, stack)
        timed(lambda: wait_for(supervisor, "training-service", "registry-gateway"))
        targets["drift-service"], _reports = start_drift_service(supervisor, stack, wait=False)
        rest_url, targets["inference-gateway"] = start_serving(supervisor, stack, wait=False)
        step(
            4, "the training pipeline: materialize -> train -> register -> promote (gate) -> confirm rollout"
        )
        first = run_pipeline("training", _arguments(targets, run_name="first-champion"), runs)
        first["arguments"] = {"training": "2023-01-01 .. 2025-01-01 (ingested)"}
        show_training(first, "training pipeline: the first champion")
        with world.authed_channel(targets["feature-service"], KEYS["pipeline"]) as channel:
            stub = pb_grpc.FeatureStoreServiceStub(channel)
            step(
                5,
                "GetOnlineFeatures (materialized by the pipeline): real applicants (green PRESENT)",
            )
            timed(lambda: online_features(stub))
            step(6, "a request-time credit_amount overrides the stored one in monthly_installment")
            timed(lambda: request_override(stub))
        step(7, "serve the champion: predictions of held-out applicants over REST and gRPC")
        supervisor.wait_ready("drift-service", "model-server-champion", "inference-gateway")
        applicants = held_out_applicants(mlflow_url, first["outputs"]["run_id"], 2 * SERVED)
        timed(lambda: serve_predictions(rest_url, targets["inference-gateway"], applicants))
        trace_id = demo_observability.show(
            observability, rest_url, supervisor, applicants[0], KEYS["gateway-client"]
        )  # + /metrics
        rows = world.load_rows()
        normal = world.make_stream(rows, world.NORMAL, NORMAL_COUNT, NORMAL_START, 20, 100_001, seed=11)
        shifted = world.make_stream(rows, world.SHIFTED, SHIFTED_COUNT, SHIFT_START, 30, 200_001, seed=12)
        step(8, "simulated clock past the data's last date: a normal stream of applications and its outcomes")
        timed(lambda: replay(targets, normal))
        step(9, "the monitoring pipeline on the normal window")
        windows = [(normal, timed(lambda: monitor(targets, normal, runs)))]
        step(10, "a shifted stream: older, larger loans, more business purposes, and a new default pattern")
        timed(lambda: replay(targets, shifted))
        step(11, "the monitoring pipeline on the shifted window: drift -> trigger -> the training pipeline")
        windows.append((shifted, timed(lambda: monitor(targets, shifted, runs))))
        runs[-1]["arguments"] = {"training": f"{shifted.start:%Y-%m-%d} .. {shifted.end:%Y-%m-%d} (replayed)"}
        fresh = world.make_stream(
            rows, world.SHIFTED, 5, datetime(2025, 4, 2, tzinfo=UTC), 1, 300_001, seed=13
        )
        world.push_features(targets["feature-service"], fresh, KEYS["pipeline"])
        world.score(targets["inference-gateway"], fresh, KEYS["gateway-client"])
        console.print(
            "new applications after the swap, scored by: "
            + ", ".join(
                f"{a.applicant_id} v{a.model_version} PD {a.probability_of_default:.3f}"
                for a in fresh.applicants
            )
        )
        step(12, "summary")
        # + 1: the traced prediction of step 7 (demo_observability.show)
        served = 2 * SERVED + 1 + NORMAL_COUNT + SHIFTED_COUNT + len(fresh.applicants)
        reports = summary(targets, runs, windows, served)
        console.print("stopping every process the demo started (SIGTERM, drain; the slot drains first)")
    console.print(f"[bold]done in {time.monotonic() - started:.1f} s[/bold]")
    afterwards(reports, trace_id)
    return 0


def fresh_state() -> None:
    """Each run starts from nothing: the previous run's folder is kept as `<profile>.previous`; on
    the real profile, this checkout's MLflow database and drift schema get a `_previous` suffix
    (the older copies dropped; another checkout's never touched), and the feature store's project
    is reloaded by the ingestion. The new folder is mode 0700 (the services' files in it are 0600:
    the supervisor's umask)."""
    if PROFILE == "real":
        done = demo_state.reset_real(MLFLOW_POSTGRES_DSN, REAL)
        console.print(f"[dim]the previous real run's stores on PostgreSQL: {'; '.join(done) or 'none'}[/dim]")
    folder = STATE
    if folder.exists():
        previous = folder.with_name(f"{PROFILE}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        folder.rename(previous)
        console.print(f"[dim]the previous run's state moved to {demo_state.shown(previous)}[/dim]")
        private_dir(previous)  # applicant data, whatever mode an older run left
        # the data folder's keys and certificates outlive its runs (deploy/stack/local.toml): a
        # client holding the CA or a key of this folder keeps working across runs
        for kept, moved in (
            (stack_keys.secrets_dir(previous), stack_keys.secrets_dir(folder)),
            (stack_certs.tls_paths(previous).directory, stack_certs.tls_paths(folder).directory),
        ):
            if kept.is_dir():
                private_dir(folder)
                kept.rename(moved)
    private_dir(folder)  # no other user reads a run's applicant data (mode 0700)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the supervisor's Interrupted on SIGINT / SIGTERM, or Ctrl-C
        console.print(
            f"[bold red]interrupted[/bold red]: every process the demo started was stopped "
            f"(logs: {ROOT / '.run' / 'logs'})"
        )
        sys.exit(130)

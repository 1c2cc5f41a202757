"""The main job (`make demo`): runs what exists of the platform so far and says what comes next.

Run by `make demo` in the development environment, after `make setup` created every environment.
Each step is a function; later issues add theirs (serving, the training pipeline, the closed loop).

So far (issue 3): the German credit data is ingested into the feature store of the chosen profile
(`PROFILE=embedded`: DuckDB/Parquet + SQLite + file registry under `.run/demo/`; `PROFILE=real`:
PostgreSQL + Redis, project `credit_risk_demo`), the feature-service runs as its own process under
the supervisor (log in `.run/logs/feature-service.log`), and this script speaks to it over gRPC
only: Materialize, then the online features of real applicants, then a request-time override.
Issue 4: the MLflow tracking server (SQLite under `.run/demo/<profile>/mlflow`, or a PostgreSQL
database `mlflow_demo` on the real profile) and the training-service start under the supervisor
(logs `.run/logs/mlflow.log`, `.run/logs/training-service.log`); the default model (histogram
gradient boosting, docs/model-quality.md) is trained on the German credit data through the
training-service's gRPC API (the training set comes from the feature-service), its progress
watched with WatchTrainingJob, and its metrics and MLflow run printed.
Issue 6 (while the inference-gateway does not exist yet): the drift-service starts under the
supervisor (SQLite under `.run/demo/<profile>/drift-service`, log `.run/logs/drift-service.log`);
the applicants the run did not train on (its test split and gate window) are scored in-process
with the trained model (a subprocess in the training-service's environment loads the run's model
through MLflow), logged over gRPC as prediction events on a simulated clock (a normal replay and a
shifted one: credit_amount x 1.5, age + 10 years, 30% of purposes -> business), and drift is
computed on both against the run's training rows (`runs:/<run id>/training_set/...`, read through
MLflow by the drift-service): the per-feature table, the dataset verdicts, the trigger events and
the HTML report's URL are printed.
Issues 5, 7, 8: the registry-gateway starts (audit store SQLite under `.run/demo/<profile>/`,
log `.run/logs/registry-gateway.log`), registers the trained run's model (its checks against the
feature service, digests, fast scorer) and promotes it through the gate (first champion: ROC AUC on
the run's held-out gate window >= the floor; on a re-run over the same MLflow folder the equal
challenger is refused with its figures and the earlier champion stays); the champion slot of the
model-server (seldon-core runtime) and the inference-gateway start, and held-out applicants are
scored over REST and gRPC (features from the feature-service; the events go to the drift-service).
The drift replays are logged as the registered version.
Every process is stopped at the end, also on Ctrl-C or a failure (the supervisor's `with` block).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import demo_observability
import grpc
import httpx
import pyarrow.parquet as pq
from creditrisk.common.v1 import refs_pb2, serving_pb2, time_range_pb2, values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_devstack import GrpcReadiness, HttpReadiness, ProcessSpec, Supervisor, free_port
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
DRIFT_SERVICE = ROOT / "services" / "drift-service"
REGISTRY_GATEWAY = ROOT / "services" / "registry-gateway"
MODEL_SERVER = ROOT / "services" / "model-server"
INFERENCE_GATEWAY = ROOT / "services" / "inference-gateway"
MLFLOW_POSTGRES_DSN = os.environ.get("CREDITRISK_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
GERMAN_CSV = ROOT / "data" / "german_credit.csv"
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


def start_mlflow(supervisor: Supervisor) -> str:
    """Start the MLflow tracking server sized for this machine; wait for `/health`."""
    port = free_port()
    data_dir = ROOT / ".run" / "demo" / PROFILE / "mlflow"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(TRAINING_PYTHON), "-m", "training_service.mlflow_server", "--profile", PROFILE]
    argv += ["--dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    if PROFILE == "real":  # a database of its own on the local PostgreSQL
        dsn = subprocess.run(
            [
                str(TRAINING_PYTHON),
                "-c",
                "import sys; from training_service.mlflow_server import ensure_postgres_database as e; "
                "print(e(sys.argv[1], 'mlflow_demo'))",
                MLFLOW_POSTGRES_DSN,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        argv += ["--postgres-dsn", dsn]
    process = supervisor.start(
        ProcessSpec(
            "mlflow",
            argv,
            cwd=TRAINING_SERVICE,
            ready=HttpReadiness(f"http://127.0.0.1:{port}/health"),
            timeout_s=120,
        )
    )
    console.print(
        f"mlflow server pid {process.pid} on http://127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'mlflow.log'})"
    )
    return f"http://127.0.0.1:{port}"


def start_training_service(supervisor: Supervisor, feature_service: str, mlflow_url: str) -> str:
    """Start `python -m training_service`; SERVING once MLflow and the feature-service answer."""
    port = free_port()
    process = supervisor.start(
        ProcessSpec(
            "training-service",
            [str(TRAINING_PYTHON), "-m", "training_service"],
            cwd=TRAINING_SERVICE,
            env={
                "TRAINING_SERVICE_HOST": "127.0.0.1",
                "TRAINING_SERVICE_PORT": str(port),
                "TRAINING_SERVICE_FEATURE_SERVICE_ADDRESS": feature_service,
                "TRAINING_SERVICE_MLFLOW_TRACKING_URI": mlflow_url,
                "TRAINING_SERVICE_EXPERIMENT_NAME": "credit-risk-demo",
                "TRAINING_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
                "TRAINING_SERVICE_GRACE_PERIOD_S": "5",
                "OMP_NUM_THREADS": "1",
            },
            ready=GrpcReadiness(f"127.0.0.1:{port}"),
            timeout_s=120,
        )
    )
    console.print(
        f"training-service pid {process.pid} SERVING on 127.0.0.1:{port} "
        f"(log: {supervisor.log_dir / 'training-service.log'})"
    )
    return f"127.0.0.1:{port}"


def train_default_model(stub: tpb_grpc.TrainingServiceStub, mlflow_url: str) -> str:
    """StartTrainingJob (the default model, histogram gradient boosting), watch it, print the result."""
    spec = tpb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1", version="1"),
        label=tpb.LabelSource(feature_view="credit_label", label_column="creditability"),
        application_time_range=time_range_pb2.TimeRange(
            start=_ts(datetime(2023, 1, 1, tzinfo=UTC)), end=_ts(datetime(2025, 1, 1, tzinfo=UTC))
        ),
        model=tpb.ModelSpec(algorithm=tpb.ALGORITHM_HIST_GRADIENT_BOOSTING),
        seed=42,
        run_name="demo-default-model",
        tags={"demo": "true"},
    )
    started = stub.StartTrainingJob(tpb.StartTrainingJobRequest(spec=spec), timeout=60)
    resolved = started.job.spec
    console.print(
        f"job {started.job_id}: {tpb.Algorithm.Name(resolved.model.algorithm).removeprefix('ALGORITHM_')}, "
        f"feature service {resolved.feature_service.name} v{resolved.feature_service.version}, "
        f"{resolved.evaluation.cv_repeats} x {resolved.evaluation.cv_folds}-fold CV, test share "
        f"{resolved.evaluation.test_fraction:g}, gate window {resolved.evaluation.gate_window_days} days, "
        f"seed {resolved.seed}"
    )
    job = started.job
    with Progress(
        TextColumn("[bold]{task.fields[stage]:<22}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as progress:
        task = progress.add_task("training", total=1.0, stage="QUEUED", note="")
        for message in stub.WatchTrainingJob(tpb.WatchTrainingJobRequest(job_id=started.job_id), timeout=300):
            job = message.job
            stage = tpb.TrainingStage.Name(job.stage).removeprefix("TRAINING_STAGE_")
            progress.update(
                task, completed=job.progress, stage=stage if job.stage else "QUEUED", note=job.message
            )
    if job.state != tpb.TRAINING_JOB_STATE_SUCCEEDED:
        state = tpb.TrainingJobState.Name(job.state)
        raise RuntimeError(f"training job {job.id} ended {state}: {job.error.message or job.message}")
    result, m = job.result, job.result.metrics
    table = Table("metric", "value", title="default model (histogram gradient boosting), German credit")
    rows = [
        ("CV ROC AUC (mean +- std)", f"{m['cv_roc_auc_mean']:.4f} +- {m['cv_roc_auc_std']:.4f}"),
        ("test ROC AUC", f"{m['test_roc_auc']:.4f}"),
        ("test Gini", f"{m['test_gini']:.4f}"),
        ("test KS", f"{m['test_ks']:.4f}"),
        ("test Brier score", f"{m['test_brier']:.4f}"),
        ("test log loss", f"{m['test_log_loss']:.4f}"),
        ("test expected cost (5:1, per applicant)", f"{m['test_expected_cost']:.4f}"),
        ("decision threshold (P(default), cost-optimal on OOF)", f"{result.decision_threshold:.4f}"),
        ("test approval rate", f"{m.get('test_approval_rate', float('nan')):.3f}"),
    ]
    rows += [
        (
            "fairness: min approval-rate ratio, "
            + name.removeprefix("fairness_").removesuffix("_min_approval_ratio"),
            f"{v:.3f}",
        )
        for name, v in sorted(m.items())
        if name.startswith("fairness_")
    ]
    rows += [
        ("fast scorer max |diff| vs scikit-learn", f"{result.fast_scorer_max_abs_diff:.1e}"),
        (
            "rows: total / train / test / gate window / bad",
            f"{result.row_counts.total} / {result.row_counts.train} / {result.row_counts.test} / "
            f"{result.row_counts.gate_window} / {result.row_counts.bad}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"MLflow run id: [bold]{result.mlflow_run_id}[/bold]  model: {result.model_uri}")
    console.print(
        f"MLflow UI: {mlflow_url}/#/experiments/{result.mlflow_experiment_id}/runs/{result.mlflow_run_id} "
        "(while the demo runs; afterwards serve the same folder again: services/training-service/README.md)"
    )
    return str(result.mlflow_run_id)


# ---------------------------------------------------------------------- registry and serving (issues 5, 7, 8)

MODEL_NAME = "credit-risk"
#: Bearer tokens of the demo's registry-gateway (the demo acts as the training pipeline, with an
#: admin for overrides; the inference-gateway reads as a viewer). Demo values, never real secrets.
PROMOTER_TOKEN = "demo-pipeline-token"  # noqa: S105 - a demo value
VIEWER_TOKEN = "demo-viewer-token"  # noqa: S105 - a demo value
REGISTRY_TOKENS = {
    PROMOTER_TOKEN: {"subject": "demo-pipeline", "role": "promoter"},
    "demo-admin-token": {"subject": "demo-admin", "role": "admin"},
    VIEWER_TOKEN: {"subject": "inference-gateway", "role": "viewer"},
}
#: How many held-out applicants the gateway scores over each protocol.
SERVED = 3


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def start_registry_gateway(supervisor: Supervisor, feature_service: str, mlflow_url: str) -> str:
    """Start `python -m registry_gateway` (audit store: SQLite under `.run/demo/<profile>/`) without
    waiting; SERVING once MLflow, the audit database and the feature-service answer."""
    port = free_port()
    data_dir = ROOT / ".run" / "demo" / PROFILE / "registry-gateway"
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor.start(
        ProcessSpec(
            "registry-gateway",
            [str(REGISTRY_GATEWAY / ".venv" / "bin" / "python"), "-m", "registry_gateway"],
            cwd=REGISTRY_GATEWAY,
            env={
                "REGISTRY_GATEWAY_HOST": "127.0.0.1",
                "REGISTRY_GATEWAY_PORT": str(port),
                "REGISTRY_GATEWAY_MLFLOW_TRACKING_URI": mlflow_url,
                "REGISTRY_GATEWAY_FEATURE_SERVICE_ADDRESS": feature_service,
                "REGISTRY_GATEWAY_AUDIT_DB_URL": f"sqlite:///{data_dir / 'audit.db'}",
                "REGISTRY_GATEWAY_CACHE_DIR": str(data_dir / "cache"),
                "REGISTRY_GATEWAY_TOKENS": json.dumps(REGISTRY_TOKENS),
                "REGISTRY_GATEWAY_HEALTH_CHECK_INTERVAL_S": "0.5",
                "REGISTRY_GATEWAY_GRACE_PERIOD_S": "5",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "OMP_NUM_THREADS": "1",
            },
            ready=GrpcReadiness(f"127.0.0.1:{port}"),
            timeout_s=120,
        ),
        wait=False,
    )
    return f"127.0.0.1:{port}"


def wait_for_registry(supervisor: Supervisor, target: str) -> None:
    supervisor.wait_ready("registry-gateway")
    console.print(
        f"registry-gateway pid {supervisor['registry-gateway'].pid} SERVING on {target} "
        f"(log: {supervisor.log_dir / 'registry-gateway.log'})"
    )


def _gate_table(gate: rpb.GateResult, title: str) -> Table:
    table = Table("gate", "value", title=title)
    table.add_row("rule", gate.rule)
    window = f"{gate.window.start.ToDatetime():%Y-%m-%d} .. {gate.window.end.ToDatetime():%Y-%m-%d}"
    table.add_row("gate window (labelled applications)", f"{window}, {gate.window_row_count} rows")
    table.add_row(
        f"challenger v{gate.challenger.version}: ROC AUC / expected cost",
        f"{gate.challenger.roc_auc:.4f} / {gate.challenger.expected_cost:.4f}",
    )
    if gate.HasField("champion"):
        table.add_row(
            f"champion v{gate.champion.version}: ROC AUC / expected cost",
            f"{gate.champion.roc_auc:.4f} / {gate.champion.expected_cost:.4f}",
        )
        table.add_row(
            f"delta AUC ({gate.confidence_level:.0%} CI, {gate.resamples} paired resamples)",
            f"{gate.delta:+.4f} [{gate.ci_lower:+.4f}, {gate.ci_upper:+.4f}], "
            f"margin {gate.non_inferiority_margin}",
        )
    if gate.HasField("absolute_floor"):
        table.add_row("absolute floor (first champion)", f"{gate.absolute_floor:.2f}")
    table.add_row("passed", "[green]yes[/green]" if gate.passed else "[red]no[/red]")
    for reason in gate.reasons:
        table.add_row("reason", reason)
    return table


def register_and_promote(
    stub: rpb_grpc.ModelRegistryServiceStub, run_id: str
) -> tuple[rpb.ModelVersion, rpb.ModelVersion]:
    """RegisterModelVersion (the gateway's checks) then PromoteModelVersion through the gate; returns
    the registered version and the champion that serves (on a re-run over the same MLflow folder an
    equal challenger is refused and the earlier champion stays)."""
    registered = stub.RegisterModelVersion(
        rpb.RegisterModelVersionRequest(
            run_id=run_id,
            artifact_path="model",
            registered_model_name=MODEL_NAME,
            feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1"),
        ),
        metadata=_bearer(PROMOTER_TOKEN),
        timeout=300,
    ).model_version
    digests = len(registered.artifact_digests)
    console.print(
        f"registered [bold]{registered.name} v{registered.version}[/bold] from run {registered.run_id}: "
        f"{len(registered.signature.inputs)} signature inputs = feature service "
        f"{registered.lineage.feature_service.name} v{registered.lineage.feature_service.version}, "
        f"decision threshold {registered.decision_threshold:.4f}, {digests} sha256 digests, fast scorer "
        f"{registered.tags.get('registry.fast_scorer', '?')} (max |diff| "
        f"{registered.tags.get('registry.fast_scorer.max_abs_diff', '?')}), by {registered.registered_by}"
    )
    try:
        promoted = stub.PromoteModelVersion(
            rpb.PromoteModelVersionRequest(name=MODEL_NAME, version=registered.version),
            metadata=_bearer(PROMOTER_TOKEN),
            timeout=300,
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        from grpc_status import rpc_status

        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        gate = rpb.GateResult()
        for detail in status.details if status else []:
            if detail.Is(rpb.GateResult.DESCRIPTOR):
                detail.Unpack(gate)
        console.print(_gate_table(gate, f"PromoteModelVersion v{registered.version}: REFUSED"))
        console.print(f"[yellow]{error.details()}[/yellow]")
        champion = stub.GetModelVersion(
            rpb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=MODEL_NAME, alias="champion")),
            metadata=_bearer(VIEWER_TOKEN),
            timeout=30,
        ).model_version
        console.print(f"the champion stays v{champion.version} (an earlier demo run's model)")
        return registered, champion
    console.print(_gate_table(promoted.gate, f"PromoteModelVersion v{registered.version}: first champion"))
    change = promoted.change
    before = f"v{change.from_version}" if change.HasField("from_version") else "none"
    console.print(
        f"alias champion: {before} -> [bold]v{change.to_version}[/bold] "
        f"(audit record {change.audit_record_id}, by {change.actor})"
    )
    return registered, promoted.model_version


def start_serving(
    supervisor: Supervisor, feature_service: str, registry: str, drift: str, mlflow_url: str
) -> tuple[str, str]:
    """Start the champion slot (seldon-core runtime) and the inference-gateway in front of it; wait
    until the slot serves the champion (digests verified) and the gateway is ready."""
    ports = [free_port() for _ in range(5)]
    data_dir = ROOT / ".run" / "demo" / PROFILE
    model_server_env = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MODEL_SERVER_MODEL_NAME": MODEL_NAME,
        "MODEL_SERVER_ALIAS": "champion",
        "MODEL_SERVER_STATE_DIR": str(data_dir / "model-server-champion"),
        "MODEL_SERVER_CACHE_DIR": str(data_dir / "model-server-cache"),
        "MODEL_SERVER_POLL_INTERVAL_S": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }
    python = str(MODEL_SERVER / ".venv" / "bin" / "python")
    slot_ports = ["--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]

    def drain(_process: Any) -> None:  # the slot's preStop: every serving process reports not ready
        subprocess.run(
            [python, "-m", "model_server", "drain"],
            cwd=MODEL_SERVER,
            env={**os.environ, **model_server_env},
            timeout=30,
            check=True,
            capture_output=True,
        )

    supervisor.start(
        ProcessSpec(
            "model-server-champion",
            [python, "-m", "model_server", "seldon", "--http-port", str(ports[0]), *slot_ports],
            cwd=MODEL_SERVER,
            env={**model_server_env, "VIRTUAL_ENV": None, "PYTHONPATH": None},
            ready=HttpReadiness(f"http://127.0.0.1:{ports[0]}/health/ready"),
            timeout_s=180,
            grace_s=20,
            before_stop=drain,
        ),
        wait=False,
    )
    supervisor.start(
        ProcessSpec(
            "inference-gateway",
            [str(INFERENCE_GATEWAY / ".venv" / "bin" / "python"), "-m", "inference_gateway"],
            cwd=INFERENCE_GATEWAY,
            env={
                "INFERENCE_GATEWAY_HOST": "127.0.0.1",
                "INFERENCE_GATEWAY_PORT": str(ports[3]),
                "INFERENCE_GATEWAY_HTTP_HOST": "127.0.0.1",
                "INFERENCE_GATEWAY_HTTP_PORT": str(ports[4]),
                "INFERENCE_GATEWAY_FEATURE_SERVICE_TARGET": feature_service,
                "INFERENCE_GATEWAY_REGISTRY_TARGET": registry,
                "INFERENCE_GATEWAY_REGISTRY_TOKEN": VIEWER_TOKEN,
                "INFERENCE_GATEWAY_DRIFT_SERVICE_TARGET": drift,
                "INFERENCE_GATEWAY_CHAMPION_URL": f"http://127.0.0.1:{ports[0]}",
                "INFERENCE_GATEWAY_MODEL_PROTOCOL": "seldon",
                "INFERENCE_GATEWAY_MODEL_NAME": MODEL_NAME,
                "INFERENCE_GATEWAY_BUFFER_PATH": str(data_dir / "inference-gateway-buffer.sqlite3"),
                "INFERENCE_GATEWAY_FEATURE_DEADLINE_S": "5",
                "INFERENCE_GATEWAY_MODEL_DEADLINE_S": "5",
                "INFERENCE_GATEWAY_HEALTH_CHECK_INTERVAL_S": "0.5",
                "INFERENCE_GATEWAY_GRACE_PERIOD_S": "5",
                "OMP_NUM_THREADS": "1",
            },
            ready=HttpReadiness(f"http://127.0.0.1:{ports[4]}/readyz"),
            timeout_s=180,
        ),
        wait=False,
    )
    supervisor.wait_ready("drift-service", "model-server-champion", "inference-gateway")
    for name, address in (
        ("model-server-champion", f"http://127.0.0.1:{ports[0]} (seldon-core, Seldon protocol)"),
        ("inference-gateway", f"REST http://127.0.0.1:{ports[4]}, gRPC 127.0.0.1:{ports[3]}"),
    ):
        log = supervisor.log_dir / f"{name}.log"
        console.print(f"{name} pid {supervisor[name].pid} ready on {address} (log: {log})")
    return f"http://127.0.0.1:{ports[4]}", f"127.0.0.1:{ports[3]}"


def held_out_applicants(mlflow_url: str, run_id: str, count: int) -> list[int]:
    """Applicant ids (row numbers of the file) that are not among the run's training rows."""
    response = httpx.get(
        f"{mlflow_url}/get-artifact", params={"path": TRAINING_ROWS, "run_uuid": run_id}, timeout=60
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
    with httpx.Client(base_url=rest_url, timeout=30) as client:
        for applicant in applicants[:SERVED]:
            began = time.perf_counter()
            response = client.post("/v1/predict", json={"applicant_id": applicant})
            elapsed = (time.perf_counter() - began) * 1000
            response.raise_for_status()
            body = response.json()
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
    with grpc.insecure_channel(grpc_target) as channel:
        stub = ipb_grpc.InferenceServiceStub(channel)
        for applicant in applicants[SERVED : 2 * SERVED]:
            began = time.perf_counter()
            answer = stub.Predict(ipb.PredictRequest(applicant_id=applicant), timeout=30)
            elapsed = (time.perf_counter() - began) * 1000
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
            stub.Predict(ipb.PredictRequest(applicant_id=UNKNOWN_APPLICANT), timeout=30)
        except grpc.RpcError as error:
            console.print(f"applicant {UNKNOWN_APPLICANT} (unknown, no request values): {error.code().name}")
    console.print(table)
    console.print("every prediction is logged to the drift-service as an event (LogPredictions, batched)")


# ---------------------------------------------------------------------- drift (issue 6)

DRIFT_MODEL = "credit-risk"
#: Simulated clock of the replays: the normal one on one day, the shifted one on the next.
REPLAY_START = datetime(2025, 3, 1, tzinfo=UTC)
SHIFT_START = REPLAY_START + timedelta(days=1)
TRAINING_ROWS = "training_set/training_rows.parquet"

#: Runs in the training-service's environment (the demo's own has no scikit-learn): loads the run's
#: model through MLflow, takes the applicants the run did not train on (test split + gate window),
#: scores them as they are and with the issue's shift, and writes the rows and scores as JSON.
SCORE_HELD_OUT = """
import json, sys, tempfile
import mlflow, numpy as np, pandas as pd
from mlflow.tracking import MlflowClient
uri, run_id, csv_path, out_path = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
with tempfile.TemporaryDirectory() as tmp:
    trained = pd.read_parquet(client.download_artifacts(run_id, "training_set/training_rows.parquet", tmp))
model_uri = f"runs:/{run_id}/model"
info = mlflow.models.get_model_info(model_uri)
kinds = {c.name: c.type.name for c in info.signature.inputs.inputs}
model = mlflow.sklearn.load_model(model_uri)
frame = pd.read_csv(csv_path)
frame.insert(0, "applicant_id", np.arange(1, len(frame) + 1))  # the ingestion's applicant ids
held = frame[~frame["applicant_id"].isin(trained["applicant_id"])].reset_index(drop=True)

def shifted(f):
    rng = np.random.default_rng(7)
    f = f.copy()
    f["credit_amount"] = (f["credit_amount"] * 1.5).round().astype(int)
    f["age_in_years"] = f["age_in_years"] + 10
    f.loc[rng.random(len(f)) < 0.3, "purpose"] = "business"
    return f

def scored(f):
    f = f.copy()
    f["monthly_installment"] = f["credit_amount"] / f["duration_in_month"]  # the on-demand feature
    x = pd.DataFrame({n: f[n].astype("float64") if k == "double" else f[n].astype(str)
                      for n, k in kinds.items()})
    pd_ = model.predict_proba(x)[:, list(model.classes_).index(1)]
    rows = []
    for i, rec in enumerate(f.to_dict("records")):
        feats = {n: (float(rec[n]) if n == "monthly_installment" else int(rec[n])) if k == "double"
                 else str(rec[n]) for n, k in kinds.items()}
        rows.append({"applicant_id": int(rec["applicant_id"]), "features": feats,
                     "probability_of_default": float(pd_[i])})
    return rows

out = {"threshold": float(info.metadata["decision_threshold"]), "trained_rows": len(trained),
       "normal": scored(held), "shifted": scored(shifted(held))}
json.dump(out, open(out_path, "w"))
"""


def start_scoring(mlflow_url: str, run_id: str, out: Path) -> subprocess.Popen[bytes]:
    """Score the held-out applicants with the run's model, in the training-service's environment."""
    return subprocess.Popen(
        [str(TRAINING_PYTHON), "-c", SCORE_HELD_OUT, mlflow_url, run_id, str(GERMAN_CSV), str(out)],
        cwd=TRAINING_SERVICE,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def start_drift_service(supervisor: Supervisor, mlflow_url: str, *, wait: bool = True) -> tuple[str, str]:
    """Start `python -m drift_service` (its store: SQLite on the embedded profile, PostgreSQL schema
    `drift_demo` on the real one); returns the gRPC target and the reports' base URL."""
    port, report_port = free_port(), free_port()
    env = {
        "DRIFT_SERVICE_PROFILE": PROFILE,
        "DRIFT_SERVICE_DATA_DIR": str(ROOT / ".run" / "demo" / PROFILE / "drift-service"),
        "DRIFT_SERVICE_HOST": "127.0.0.1",
        "DRIFT_SERVICE_PORT": str(port),
        "DRIFT_SERVICE_REPORT_HTTP_PORT": str(report_port),
        "DRIFT_SERVICE_METRICS_PORT": "0",
        "DRIFT_SERVICE_MLFLOW_TRACKING_URI": mlflow_url,
        "DRIFT_SERVICE_WARM_UP": "false",  # Evidently is imported by the first ComputeDrift
        "DRIFT_SERVICE_HEALTH_CHECK_INTERVAL_S": "0.5",
        "DRIFT_SERVICE_GRACE_PERIOD_S": "5",
        "OMP_NUM_THREADS": "1",
    }
    if PROFILE == "real":
        env["DRIFT_SERVICE_POSTGRES_DSN"] = MLFLOW_POSTGRES_DSN
        env["DRIFT_SERVICE_POSTGRES_SCHEMA"] = "drift_demo"
    process = supervisor.start(
        ProcessSpec(
            "drift-service",
            [str(DRIFT_SERVICE / ".venv" / "bin" / "python"), "-m", "drift_service"],
            cwd=DRIFT_SERVICE,
            env=env,
            ready=GrpcReadiness(f"127.0.0.1:{port}"),
            timeout_s=120,
        ),
        wait=wait,
    )
    console.print(
        f"drift-service pid {process.pid} {'SERVING' if wait else 'starting'} on 127.0.0.1:{port}, reports "
        f"on "
        f"http://127.0.0.1:{report_port} (log: {supervisor.log_dir / 'drift-service.log'})"
    )
    return f"127.0.0.1:{port}", f"http://127.0.0.1:{report_port}"


def _value(value: Any) -> values_pb2.FeatureValue:
    if isinstance(value, str):
        return values_pb2.FeatureValue(string_value=value)
    if isinstance(value, int):
        return values_pb2.FeatureValue(int64_value=value)
    return values_pb2.FeatureValue(double_value=value)


def log_replays(
    stub: dpb_grpc.DriftServiceStub, scoring: subprocess.Popen[bytes], scores: Path, version: int
) -> None:
    """Wait for the scores, then log both replays as prediction events (a minute apart each)."""
    _out, err = scoring.communicate(timeout=300)
    if scoring.returncode != 0:
        raise RuntimeError(f"scoring failed ({scoring.returncode}):\n{err.decode()[-3000:]}")
    scored = json.loads(scores.read_text())
    threshold = scored["threshold"]
    table = Table("replay", "applicants", "event times (simulated)", "mean PD", "rejected at threshold")
    run_tag = f"{int(time.time())}"  # event ids unique per demo run: the store keeps earlier runs
    for name, start in (("normal", REPLAY_START), ("shifted", SHIFT_START)):
        rows = scored[name]
        events = [
            dpb.PredictionEvent(
                event_id=f"demo-{run_tag}-{name}-{i:04d}",
                applicant_id=row["applicant_id"],
                features={k: _value(v) for k, v in row["features"].items()},
                probability_of_default=row["probability_of_default"],
                decision=2 if row["probability_of_default"] >= threshold else 1,
                decision_threshold=threshold,
                model_name=DRIFT_MODEL,
                model_version=version,
                event_time=_ts(start + timedelta(minutes=i)),
            )
            for i, row in enumerate(rows)
        ]
        answer = stub.LogPredictions(dpb.LogPredictionsRequest(events=events), timeout=60)
        if answer.rejected or answer.accepted != len(events):
            raise RuntimeError(
                f"{name} replay: {answer.accepted} accepted, rejected {list(answer.rejected)[:3]}"
            )
        pds = [r["probability_of_default"] for r in rows]
        table.add_row(
            name,
            str(len(rows)),
            f"{start:%Y-%m-%d %H:%M} .. {start + timedelta(minutes=len(rows) - 1):%H:%M}",
            f"{sum(pds) / len(pds):.3f}",
            f"{sum(p >= threshold for p in pds) / len(pds):.1%}",
        )
    console.print(
        f"held-out applicants (not among the run's {scored['trained_rows']} training rows) scored with "
        f"the run's model, decision threshold {threshold:.3f}; logged to the drift-service:"
    )
    console.print(table)


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


def compute_drift(stub: dpb_grpc.DriftServiceStub, run_id: str, version: int) -> None:
    """ComputeDrift of both replays against the run's training rows; print tables and verdicts."""
    uri = f"runs:/{run_id}/{TRAINING_ROWS}"
    console.print(
        f"reference: the run's training rows, {uri} (read by the drift-service through MLflow), for the "
        f"replays logged as {DRIFT_MODEL} v{version} (the version registered from this run)"
    )
    for name, start in (("normal", REPLAY_START), ("shifted", SHIFT_START)):
        window = dpb.Window(
            model_name=DRIFT_MODEL,
            model_version=version,
            time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(start + timedelta(days=1))),
        )
        began = time.monotonic()
        response = stub.ComputeDrift(dpb.ComputeDriftRequest(window=window, dataset_uri=uri), timeout=180)
        elapsed = time.monotonic() - began
        (report,) = response.reports
        table = Table(
            "feature",
            "test",
            "statistic",
            "p-value",
            "threshold (adj.)",
            "PSI (band)",
            "drifted",
            title=f"{name} replay: {report.current_row_count} predictions vs {report.reference_row_count} "
            f"training rows ({elapsed:.1f} s)",
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
            f"{name}: {verdict}, drift share {report.drift_share:.2f}; rule: {report.dataset_drift_rule}"
        )
        for trigger in response.trigger_events:
            reasons = "; ".join(r.message for r in trigger.reasons)
            console.print(f"  trigger event {trigger.id}: {reasons}")
        if not response.trigger_events:
            console.print("  no trigger event")
        console.print(f"  HTML report: [link={report.html_report_url}]{report.html_report_url}[/link]")


def main() -> int:
    started = time.monotonic()
    console.print(f"[bold]credit-risk platform demo[/bold] (profile: {PROFILE})")
    step(1, "one locked environment per deployable")
    timed(show_environments)
    step(2, f"ingest the German credit data into the {PROFILE} profile's offline store")
    timed(ingest)
    observability = demo_observability.start(ROOT / ".run")  # OTLP receiver -> .run/traces/ (issue 10)
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
        step(7, "start the MLflow tracking server and the training-service (their own processes)")
        mlflow_url = timed(lambda: start_mlflow(supervisor))
        training_target = timed(lambda: start_training_service(supervisor, target, mlflow_url))
        with grpc.insecure_channel(training_target) as channel:
            training_stub = tpb_grpc.TrainingServiceStub(channel)
            step(
                8,
                "train the default model through the training-service (its training set: feature-service)",
            )
            run_id = timed(lambda: train_default_model(training_stub, mlflow_url))
        scores = ROOT / ".run" / "demo" / PROFILE / "held_out_scores.json"
        scoring = start_scoring(mlflow_url, run_id, scores)  # in parallel with the next steps
        step(9, "start the registry-gateway; register the run's model and promote it through the gate")
        registry_target = start_registry_gateway(supervisor, target, mlflow_url)
        drift_target, _reports = start_drift_service(supervisor, mlflow_url, wait=False)  # for step 10
        timed(lambda: wait_for_registry(supervisor, registry_target))
        with grpc.insecure_channel(registry_target) as channel:
            registry_stub = rpb_grpc.ModelRegistryServiceStub(channel)
            registered, _champion = timed(lambda: register_and_promote(registry_stub, run_id))
        step(10, "serve the champion: model-server slot + inference-gateway; predict over REST and gRPC")
        rest_url, gateway_target = timed(
            lambda: start_serving(supervisor, target, registry_target, drift_target, mlflow_url)
        )
        applicants = held_out_applicants(mlflow_url, run_id, 2 * SERVED)
        timed(lambda: serve_predictions(rest_url, gateway_target, applicants))
        demo_observability.show(observability, rest_url, supervisor, applicants[0])  # trace id, /metrics
        step(11, "log held-out applicants scored by the trained model to the drift-service (replays)")
        with grpc.insecure_channel(drift_target) as channel:
            drift_stub = dpb_grpc.DriftServiceStub(channel)
            timed(lambda: log_replays(drift_stub, scoring, scores, registered.version))
            step(12, "ComputeDrift: a normal and a shifted replay against the run's training dataset")
            timed(lambda: compute_drift(drift_stub, run_id, registered.version))
        console.print(
            "stopping the inference-gateway, the model-server slot (drain first), the drift-service, the "
            "registry-gateway, the training-service, the MLflow server and the feature-service "
            "(SIGTERM, drain)"
        )
    console.rule("[bold]What comes next")
    console.print(
        "The feature-service serves online features and point-in-time training sets; the training-service "
        "trains through it and records every run in MLflow; the registry-gateway registers a run's model "
        "with its checks and gates promotions on the held-out gate window; the model-server slot follows "
        "the champion alias and verifies the registry's digests; the inference-gateway enriches, routes and "
        "logs every prediction to the drift-service, which computes drift and raises retraining triggers. "
        "Next: the closed loop with Kubeflow pipelines (issue 9: a trigger starts retraining, the gate "
        "decides, the slot swaps), then observability (issue 10: traces, metrics and dashboards across "
        "the services)."
    )
    console.print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

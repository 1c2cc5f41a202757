"""The registry-gateway's core: registration with checks, reads, alias moves, the promotion gate,
rollback, the alias change stream and the audit trail, over the MLflow model registry.

The gateway is the only writer of the registry. Every write runs inside the audit store's write
lock (process lock + database lock, :meth:`registry_gateway.audit.AuditStore.locked`), which also
appends its audit record in the same transaction: 50 parallel registrations get 50 distinct
version numbers, and an alias never moves twice at once. Reads go to MLflow each time (no cache),
so a moved alias is seen by the next read.

Blocking work (MLflow REST calls, model loading, scoring, the database) runs in worker threads;
the feature-service calls are asynchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from creditrisk.common.v1 import refs_pb2, time_range_pb2, values_pb2
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_kit import FailedPrecondition, InvalidArgument, PreconditionViolation, Unavailable
from creditrisk_telemetry import current_trace_id
from google.protobuf import timestamp_pb2
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from opentelemetry import trace

from registry_gateway import audit as au
from registry_gateway import gate as gt
from registry_gateway.auth import Caller, Role, require
from registry_gateway.errors import (
    GateRefused,
    RegistryNotFound,
    alias_not_found,
    model_not_found,
    version_not_found,
)
from registry_gateway.features import EVENT_TIMESTAMP, FeatureServiceClient
from registry_gateway.models import (
    FAST_SCORER_DIR,
    NUMERIC_TYPES,
    OnnxFastScorer,
    SklearnModel,
    digest_tags,
    digests_from_tags,
    read_mlmodel,
    sha256_tree,
    to_model_input,
)

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer("registry_gateway")
T = TypeVar("T")

CHAMPION = "champion"
LABEL = "creditability"
TAG = "registry."
RESERVED_TAG_PREFIX = TAG
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_ALIAS = re.compile(r"^[a-z0-9_-]{1,64}$")
_MLFLOW_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")
REFERENCE_SAMPLE_ROWS = 200
TRAINING_ROWS_PATH = "training_set/training_rows.parquet"
_STATUS = {
    "PENDING_REGISTRATION": pb.MODEL_VERSION_STATUS_PENDING_REGISTRATION,
    "FAILED_REGISTRATION": pb.MODEL_VERSION_STATUS_FAILED_REGISTRATION,
    "READY": pb.MODEL_VERSION_STATUS_READY,
}
_VALUE_TYPE_KINDS = {
    values_pb2.VALUE_TYPE_INT64: NUMERIC_TYPES,
    values_pb2.VALUE_TYPE_DOUBLE: NUMERIC_TYPES,
    values_pb2.VALUE_TYPE_BOOL: frozenset({"boolean", *NUMERIC_TYPES}),
    values_pb2.VALUE_TYPE_STRING: frozenset({"string"}),
}
_SIG_VALUE_TYPE = {"double": 2, "float": 2, "long": 1, "integer": 1, "string": 3, "boolean": 4}


def _ts(value: datetime | int | float | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    else:
        ts.FromMilliseconds(int(value))
    return ts


def _check_name(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    if not _NAME.match(value):
        raise InvalidArgument(
            field, "letters, digits, '.', '_' and '-' only, starting with a letter or digit"
        )
    return value


def _check_alias(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    if not _ALIAS.match(value) or _MLFLOW_RESERVED_ALIAS.match(value):
        raise InvalidArgument(field, "lowercase letters, digits, '-' and '_' (not 'latest' nor 'v<digits>')")
    return value


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


@dataclass(frozen=True)
class CheckedModel:
    """A run's model after the registration checks (cached per run and path)."""

    source: str
    model_id: str | None
    run_id: str
    experiment_id: str
    tags: dict[str, str]
    digests: dict[str, str]


class RegistryCore:
    """Everything the RPCs do (see the module docstring).

    Args:
        tracking_uri: the MLflow tracking server.
        store: the audit store (migrated).
        features: the feature-service client.
        gate: the gate's rule.
        label_view: the label feature view of the gate window.
        default_gate_window_days: when a run records none.
        cache_dir: where model artifacts are downloaded (a temporary folder when empty).
        watch_poll_interval_s: how often watchers look for other gateway processes' changes.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        store: au.AuditStore,
        features: FeatureServiceClient,
        gate: gt.GateConfig,
        label_view: str = "credit_label",
        default_gate_window_days: int = 60,
        cache_dir: str = "",
        watch_poll_interval_s: float = 1.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.store = store
        self.features = features
        self.gate = gate
        self.label_view = label_view
        self.default_gate_window_days = default_gate_window_days
        self._own_cache = not cache_dir
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="registry-gateway-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.watch_poll_interval_s = watch_poll_interval_s
        self._checked: dict[tuple[str, str, str, str], CheckedModel] = {}
        self._check_locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}
        self._models: dict[tuple[str, int], tuple[SklearnModel, list[Any]]] = {}
        self._model_lock = threading.Lock()
        self._changed = asyncio.Event()
        self._closed = False

    # --- plumbing -----------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except RestException as exc:
            if exc.get_http_status_code() >= 500:
                raise Unavailable("MLflow tracking server failed") from exc
            raise
        except MlflowException as exc:
            if "Max retries exceeded" in str(exc) or "Connection" in str(exc):
                raise Unavailable("MLflow tracking server unavailable") from exc
            raise

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def mlflow_healthy(self) -> bool:
        """Readiness: MLflow answers ``GET /health``."""
        import urllib.request

        def check() -> bool:
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)

        return await asyncio.to_thread(check)

    async def audit_healthy(self) -> bool:
        """Readiness: the audit database answers."""
        return await asyncio.to_thread(self.store.ping)

    async def close(self) -> None:
        """End watchers, release the downloads and the feature-service channel."""
        self._closed = True
        self._notify()
        await self.features.close()
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def _registered_model(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                raise model_not_found(name) from exc
            raise

    def _model_version(self, name: str, version: int) -> Any:
        self._registered_model(name)
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise version_not_found(name, version) from exc
            raise

    def artifact_location(self, source: str) -> str:
        """Where a version's source lives (``models:/<model id>`` resolved to the logged model's
        artifact location on this tracking server)."""
        if source.startswith("models:/m-"):
            return str(self.client.get_logged_model(source.removeprefix("models:/")).artifact_location)
        return source

    def _alias_holder(self, name: str, alias: str) -> int | None:
        aliases = dict(self._registered_model(name).aliases or {})
        return int(aliases[alias]) if alias in aliases else None

    def _audit(self, conn: Any, caller: Caller, action: int, name: str, **kwargs: Any) -> au.AuditRecord:
        return self.store.append(
            conn,
            au.NewRecord(
                actor=caller.subject,
                role=int(caller.role),
                action=action,
                model_name=name,
                trace_id=current_trace_id(),
                **kwargs,
            ),
        )

    # --- conversion ---------------------------------------------------------------------------

    def _version_pb(self, mv: Any, run: Any | None = None) -> pb.ModelVersion:
        tags = dict(mv.tags or {})
        if run is None and mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
            except MlflowException:
                run = None
        message = pb.ModelVersion(
            name=mv.name,
            version=int(mv.version),
            aliases=sorted(mv.aliases or []),
            run_id=mv.run_id or "",
            source=mv.source or "",
            status=_STATUS.get(str(mv.status), pb.MODEL_VERSION_STATUS_UNSPECIFIED),
            create_time=_ts(mv.creation_timestamp),
            update_time=_ts(mv.last_updated_timestamp),
            description=mv.description or "",
            tags=tags,
            artifact_digests=digests_from_tags(tags),
            registered_by=tags.get(f"{TAG}registered_by", ""),
        )
        if run is not None:
            message.metrics.update({k: float(v) for k, v in run.data.metrics.items() if np.isfinite(v)})
        message.lineage.CopyFrom(
            pb.Lineage(
                run_id=mv.run_id or "",
                experiment_id=tags.get(f"{TAG}experiment_id", ""),
                training_dataset=refs_pb2.DatasetRef(
                    source=tags.get(f"{TAG}dataset.source", ""), digest=tags.get(f"{TAG}dataset.digest", "")
                ),
                feature_service=refs_pb2.FeatureServiceRef(
                    name=tags.get(f"{TAG}feature_service.name", ""),
                    version=tags.get(f"{TAG}feature_service.version", ""),
                ),
                code_version=tags.get(f"{TAG}code_version", ""),
            )
        )
        for col in json.loads(tags.get(f"{TAG}signature", "[]")):
            message.signature.inputs.append(
                pb.SignatureColumn(
                    name=col["name"], value_type=_SIG_VALUE_TYPE.get(col["type"], 0), required=col["required"]
                )
            )
        if f"{TAG}decision_threshold" in tags:
            message.decision_threshold = float(tags[f"{TAG}decision_threshold"])
        return message

    def _change_pb(self, record: au.AuditRecord) -> pb.AliasChange:
        change = pb.AliasChange(
            model_name=record.model_name,
            alias=record.alias,
            change_time=_ts(record.time),
            actor=record.actor,
            sequence=record.alias_seq or 0,
            action=record.action,
            audit_record_id=record.id,
        )
        if record.from_version is not None:
            change.from_version = record.from_version
        if record.to_version is not None:
            change.to_version = record.to_version
        return change

    def record_pb(self, record: au.AuditRecord) -> pb.AuditRecord:
        """An audit record as its message."""
        message = pb.AuditRecord(
            id=record.id,
            time=_ts(record.time),
            actor=record.actor,
            role=record.role,
            action=record.action,
            model_name=record.model_name,
            alias=record.alias,
            figures=record.figures,
            reason=record.reason,
            trace_id=record.trace_id,
        )
        if record.from_version is not None:
            message.from_version = record.from_version
        if record.to_version is not None:
            message.to_version = record.to_version
        return message

    # --- registration -------------------------------------------------------------------------

    def _resolve_model(self, run: Any, artifact_path: str) -> tuple[str, str | None, str]:
        """``(source URI, logged model id, artifact URI to download)`` of a run's model."""
        run_id = run.info.run_id
        models = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"name = '{artifact_path}' AND source_run_id = '{run_id}'",
        )
        if models:  # MLflow 3: the model is a logged model of the run
            model = max(models, key=lambda m: m.creation_timestamp or 0)
            return f"models:/{model.model_id}", model.model_id, model.artifact_location
        uri = f"{run.info.artifact_uri}/{artifact_path}"
        names = {f.path for f in self.client.list_artifacts(run_id, artifact_path)}
        if f"{artifact_path}/MLmodel" in names or "MLmodel" in names:  # a model logged as run artifacts
            return uri, None, uri
        raise RegistryNotFound(
            "artifact path",
            f"{run_id}/{artifact_path}",
            "ARTIFACT_NOT_FOUND",
            run_id=run_id,
            path=artifact_path,
        )

    def _download(self, uri: str, dst: Path) -> Path:
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )

    def _check_run_model(
        self, run_id: str, artifact_path: str, fs_name: str, fs_version: str
    ) -> tuple[Any, Any, Path, Any]:
        """Blocking part of the checks up to the downloaded model: run, status, model, signature."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if _is_not_found(exc) or "not found" in str(exc).lower():
                raise RegistryNotFound("run", run_id, "RUN_NOT_FOUND", run_id=run_id) from exc
            raise
        if run.info.status != "FINISHED":
            raise FailedPrecondition(
                f"run {run_id!r} is {run.info.status}, not FINISHED",
                [PreconditionViolation("RUN_NOT_FINISHED", run_id, "register a finished run")],
            )
        source, model_id, download_uri = self._resolve_model(run, artifact_path)
        work = Path(tempfile.mkdtemp(prefix="register-", dir=self.cache_dir))
        model_dir = self._download(download_uri, work / "model")
        meta = read_mlmodel(model_dir)
        return run, (source, model_id), model_dir, meta

    async def _checked_model(
        self, run_id: str, artifact_path: str, fs_name: str, fs_version: str
    ) -> CheckedModel:
        key = (run_id, artifact_path, fs_name, fs_version)
        lock = self._check_locks.setdefault(key, asyncio.Lock())
        async with lock:  # single flight: concurrent registrations of one run check it once
            if key not in self._checked:
                self._checked[key] = await self._check(run_id, artifact_path, fs_name, fs_version)
            return self._checked[key]

    async def _check(self, run_id: str, artifact_path: str, fs_name: str, fs_version: str) -> CheckedModel:
        with _TRACER.start_as_current_span("registry.check_model") as span:
            span.set_attribute("registry.run_id", run_id)
            run, (source, model_id), model_dir, meta = await self._run(
                self._check_run_model, run_id, artifact_path, fs_name, fs_version
            )
            try:
                return await self._check_downloaded(
                    run, source, model_id, model_dir, meta, fs_name, fs_version
                )
            finally:
                shutil.rmtree(model_dir.parent, ignore_errors=True)

    async def _check_downloaded(
        self,
        run: Any,
        source: str,
        model_id: str | None,
        model_dir: Path,
        meta: Any,
        fs_name: str,
        fs_version: str,
    ) -> CheckedModel:
        run_id = run.info.run_id
        tags = dict(run.data.tags)
        subject = f"{run_id}/{model_dir.name}"
        if meta.signature is None:
            raise FailedPrecondition(
                f"the model of run {run_id!r} has no signature",
                [PreconditionViolation("NO_SIGNATURE", subject, "log the model with a signature")],
            )
        threshold = meta.metadata.get("decision_threshold", run.data.metrics.get("decision_threshold"))
        if threshold is None or not 0.0 <= float(threshold) <= 1.0:
            raise FailedPrecondition(
                f"the model of run {run_id!r} has no decision threshold in [0, 1]",
                [
                    PreconditionViolation(
                        "NO_DECISION_THRESHOLD", subject, "record metadata['decision_threshold']"
                    )
                ],
            )
        run_fs = tags.get("feature_service.name", "")
        run_fs_version = tags.get("feature_service.version", "")
        dataset = next(
            (
                d
                for d in (run.inputs.dataset_inputs if run.inputs else [])
                if any(t.value == "training" for t in d.tags)
            ),
            None,
        ) or next(iter(run.inputs.dataset_inputs if run.inputs else []), None)
        missing = [
            what
            for what, ok in (
                ("run tag feature_service.name", run_fs),
                ("run tag feature_service.version", run_fs_version),
                ("a training dataset input (mlflow.log_input)", dataset is not None),
            )
            if not ok
        ]
        if missing:
            raise FailedPrecondition(
                f"run {run_id!r} lacks lineage: {', '.join(missing)}",
                [PreconditionViolation("NO_LINEAGE", run_id, f"record {m}") for m in missing],
            )
        if run_fs != fs_name or (fs_version and run_fs_version != fs_version):
            raise FailedPrecondition(
                f"feature service {fs_name}:{fs_version or '*'} does not match the run's lineage "
                f"{run_fs}:{run_fs_version}",
                [PreconditionViolation("FEATURE_SERVICE_MISMATCH", run_id, "name the run's feature service")],
            )
        definition = await self.features.get_feature_service(fs_name)
        if definition.version != run_fs_version:
            raise FailedPrecondition(
                f"feature service {fs_name!r} is version {definition.version}; the model was trained on "
                f"version {run_fs_version}",
                [
                    PreconditionViolation(
                        "FEATURE_SERVICE_VERSION", fs_name, "retrain on the registered version"
                    )
                ],
            )
        self._check_signature(run_id, meta.signature, definition.features, fs_name)
        digests, fidelity = await self._run(self._digests_and_fidelity, run, model_dir, meta)
        version_tags = {
            f"{TAG}experiment_id": run.info.experiment_id,
            f"{TAG}feature_service.name": fs_name,
            f"{TAG}feature_service.version": run_fs_version,
            f"{TAG}dataset.digest": dataset.dataset.digest if dataset else "",
            f"{TAG}dataset.source": dataset.dataset.source if dataset else "",
            f"{TAG}dataset.name": dataset.dataset.name if dataset else "",
            f"{TAG}code_version": tags.get("code_version", ""),
            f"{TAG}decision_threshold": repr(float(threshold)),
            f"{TAG}signature": json.dumps(
                [{"name": c.name, "type": c.type, "required": c.required} for c in meta.signature]
            ),
            f"{TAG}gate_window_days": str(run.data.params.get("gate_window_days", "")),
            **fidelity,
            **digest_tags(digests),
        }
        return CheckedModel(source, model_id, run_id, run.info.experiment_id, version_tags, digests)

    def _check_signature(
        self, run_id: str, signature: list[Any], features: dict[str, int], fs_name: str
    ) -> None:
        names = {c.name: c for c in signature}
        violations = [
            PreconditionViolation(
                "SIGNATURE_MISSING_FEATURE", name, f"feature of {fs_name} not in the signature"
            )
            for name in sorted(set(features) - set(names))
        ]
        violations += [
            PreconditionViolation(
                "SIGNATURE_EXTRA_INPUT", name, f"signature input not a feature of {fs_name}"
            )
            for name in sorted(set(names) - set(features))
        ]
        violations += [
            PreconditionViolation(
                "SIGNATURE_TYPE_MISMATCH",
                name,
                f"signature type {names[name].type} does not take {values_pb2.ValueType.Name(vt)}",
            )
            for name, vt in sorted(features.items())
            if name in names and names[name].type not in _VALUE_TYPE_KINDS.get(vt, frozenset())
        ]
        if violations:
            described = ", ".join(
                f"{v.type.removeprefix('SIGNATURE_').lower()}: {v.subject}" for v in violations
            )
            raise FailedPrecondition(
                f"the signature of run {run_id!r} does not match feature service {fs_name!r}: {described}",
                violations,
            )

    def _digests_and_fidelity(
        self, run: Any, model_dir: Path, meta: Any
    ) -> tuple[dict[str, str], dict[str, str]]:
        digests = sha256_tree(model_dir, "model")
        run_id = run.info.run_id
        scorer_files = {f.path for f in self.client.list_artifacts(run_id, FAST_SCORER_DIR)}
        if not scorer_files:
            return digests, {f"{TAG}fast_scorer": "absent"}
        scorer_dir = self._download(f"{run.info.artifact_uri}/{FAST_SCORER_DIR}", model_dir.parent / "scorer")
        digests.update(sha256_tree(scorer_dir, FAST_SCORER_DIR))
        fast = OnnxFastScorer(scorer_dir)
        tolerance = fast.tolerance
        if tolerance is None and "fast_scorer.tolerance" in run.data.tags:
            tolerance = float(run.data.tags["fast_scorer.tolerance"])
        if tolerance is None:
            raise FailedPrecondition(
                f"the fast scorer of run {run_id!r} records no tolerance",
                [PreconditionViolation("FAST_SCORER", run_id, "record scorer.json 'tolerance'")],
            )
        try:
            model = SklearnModel(model_dir, meta)
        except ValueError as exc:
            raise FailedPrecondition(
                str(exc), [PreconditionViolation("UNTRUSTED_TYPES", run_id, "use the allowed types")]
            ) from exc
        sample = self._reference_sample(run, model_dir)
        model_input = to_model_input(sample, meta.signature)
        diff = float(np.max(np.abs(fast.predict_default(model_input) - model.predict_default(model_input))))
        if not diff <= tolerance:
            raise FailedPrecondition(
                f"the fast scorer of run {run_id!r} disagrees with the scikit-learn flavor: max |diff| "
                f"{diff:.3g} over {len(model_input)} reference rows exceeds its tolerance {tolerance:.3g}",
                [PreconditionViolation("FAST_SCORER_MISMATCH", run_id, "re-export the fast scorer")],
            )
        return digests, {
            f"{TAG}fast_scorer": "checked",
            f"{TAG}fast_scorer.max_abs_diff": repr(diff),
            f"{TAG}fast_scorer.tolerance": repr(tolerance),
            f"{TAG}fast_scorer.rows_checked": str(len(model_input)),
        }

    def _reference_sample(self, run: Any, model_dir: Path) -> pd.DataFrame:
        """Up to 200 rows (seeded) of the run's logged training rows, else the model's input example."""
        files = {f.path for f in self.client.list_artifacts(run.info.run_id, "training_set")}
        if TRAINING_ROWS_PATH in files:
            path = self._download(f"{run.info.artifact_uri}/{TRAINING_ROWS_PATH}", model_dir.parent / "rows")
            frame = pd.read_parquet(path)
            if len(frame) > REFERENCE_SAMPLE_ROWS:
                frame = frame.sample(REFERENCE_SAMPLE_ROWS, random_state=0)
            return frame
        example = model_dir / "input_example.json"
        if example.exists():
            data = json.loads(example.read_text())
            return (
                pd.DataFrame(data["data"], columns=data["columns"])
                if "columns" in data
                else pd.DataFrame(data)
            )
        raise FailedPrecondition(
            f"run {run.info.run_id!r} has no reference rows for the fast scorer check",
            [
                PreconditionViolation(
                    "FAST_SCORER", run.info.run_id, f"log {TRAINING_ROWS_PATH} or an input example"
                )
            ],
        )

    async def register(self, caller: Caller, request: pb.RegisterModelVersionRequest) -> pb.ModelVersion:
        """RegisterModelVersion (see the contract)."""
        require(caller, Role.PROMOTER, "RegisterModelVersion")
        if not request.run_id:
            raise InvalidArgument("run_id", "required")
        if not request.artifact_path:
            raise InvalidArgument("artifact_path", "required")
        name = _check_name(request.registered_model_name, "registered_model_name")
        if not request.HasField("feature_service") or not request.feature_service.name:
            raise InvalidArgument("feature_service.name", "required")
        for key in request.tags:
            if key.startswith(RESERVED_TAG_PREFIX):
                raise InvalidArgument(f"tags.{key}", f"the prefix {RESERVED_TAG_PREFIX!r} is reserved")
        checked = await self._checked_model(
            request.run_id,
            request.artifact_path,
            request.feature_service.name,
            request.feature_service.version,
        )
        tags = {**dict(request.tags), **checked.tags, f"{TAG}registered_by": caller.subject}

        def write() -> Any:
            with self.store.locked() as conn:
                try:
                    self.client.create_registered_model(name)
                except MlflowException as exc:
                    if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                        raise
                mv = self.client.create_model_version(
                    name=name,
                    source=checked.source,
                    run_id=checked.run_id,
                    tags=tags,
                    description=request.description or None,
                    model_id=checked.model_id,
                )
                self._audit(
                    conn,
                    caller,
                    au.REGISTER,
                    name,
                    to_version=int(mv.version),
                    reason=request.description,
                    figures={"digests": float(len(checked.digests))},
                )
                return mv

        with _TRACER.start_as_current_span("registry.register"):
            mv = await self._run(write)
        return await self._run(self._version_pb, mv)

    # --- reads --------------------------------------------------------------------------------

    async def list_models(self, offset: int, limit: int) -> tuple[list[pb.RegisteredModel], bool]:
        """ListRegisteredModels: by name."""

        def read() -> tuple[list[pb.RegisteredModel], bool]:
            found: list[Any] = []
            token = None
            while len(found) < offset + limit + 1:
                page = self.client.search_registered_models(
                    max_results=1000, order_by=["name ASC"], page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
            out = []
            for rm in found[offset : offset + limit]:
                latest = self.client.search_model_versions(
                    f"name = '{rm.name}'", max_results=1, order_by=["version_number DESC"]
                )
                out.append(
                    pb.RegisteredModel(
                        name=rm.name,
                        description=rm.description or "",
                        tags=dict(rm.tags or {}),
                        aliases={k: int(v) for k, v in (rm.aliases or {}).items()},
                        latest_version=int(latest[0].version) if latest else 0,
                        create_time=_ts(rm.creation_timestamp),
                        update_time=_ts(rm.last_updated_timestamp),
                    )
                )
            return out, len(found) > offset + limit

        return await self._run(read)

    async def list_versions(self, name: str, offset: int, limit: int) -> tuple[list[pb.ModelVersion], bool]:
        """ListModelVersions: newest first."""
        _check_name(name, "name")

        def read() -> tuple[list[pb.ModelVersion], bool]:
            aliases: dict[int, list[str]] = {}
            for alias, version in (self._registered_model(name).aliases or {}).items():
                aliases.setdefault(int(version), []).append(alias)
            found = list(
                self.client.search_model_versions(
                    f"name = '{name}'", max_results=offset + limit + 1, order_by=["version_number DESC"]
                )
            )
            page = [self._version_pb(mv) for mv in found[offset : offset + limit]]
            for message in page:  # search results carry no aliases: take them from the model
                del message.aliases[:]
                message.aliases.extend(sorted(aliases.get(message.version, [])))
            return page, len(found) > offset + limit

        return await self._run(read)

    async def get_version(self, ref: refs_pb2.ModelRef) -> pb.ModelVersion:
        """GetModelVersion by number or alias (MODEL / VERSION / ALIAS_NOT_FOUND)."""
        name = _check_name(ref.name, "model.name")
        which = ref.WhichOneof("version_selector")
        if which is None:
            raise InvalidArgument("model.version_selector", "set version or alias")
        if which == "version" and ref.version < 1:
            raise InvalidArgument("model.version", "must be >= 1")

        def read() -> pb.ModelVersion:
            if which == "alias":
                holder = self._alias_holder(name, ref.alias)
                if holder is None:
                    raise alias_not_found(name, ref.alias)
                return self._version_pb(self._model_version(name, holder))
            return self._version_pb(self._model_version(name, ref.version))

        return await self._run(read)

    # --- aliases ------------------------------------------------------------------------------

    def _move(
        self,
        caller: Caller,
        action: int,
        name: str,
        alias: str,
        version: int | None,
        reason: str,
        figures: dict[str, float] | None = None,
        expect: tuple[int | None] | None = None,
    ) -> au.AuditRecord:
        """Move (or delete, ``version`` None) an alias under the write lock, with its audit record."""
        with self.store.locked() as conn:
            before = self._alias_holder(name, alias)
            if expect is not None and before != expect[0]:
                raise FailedPrecondition(
                    f"alias {name}@{alias} moved while the gate ran (now {before}); evaluate again",
                    [PreconditionViolation("ALIAS_MOVED", f"{name}@{alias}", "retry the promotion")],
                )
            if version is None:
                if before is None:
                    raise alias_not_found(name, alias)
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, str(version))
            return self._audit(
                conn,
                caller,
                action,
                name,
                alias=alias,
                from_version=before,
                to_version=version,
                reason=reason,
                figures=figures or {},
            )

    def _ready_version(self, name: str, version: int) -> Any:
        mv = self._model_version(name, version)
        if str(mv.status) != "READY":
            raise FailedPrecondition(
                f"model version {name}/{version} is {mv.status}, not READY",
                [PreconditionViolation("VERSION_NOT_READY", f"{name}/{version}", "wait for READY")],
            )
        return mv

    async def set_alias(self, caller: Caller, request: pb.SetAliasRequest) -> pb.AliasChange:
        """SetAlias: any alias but champion."""
        require(caller, Role.PROMOTER, "SetAlias")
        name = _check_name(request.name, "name")
        alias = _check_alias(request.alias, "alias")
        if alias == CHAMPION:
            raise FailedPrecondition(
                "the champion alias moves only by PromoteModelVersion or RollbackChampion",
                [PreconditionViolation("CHAMPION_ALIAS", f"{name}@{CHAMPION}", "use PromoteModelVersion")],
            )
        if request.version < 1:
            raise InvalidArgument("version", "required, >= 1")

        def write() -> au.AuditRecord:
            self._ready_version(name, request.version)
            return self._move(caller, au.SET_ALIAS, name, alias, request.version, request.reason)

        record = await self._run(write)
        self._notify()
        return self._change_pb(record)

    async def delete_alias(self, caller: Caller, request: pb.DeleteAliasRequest) -> pb.AliasChange:
        """DeleteAlias (admin, reason required)."""
        require(caller, Role.ADMIN, "DeleteAlias")
        name = _check_name(request.name, "name")
        if not request.alias:
            raise InvalidArgument("alias", "required")
        if not request.reason.strip():
            raise InvalidArgument("reason", "required")

        def write() -> au.AuditRecord:
            self._registered_model(name)
            return self._move(caller, au.DELETE_ALIAS, name, request.alias, None, request.reason)

        record = await self._run(write)
        self._notify()
        return self._change_pb(record)

    # --- the gate -----------------------------------------------------------------------------

    def _loaded(self, mv: Any) -> tuple[SklearnModel, list[Any]]:
        """The scikit-learn flavor of a version, its files checked against the digest tags."""
        key = (mv.name, int(mv.version))
        with self._model_lock:
            if key in self._models:
                return self._models[key]
        work = Path(tempfile.mkdtemp(prefix="gate-", dir=self.cache_dir))
        try:
            import mlflow.artifacts

            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=self.artifact_location(mv.source),
                    dst_path=str(work),
                    tracking_uri=self.tracking_uri,
                )
            )
            expected = {k: v for k, v in digests_from_tags(mv.tags or {}).items() if k.startswith("model/")}
            actual = sha256_tree(local, "model")
            if expected and actual != expected:
                changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
                raise FailedPrecondition(
                    f"artifacts of {mv.name}/{mv.version} differ from their recorded sha256 digests: "
                    f"{changed}",
                    [
                        PreconditionViolation(
                            "DIGEST_MISMATCH", f"{mv.name}/{mv.version}", "re-register the run"
                        )
                    ],
                )
            meta = read_mlmodel(local)
            loaded = (SklearnModel(local, meta), meta.signature or [])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self._model_lock:
            self._models[key] = loaded
        return loaded

    async def _window(
        self, challenger: Any
    ) -> tuple[datetime, datetime, dict[tuple[str, str], pd.DataFrame]]:
        """The gate window of the challenger's run and its labelled rows per feature service."""
        run = await self._run(self.client.get_run, challenger.run_id)
        days = int(run.data.params.get("gate_window_days") or self.default_gate_window_days)
        tags = dict(challenger.tags or {})
        fs = (tags.get(f"{TAG}feature_service.name", ""), tags.get(f"{TAG}feature_service.version", ""))
        anchor = run.data.tags.get("gate_window.end")
        if anchor:
            end = pd.Timestamp(anchor).tz_convert("UTC").to_pydatetime()
            start = end - timedelta(days=days)
            fetch_start, fetch_end = start, end + timedelta(microseconds=1)
            rows = await self._rows(fs, fetch_start, fetch_end)
        else:  # a model logged by hand: the latest labelled application anchors the window
            fetch_start, fetch_end = datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC)
            rows = await self._rows(fs, fetch_start, fetch_end)
            if rows.empty:
                raise self._too_few(0)
            end = rows[EVENT_TIMESTAMP].max().to_pydatetime()
            start = end - timedelta(days=days)
        rows = rows[
            (rows[EVENT_TIMESTAMP] > pd.Timestamp(start)) & (rows[EVENT_TIMESTAMP] <= pd.Timestamp(end))
        ]
        return start, end + timedelta(microseconds=1), {fs: rows.reset_index(drop=True)}

    async def _rows(self, fs: tuple[str, str], start: datetime, end: datetime) -> pd.DataFrame:
        rows = await self.features.labelled_rows(
            feature_service=fs[0], version=fs[1], label_view=self.label_view, start=start, end=end
        )
        if LABEL in rows:
            rows = rows[rows[LABEL].notna()]
        return rows

    def _too_few(self, rows: int) -> FailedPrecondition:
        return FailedPrecondition(
            f"the gate window has {rows} labelled rows with both classes; the gate needs at least "
            f"{self.gate.min_rows}",
            [PreconditionViolation("GATE_WINDOW_TOO_SMALL", "gate window", "wait for more labels")],
        )

    async def _evaluate(
        self, name: str, version: int, alias: str
    ) -> tuple[gt.Outcome, pb.GateResult, int | None]:
        with _TRACER.start_as_current_span("registry.gate") as span:
            span.set_attribute("registry.model", name)
            span.set_attribute("registry.version", version)
            challenger = await self._run(self._ready_version, name, version)
            holder = await self._run(self._alias_holder, name, alias)
            if holder == version:
                raise FailedPrecondition(
                    f"{name}/{version} already holds {alias!r}",
                    [PreconditionViolation("ALREADY_HOLDS_ALIAS", f"{name}@{alias}", "nothing to promote")],
                )
            champion = await self._run(self._model_version, name, holder) if holder is not None else None
            start, end, frames = await self._window(challenger)
            rows = next(iter(frames.values()))
            if champion is not None:
                c_fs = (
                    champion.tags.get(f"{TAG}feature_service.name", ""),
                    champion.tags.get(f"{TAG}feature_service.version", ""),
                )
                if c_fs not in frames:
                    other = await self._rows(c_fs, start, end)
                    keys = ["applicant_id", EVENT_TIMESTAMP]
                    rows = rows.merge(other[keys], on=keys)
                    frames[c_fs] = other.merge(rows[keys], on=keys)
            y = rows[LABEL].astype(np.int64).to_numpy() if len(rows) else np.array([], dtype=np.int64)
            if len(y) < self.gate.min_rows or len(np.unique(y)) < 2:
                raise self._too_few(len(y))

            def score(mv: Any, frame: pd.DataFrame) -> np.ndarray:
                model, signature = self._loaded(mv)
                return model.predict_default(to_model_input(frame, signature))

            p_ch = await self._run(score, challenger, rows)
            c_threshold = float(challenger.tags[f"{TAG}decision_threshold"])
            champ = None
            if champion is not None:
                frame = frames.get(c_fs, rows)
                p_h = await self._run(score, champion, frame)
                champ = (int(champion.version), p_h, float(champion.tags[f"{TAG}decision_threshold"]))
            outcome = gt.evaluate(self.gate, y, (version, p_ch, c_threshold), champ)
            span.set_attribute("registry.gate.passed", outcome.passed)
            return outcome, self._gate_pb(name, alias, outcome, start, end), holder

    def _gate_pb(self, name: str, alias: str, o: gt.Outcome, start: datetime, end: datetime) -> pb.GateResult:
        def score(s: gt.Score) -> pb.GateScore:
            return pb.GateScore(
                version=s.version,
                roc_auc=s.roc_auc,
                decision_threshold=s.decision_threshold,
                expected_cost=s.expected_cost,
            )

        result = pb.GateResult(
            rule=o.rule,
            model_name=name,
            alias=alias,
            challenger=score(o.challenger),
            metric="roc_auc",
            confidence_level=self.gate.confidence_level,
            resamples=self.gate.resamples,
            seed=self.gate.seed,
            non_inferiority_margin=self.gate.margin,
            window=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end)),
            window_row_count=o.rows,
            false_negative_cost=self.gate.false_negative_cost,
            false_positive_cost=self.gate.false_positive_cost,
            passed=o.passed,
            reasons=o.reasons,
            evaluate_time=_ts(datetime.now(UTC)),
        )
        if o.champion is not None:
            result.champion.CopyFrom(score(o.champion))
            result.delta, result.ci_lower, result.ci_upper = o.delta, o.ci_lower, o.ci_upper  # type: ignore[assignment]
        else:
            result.absolute_floor = self.gate.absolute_floor
        return result

    async def evaluate(self, caller: Caller, request: pb.EvaluatePromotionRequest) -> pb.GateResult:
        """EvaluatePromotion: the gate, changing nothing."""
        require(caller, Role.VIEWER, "EvaluatePromotion")
        name = _check_name(request.name, "name")
        if request.version < 1:
            raise InvalidArgument("version", "required, >= 1")
        alias = _check_alias(request.alias or CHAMPION, "alias")
        _, result, _ = await self._evaluate(name, request.version, alias)
        return result

    async def promote(
        self, caller: Caller, request: pb.PromoteModelVersionRequest
    ) -> tuple[pb.GateResult, pb.AliasChange, pb.ModelVersion]:
        """PromoteModelVersion: the gate, then the alias move (or a REFUSE record and GateRefused)."""
        require(caller, Role.PROMOTER, "PromoteModelVersion")
        name = _check_name(request.name, "name")
        if request.version < 1:
            raise InvalidArgument("version", "required, >= 1")
        alias = _check_alias(request.alias or CHAMPION, "alias")
        if request.force:
            require(caller, Role.ADMIN, "PromoteModelVersion with force")
            if not request.reason.strip():
                raise InvalidArgument("reason", "required with force")
        outcome, result, holder = await self._evaluate(name, request.version, alias)
        figures = outcome.figures()
        if not outcome.passed and not request.force:
            await self._run(
                self.store.append_now,
                au.NewRecord(
                    actor=caller.subject,
                    role=int(caller.role),
                    action=au.REFUSE,
                    model_name=name,
                    alias=alias,
                    from_version=holder,
                    to_version=request.version,
                    figures=figures,
                    reason=outcome.summary(),
                    trace_id=current_trace_id(),
                ),
            )
            raise GateRefused(result)
        action = au.PROMOTE if outcome.passed else au.FORCE_PROMOTE
        reason = request.reason if request.reason else outcome.summary()
        record = await self._run(
            self._move, caller, action, name, alias, request.version, reason, figures, (holder,)
        )
        self._notify()
        mv = await self._run(lambda: self._version_pb(self._model_version(name, request.version)))
        return result, self._change_pb(record), mv

    async def rollback(
        self, caller: Caller, request: pb.RollbackChampionRequest
    ) -> tuple[pb.AliasChange, pb.ModelVersion]:
        """RollbackChampion: back to the previous champion from the audit trail (or an explicit version)."""
        require(caller, Role.ADMIN, "RollbackChampion")
        name = _check_name(request.name, "name")
        if not request.reason.strip():
            raise InvalidArgument("reason", "required")

        def write() -> au.AuditRecord:
            current = self._alias_holder(name, CHAMPION)
            if request.HasField("to_version"):
                target: int | None = request.to_version
                self._ready_version(name, request.to_version)
            else:
                history = self.store.alias_history(name, CHAMPION)
                last = next((r for r in reversed(history) if r.to_version == current), None)
                target = last.from_version if last is not None else None
                if target is not None:
                    self._ready_version(name, target)
            if current is None or target is None or target == current:
                raise FailedPrecondition(
                    f"{name} has no previous champion to roll back to",
                    [
                        PreconditionViolation(
                            "NO_PREVIOUS_CHAMPION", f"{name}@{CHAMPION}", "promote a version"
                        )
                    ],
                )
            return self._move(caller, au.ROLLBACK, name, CHAMPION, target, request.reason, expect=(current,))

        record = await self._run(write)
        self._notify()
        mv = await self._run(lambda: self._version_pb(self._model_version(name, record.to_version or 0)))
        return self._change_pb(record), mv

    # --- watch and audit ------------------------------------------------------------------------

    async def watch(
        self, caller: Caller, request: pb.WatchAliasesRequest
    ) -> AsyncIterator[pb.WatchAliasesResponse]:
        """WatchAliases: a snapshot, then each alias change in sequence order."""
        require(caller, Role.VIEWER, "WatchAliases")
        names = set(request.model_names)
        aliases = set(request.aliases)
        for n in names:
            await self._run(self._registered_model, n)

        def snapshot() -> tuple[int, list[pb.AliasBinding]]:
            while True:
                before = self.store.last_alias_seq()
                bindings = []
                models = (
                    [self._registered_model(n) for n in sorted(names)]
                    if names
                    else list(self.client.search_registered_models(max_results=1000, order_by=["name ASC"]))
                )
                for rm in models:
                    for alias, version in sorted((rm.aliases or {}).items()):
                        if not aliases or alias in aliases:
                            bindings.append(
                                pb.AliasBinding(model_name=rm.name, alias=alias, version=int(version))
                            )
                if self.store.last_alias_seq() == before:
                    return before, bindings

        seq, bindings = await self._run(snapshot)
        yield pb.WatchAliasesResponse(snapshot=pb.AliasSnapshot(aliases=bindings, sequence=seq))
        while not self._closed:
            changed = self._changed
            records = await self._run(self.store.alias_changes_after, seq)
            for record in records:
                seq = record.alias_seq or seq
                if (not names or record.model_name in names) and (not aliases or record.alias in aliases):
                    yield pb.WatchAliasesResponse(change=self._change_pb(record))
            if not records:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=self.watch_poll_interval_s)

    async def list_audit(
        self, caller: Caller, flt: au.AuditFilter, offset: int, limit: int
    ) -> tuple[list[pb.AuditRecord], bool]:
        """ListAuditRecords: newest first."""
        require(caller, Role.VIEWER, "ListAuditRecords")
        records, more = await self._run(self.store.list, flt, offset, limit)
        return [self.record_pb(r) for r in records], more

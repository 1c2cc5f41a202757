"""Registration (RegisterModelVersion): the checks a run's model passes before it becomes a
version, then the version's creation with its ``registry.*`` tags and audit record.

1. the run exists (RUN_NOT_FOUND) and is FINISHED; the model at the artifact path exists
   (ARTIFACT_NOT_FOUND);
2. a signature, a decision threshold in [0, 1], lineage (feature service tags, a dataset input)
   matching the requested feature service, whose registered version is the run's;
3. the signature covers exactly the feature service's features, with compatible types;
4. the ONNX fast scorer (when logged) agrees with the scikit-learn flavor on reference rows;
5. sha256 digests of every artifact file, and of the run's training rows
   (``training_set/training_rows.parquet``) when it logged them.

The training rows' sha256 is downloaded and computed once, here, and kept by the gateway with the
version (``registered_digests.training_rows_sha256``, migration 0003) and as the version tag
``registry.dataset.sha256``; GetModelVersion returns the kept one as the lineage's training dataset
digest (``sha256:<64 hex>``), which the drift-service verifies the rows it downloads against. The
training-service's MLflow user can still overwrite its run's artifacts after registration; that no
longer changes what the lineage says. A run without training rows is refused (FAILED_PRECONDITION
``TRAINING_ROWS``): rows logged after the registration could not be told from the trained ones.

The check result is cached per (run, path, feature service) in the process (single flight).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from creditrisk.common.v1 import values_pb2
from creditrisk_kit import FailedPrecondition, InvalidArgument, PreconditionViolation
from creditrisk_kit.auth import Role
from creditrisk_model_artifacts import (
    FAST_SCORER_DIR,
    MODEL_DIR,
    DigestMismatch,
    digest_tags,
    sha256_file,
    sha256_tree,
)
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer
from mlflow.exceptions import MlflowException
from opentelemetry import trace

from registry_gateway import audit as au
from registry_gateway.auth import Caller
from registry_gateway.domain import ModelVersionInfo, RegisterRequest
from registry_gateway.errors import RegistryNotFound
from registry_gateway.features import FeatureServiceClient
from registry_gateway.models import NUMERIC_TYPES, SklearnModel, frame_columns, read_mlmodel, to_model_input
from registry_gateway.registry import (
    RESERVED_TAG_PREFIX,
    TAG,
    ModelRegistry,
    check_name,
    is_not_found,
)

_TRACER = trace.get_tracer("registry_gateway")

REFERENCE_SAMPLE_ROWS = 200
TRAINING_ROWS_PATH = "training_set/training_rows.parquet"
#: Version tag of the training rows' sha256 (``sha256:<64 hex>``), for readers of MLflow alone; the
#: gateway's own answer (the lineage) comes from its store, never from this tag.
TRAINING_ROWS_SHA256_TAG = f"{TAG}dataset.sha256"
_VALUE_TYPE_KINDS = {
    values_pb2.VALUE_TYPE_INT64: NUMERIC_TYPES,
    values_pb2.VALUE_TYPE_DOUBLE: NUMERIC_TYPES,
    values_pb2.VALUE_TYPE_BOOL: frozenset({"boolean", *NUMERIC_TYPES}),
    values_pb2.VALUE_TYPE_STRING: frozenset({"string"}),
}


@dataclass(frozen=True)
class CheckedModel:
    """A run's model after the registration checks (cached per run and path)."""

    source: str
    model_id: str | None
    run_id: str
    experiment_id: str
    tags: dict[str, str]
    digests: dict[str, str]
    #: sha256 (64 hex digits) of the run's training rows file at the check; None without one.
    training_rows_sha256: str | None = None


class Registration:
    """RegisterModelVersion: the checks, then the version under the write lock.

    Args:
        registry: the MLflow registry.
        trail: the audit trail (its store's lock serializes the writes).
        features: the feature-service client (feature service definitions).
        cache_dir: where model artifacts are downloaded for the checks.
    """

    def __init__(
        self, registry: ModelRegistry, trail: au.AuditTrail, features: FeatureServiceClient, cache_dir: Path
    ) -> None:
        self.registry = registry
        self.trail = trail
        self.features = features
        self.cache_dir = cache_dir
        self._checked: dict[tuple[str, str, str, str], CheckedModel] = {}
        self._check_locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}

    def _resolve_model(self, run: Any, artifact_path: str) -> tuple[str, str | None, str]:
        """``(source URI, logged model id, artifact URI to download)`` of a run's model."""
        run_id = run.info.run_id
        models = self.registry.client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"name = '{artifact_path}' AND source_run_id = '{run_id}'",
        )
        if models:  # MLflow 3: the model is a logged model of the run
            model = max(models, key=lambda m: m.creation_timestamp or 0)
            return f"models:/{model.model_id}", model.model_id, model.artifact_location
        uri = f"{run.info.artifact_uri}/{artifact_path}"
        names = {f.path for f in self.registry.client.list_artifacts(run_id, artifact_path)}
        if f"{artifact_path}/MLmodel" in names or "MLmodel" in names:  # a model logged as run artifacts
            return uri, None, uri
        raise RegistryNotFound(
            "artifact path",
            f"{run_id}/{artifact_path}",
            "ARTIFACT_NOT_FOUND",
            run_id=run_id,
            path=artifact_path,
        )

    def _check_run_model(
        self, run_id: str, artifact_path: str, fs_name: str, fs_version: str
    ) -> tuple[Any, Any, Path, Any]:
        """Blocking part of the checks up to the downloaded model: run, status, model, signature."""
        try:
            run = self.registry.client.get_run(run_id)
        except MlflowException as exc:
            if is_not_found(exc) or "not found" in str(exc).lower():
                raise RegistryNotFound("run", run_id, "RUN_NOT_FOUND", run_id=run_id) from exc
            raise
        if run.info.status != "FINISHED":
            raise FailedPrecondition(
                f"run {run_id!r} is {run.info.status}, not FINISHED",
                [PreconditionViolation("RUN_NOT_FINISHED", run_id, "register a finished run")],
            )
        source, model_id, download_uri = self._resolve_model(run, artifact_path)
        work = Path(tempfile.mkdtemp(prefix="register-", dir=self.cache_dir))
        model_dir = self.registry.download(download_uri, work / "model")
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
            run, (source, model_id), model_dir, meta = await self.registry.run(
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
        if not _probability(threshold):
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
        digests, fidelity, rows_sha256 = await self.registry.run(
            self._digests_and_fidelity, run, model_dir, meta
        )
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
        if rows_sha256 is not None:
            version_tags[TRAINING_ROWS_SHA256_TAG] = f"sha256:{rows_sha256}"
        return CheckedModel(
            source, model_id, run_id, run.info.experiment_id, version_tags, digests, rows_sha256
        )

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

    def _training_rows(self, run: Any, work: Path) -> Path | None:
        """The run's training rows downloaded into ``work`` (once per check), None when it logged
        none."""
        files = {f.path for f in self.registry.client.list_artifacts(run.info.run_id, "training_set")}
        if TRAINING_ROWS_PATH not in files:
            return None
        return self.registry.download(f"{run.info.artifact_uri}/{TRAINING_ROWS_PATH}", work / "rows")

    def _digests_and_fidelity(
        self, run: Any, model_dir: Path, meta: Any
    ) -> tuple[dict[str, str], dict[str, str], str | None]:
        """The artifact digests, the fast scorer's check tags and the training rows' sha256 (None
        without training rows); the same downloaded rows give the fast scorer's sample."""
        run_id = run.info.run_id
        try:
            digests = sha256_tree(model_dir, MODEL_DIR)
        except DigestMismatch as exc:
            raise FailedPrecondition(
                f"the model artifacts of run {run_id!r}: {exc.reason}",
                [PreconditionViolation("ARTIFACTS", run_id, "log plain files only")],
            ) from exc
        rows = self._training_rows(run, model_dir.parent)
        if rows is None:  # the drift reference could be logged later, unverifiable: refused
            raise FailedPrecondition(
                f"run {run_id!r} logged no training rows {TRAINING_ROWS_PATH}: a version's drift "
                "reference is its training rows, whose sha256 the registration records",
                [PreconditionViolation("TRAINING_ROWS", run_id, f"log {TRAINING_ROWS_PATH} as a file")],
            )
        if not rows.is_file():
            raise FailedPrecondition(
                f"the training rows {TRAINING_ROWS_PATH} of run {run_id!r} are not one file",
                [PreconditionViolation("TRAINING_ROWS", run_id, f"log {TRAINING_ROWS_PATH} as a file")],
            )
        rows_sha256 = sha256_file(rows)
        scorer_files = {f.path for f in self.registry.client.list_artifacts(run_id, FAST_SCORER_DIR)}
        if not scorer_files:
            return digests, {f"{TAG}fast_scorer": "absent"}, rows_sha256
        scorer_dir = self.registry.download(
            f"{run.info.artifact_uri}/{FAST_SCORER_DIR}", model_dir.parent / "scorer"
        )
        try:
            digests.update(sha256_tree(scorer_dir, FAST_SCORER_DIR))
            fast = OnnxScorer.from_dir(scorer_dir)
            tolerance = fast.tolerance
            if tolerance is None and "fast_scorer.tolerance" in run.data.tags:
                tolerance = float(run.data.tags["fast_scorer.tolerance"])
                if not math.isfinite(tolerance) or tolerance < 0:
                    raise ValueError(f"tag fast_scorer.tolerance {tolerance!r} is not a finite number >= 0")
        except (ValueError, KeyError, OSError) as exc:  # the run's files, not our bug: no INTERNAL
            raise FailedPrecondition(
                f"the fast scorer of run {run_id!r} is not valid: {exc}",
                [PreconditionViolation("FAST_SCORER", run_id, "re-export the fast scorer")],
            ) from exc
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
        sample = self._reference_sample(run, model_dir, rows)
        model_input = to_model_input(sample, meta.signature)
        fast_default = fast.predict_default(frame_columns(model_input), len(model_input))
        diff = float(np.max(np.abs(fast_default - model.predict_default(model_input))))
        if not diff <= tolerance:
            raise FailedPrecondition(
                f"the fast scorer of run {run_id!r} disagrees with the scikit-learn flavor: max |diff| "
                f"{diff:.3g} over {len(model_input)} reference rows exceeds its tolerance {tolerance:.3g}",
                [PreconditionViolation("FAST_SCORER_MISMATCH", run_id, "re-export the fast scorer")],
            )
        fidelity = {
            f"{TAG}fast_scorer": "checked",
            f"{TAG}fast_scorer.max_abs_diff": repr(diff),
            f"{TAG}fast_scorer.tolerance": repr(tolerance),
            f"{TAG}fast_scorer.rows_checked": str(len(model_input)),
        }
        return digests, fidelity, rows_sha256

    def _reference_sample(self, run: Any, model_dir: Path, rows: Path | None) -> pd.DataFrame:
        """Up to 200 rows (seeded) of the run's downloaded training rows (``rows``), else the
        model's input example."""
        if rows is not None:
            frame = pd.read_parquet(rows)
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

    async def register(self, caller: Caller, request: RegisterRequest) -> ModelVersionInfo:
        """RegisterModelVersion (see the contract).

        Besides the artifact digests, keeps the sha256 of the run's training rows
        (``training_set/training_rows.parquet``, downloaded once during the checks) with the version:
        its lineage's training dataset digest is then ``sha256:<64 hex>`` of those bytes, whatever
        the run's artifact holds later. A run that logged no training rows is refused.

        Raises:
            PermissionDenied: the caller lacks the register role.
            InvalidArgument: run id, artifact path, model name or feature service missing or
                malformed; a tag under the reserved ``registry.`` prefix.
            NotFound: the run or the model artifact path does not exist.
            FailedPrecondition: a check failed (run not FINISHED, no signature, threshold or lineage,
                feature service mismatch, fast scorer, untrusted types, artifacts that are not plain
                files, training rows missing or not one file).
            Unavailable: MLflow did not answer.
        """
        caller.require(Role.REGISTER, "RegisterModelVersion")
        if not request.run_id:
            raise InvalidArgument("run_id", "required")
        if not request.artifact_path:
            raise InvalidArgument("artifact_path", "required")
        name = check_name(request.registered_model_name, "registered_model_name")
        if not request.feature_service_name:
            raise InvalidArgument("feature_service.name", "required")
        for key in request.tags:
            if key.startswith(RESERVED_TAG_PREFIX):
                raise InvalidArgument(f"tags.{key}", f"the prefix {RESERVED_TAG_PREFIX!r} is reserved")
        checked = await self._checked_model(
            request.run_id,
            request.artifact_path,
            request.feature_service_name,
            request.feature_service_version,
        )
        tags = {**dict(request.tags), **checked.tags, f"{TAG}registered_by": caller.subject}

        def write() -> Any:
            with self.trail.store.locked() as conn:
                try:
                    self.registry.client.create_registered_model(name)
                except MlflowException as exc:
                    if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                        raise
                mv = self.registry.client.create_model_version(
                    name=name,
                    source=checked.source,
                    run_id=checked.run_id,
                    tags=tags,
                    description=request.description or None,
                    model_id=checked.model_id,
                )
                record = self.trail.append(
                    conn,
                    caller,
                    au.REGISTER,
                    name,
                    to_version=int(mv.version),
                    reason=request.description,
                    figures={"digests": float(len(checked.digests))},
                )
                self.trail.store.keep_digests(
                    conn, name, int(mv.version), checked.digests, record.seq, checked.training_rows_sha256
                )
                return mv

        with _TRACER.start_as_current_span("registry.register"):
            mv = await self.registry.run(write)
        return await self.registry.run(self.registry.version_info, mv)


def _probability(value: object) -> bool:
    """Whether ``value`` (a logged metadata value or metric) reads as a number in [0, 1]."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return 0.0 <= number <= 1.0

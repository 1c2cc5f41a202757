"""Where the reference data of a drift computation comes from.

:class:`ReferenceResolver` is the interface the core calls; the request picks the branch:

* an explicit dataset URI (``ComputeDriftRequest.dataset_uri``): :class:`ExplicitDatasetResolver`
  reads a Parquet file or directory (an absolute local path or a ``file://`` URI) only under
  ``DRIFT_SERVICE_DATASET_ROOTS``, a directory's files at a bounded depth and count
  (:mod:`drift_service.datasets`);
* the model version's training dataset (the default): :class:`MlflowTrainingDatasetResolver`
  when ``DRIFT_SERVICE_MLFLOW_TRACKING_URI`` is set, read-only against MLflow, the source of truth
  of the registry: the registered model version -> its run (``ModelVersion.run_id``) -> the
  training rows the training-service logged as a Parquet artifact
  (``training_set/training_rows.parquet``, with the out-of-fold ``probability_of_default``),
  downloaded through the tracking server; cached per (model, version) (a version's run never
  changes). When ``DRIFT_SERVICE_REGISTRY_TARGET`` is set (the service's own credential,
  ``DRIFT_SERVICE_CREDENTIAL(_FILE)``, or the deprecated ``DRIFT_SERVICE_REGISTRY_TOKEN``),
  :class:`RegistryGatewayTrainingDatasetResolver` asks the registry-gateway instead
  (``GetModelVersion``, role ``read_registry``): the version's ``lineage`` gives the run id and the training
  dataset's digest, the rows are then downloaded from that MLflow run as above. Either way the
  downloaded bytes are verified against the sha256 the registry-gateway recorded at registration
  (the lineage digest, or the version tag ``registry.dataset.sha256`` read from MLflow): a mismatch
  refuses the reference (FAILED_PRECONDITION, :mod:`drift_service.lineage`). Without a tracking
  URI, :class:`UnwiredTrainingDatasetResolver` answers FAILED_PRECONDITION asking for an explicit
  dataset.
* a run that has no registered version: the contract's ``Window`` names a model version, never a
  run, so such a run is reached through an explicit ``dataset_uri`` of MLflow's own form,
  ``runs:/<run id>/<artifact path>`` (e.g. ``runs:/<id>/training_set/training_rows.parquet``),
  resolved by the same MLflow resolver (columns and reference AUC taken from the run).

A reference frame holds the model's feature columns and, for prediction drift, a
``probability_of_default`` column (the model's scores of those rows; out-of-fold for a training
set); optionally a label column for the reference AUC. From an MLflow run the frame keeps only the
run's model features (its ``features`` param: the protected attributes logged beside them for
fairness monitoring are not model inputs), the score and the label; the reference AUC is the run's
held-out ``test_roc_auc`` (else ``cv_roc_auc_mean``).
"""

from __future__ import annotations

import abc
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_clients import DownstreamErrors, not_found
from creditrisk_kit import (
    FailedPrecondition,
    NotFound,
    PreconditionViolation,
    Unavailable,
    insecure_channel,
)
from creditrisk_kit.auth import BearerInterceptor, CredentialProvider
from creditrisk_kit.tls import ClientTls

from drift_service.datasets import DatasetLimits, LocalDatasets, sha256_of
from drift_service.domain import PREDICTION_COLUMN, DatasetRef
from drift_service.lineage import TRAINING_ROWS_SHA256_TAG, check_lineage_digest, check_single_file

_LOG = logging.getLogger("drift_service")


@dataclass(frozen=True)
class ReferenceData:
    """A reference dataset and where it came from."""

    frame: pd.DataFrame
    ref: DatasetRef
    #: The model's reference ROC AUC when the source records one (an MLflow run's metric); else
    #: the core computes it from the frame's labels and scores, or takes the configured value.
    auc: float | None = None


class ReferenceResolver(abc.ABC):
    """Finds the reference data of one model version."""

    @abc.abstractmethod
    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        """The reference of ``model_name`` version ``model_version``.

        Args:
            model_name: registered model name.
            model_version: model version.
            dataset_uri: an explicit dataset, or None for the version's training dataset.

        Raises:
            NotFound: an unknown model version or an unreadable dataset.
            FailedPrecondition: the reference cannot be found this way (yet), or its training rows
                do not match the sha256 recorded at registration.
        """


def _sha256(path: Path) -> str:
    """The sha256 (hex) of a downloaded Parquet file, or of EVERY file of a downloaded directory in
    name order (MLflow's artifact download, in a folder of this service's own): pandas reads files
    of a dataset folder whatever their suffix, so the digest covers all of them."""
    return sha256_of(sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path])


class ExplicitDatasetResolver(ReferenceResolver):
    """An explicit local Parquet dataset (file or directory), limited to the configured roots with
    a bounded directory walk (:mod:`drift_service.datasets`).

    Args:
        limits: allowed roots, depth and file count (default: no roots: every local path refused).
    """

    def __init__(self, limits: DatasetLimits | None = None) -> None:
        self.reader = LocalDatasets(limits)

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if not dataset_uri:
            raise NotFound("reference dataset", "", description="no dataset URI given")
        frame, ref = self.reader.read(dataset_uri)
        return ReferenceData(frame=frame, ref=ref)


class UnwiredTrainingDatasetResolver(ReferenceResolver):
    """Placeholder for the training-dataset reference until the registry-gateway exists."""

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        raise FailedPrecondition(
            "the training-dataset reference needs the registry-gateway, which is not wired yet; "
            "pass reference.dataset_uri",
            [
                PreconditionViolation(
                    type="REFERENCE_UNAVAILABLE",
                    subject=f"{model_name}/{model_version}",
                    description="set ComputeDriftRequest.dataset_uri to a Parquet dataset",
                )
            ],
        )


class RequestReferenceResolver(ReferenceResolver):
    """Dispatches on the request: an explicit URI (``runs:/`` ones through MLflow), or the training
    dataset (the default)."""

    def __init__(
        self,
        explicit: ReferenceResolver | None = None,
        training: ReferenceResolver | None = None,
        limits: DatasetLimits | None = None,
    ) -> None:
        self.explicit = explicit or ExplicitDatasetResolver(limits)
        self.training = training or UnwiredTrainingDatasetResolver()

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if dataset_uri and dataset_uri.startswith(RUNS_SCHEME):
            if not isinstance(
                self.training, MlflowTrainingDatasetResolver | RegistryGatewayTrainingDatasetResolver
            ):
                raise FailedPrecondition(
                    "a runs:/ dataset URI needs the MLflow tracking server: "
                    "set DRIFT_SERVICE_MLFLOW_TRACKING_URI",
                    [
                        PreconditionViolation(
                            type="REFERENCE_UNAVAILABLE",
                            subject=dataset_uri,
                            description="configure DRIFT_SERVICE_MLFLOW_TRACKING_URI or pass a Parquet path",
                        )
                    ],
                )
            return self.training.resolve(model_name, model_version, dataset_uri)
        if dataset_uri:
            return self.explicit.resolve(model_name, model_version, dataset_uri)
        return self.training.resolve(model_name, model_version, None)


# --- MLflow ---------------------------------------------------------------------------------------

#: MLflow's URI of a run's artifact: ``runs:/<run id>/<artifact path>``.
RUNS_SCHEME = "runs:/"
#: Where the training-service logs the training rows (``training_service.tracking.PARQUET_PATH``).
TRAINING_ROWS_ARTIFACT = "training_set/training_rows.parquet"
#: Run metrics taken as the reference AUC, first found wins: the held-out test AUC, then CV.
REFERENCE_AUC_METRICS = ("test_roc_auc", "cv_roc_auc_mean")
#: Bounded retries of the MLflow client: its default (7 retries, backoff factor 2) waits minutes
#: on a dead server; ComputeDrift should answer UNAVAILABLE in seconds instead.
_MLFLOW_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _mlflow_error(exc: Exception, kind: str, name: str) -> Exception:
    """An MLflow client failure as a domain error: unknown things -> NOT_FOUND, credentials refused
    by MLflow's basic-auth app (401/403) -> FAILED_PRECONDITION, the rest UNAVAILABLE. That app
    answers 403 for a model or run that does not exist too: the FAILED_PRECONDITION says so."""
    from mlflow.exceptions import MlflowException

    response = getattr(exc, "response", None)  # requests.HTTPError of an artifact download
    if (isinstance(exc, MlflowException) and exc.error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED")) or (
        getattr(response, "status_code", None) in (401, 403)
    ):
        return FailedPrecondition(
            f"the MLflow tracking server refused to let this service read {kind} {name!r} (its "
            "basic-auth app answers so for a registered model or a run that does not exist, too)",
            [
                PreconditionViolation(
                    type="MLFLOW_PERMISSION",
                    subject=name,
                    description="set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD to a user "
                    "with READ on the registered model and the run's experiment",
                )
            ],
        )
    if isinstance(exc, MlflowException) and exc.error_code in (
        "RESOURCE_DOES_NOT_EXIST",
        "NOT_FOUND",
        "INVALID_PARAMETER_VALUE",
    ):
        return NotFound(kind, name, description="not in the MLflow tracking server")
    if isinstance(exc, OSError | FileNotFoundError) and not isinstance(exc, ConnectionError):
        return NotFound(kind, name, description=f"artifact unreadable: {type(exc).__name__}")
    return Unavailable(f"the MLflow tracking server did not answer for {kind} {name!r}")


def _parse_runs_uri(uri: str) -> tuple[str, str]:
    rest = uri[len(RUNS_SCHEME) :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id or not path:
        raise NotFound("reference dataset", uri, description="expected runs:/<run id>/<artifact path>")
    return run_id, path


class MlflowTrainingDatasetResolver(ReferenceResolver):
    """The training dataset of a registered model version, read-only from MLflow.

    ``resolve(name, version, None)``: ``MlflowClient.get_model_version`` -> ``run_id`` ->
    ``get_run`` (params, metrics) -> ``download_artifacts(run_id, artifact_path)`` through the
    tracking server (``mlflow-artifacts:/``) -> Parquet. A version tagged ``registry.dataset.sha256``
    by the registry-gateway (only registry writers can set it) has its downloaded rows verified
    against it (FAILED_PRECONDITION on a mismatch); an untagged version's rows are used as before.
    ``resolve(..., "runs:/<id>/<path>")``: the same from the run on, unverified (no version names
    the rows). Results are cached in memory, per (model, version) and per run URI, at most
    ``cache_size`` of them (least recently used dropped).

    Args:
        tracking_uri: the tracking server (``http(s)://``); also the registry URI unless given.
        registry_uri: the model registry's URI (default: the tracking URI).
        artifact_path: the training rows' artifact path in a run.
        label_column: the product's label column, kept in the frame (reference AUC when the run
            has none); "" keeps none.
        auc_metrics: run metrics taken as the reference AUC, first found wins.
        cache_size: references kept in memory.
        client: an ``MlflowClient`` (tests); built from the URIs when None.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        registry_uri: str | None = None,
        artifact_path: str = TRAINING_ROWS_ARTIFACT,
        label_column: str = "",
        auc_metrics: Sequence[str] = REFERENCE_AUC_METRICS,
        cache_size: int = 4,
        client: Any = None,
    ) -> None:
        for key, value in _MLFLOW_CLIENT_ENV.items():
            os.environ.setdefault(key, value)
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
        self.client = client
        self.tracking_uri = tracking_uri
        self.artifact_path = artifact_path
        self.label_column = label_column
        self.auc_metrics = tuple(auc_metrics)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], ReferenceData] = OrderedDict()
        self._lock = threading.Lock()
        self.downloads = 0  # artifacts downloaded (the cache's misses), for tests and logs

    def _cached(self, key: tuple[str, ...]) -> ReferenceData | None:
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
            return data

    def _store(self, key: tuple[str, ...], data: ReferenceData) -> None:
        with self._lock:
            self._cache[key] = data
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if dataset_uri:
            run_id, path = _parse_runs_uri(dataset_uri)
            key: tuple[str, ...] = ("run", run_id, path)
            cached = self._cached(key)
            if cached is None:
                cached = self._from_run(run_id, path, source=dataset_uri)
                self._store(key, cached)
            return cached
        key = ("model", model_name, str(model_version))
        cached = self._cached(key)
        if cached is not None:
            return cached
        subject = f"{model_name}/{model_version}"
        try:
            version = self.client.get_model_version(model_name, str(model_version))
        except Exception as exc:
            raise _mlflow_error(exc, "model version", subject) from exc
        if not version.run_id:
            raise FailedPrecondition(
                f"model version {subject} has no MLflow run, so no training dataset; "
                "pass reference.dataset_uri",
                [
                    PreconditionViolation(
                        type="REFERENCE_UNAVAILABLE",
                        subject=subject,
                        description="register versions from a training run, "
                        "or set ComputeDriftRequest.dataset_uri",
                    )
                ],
            )
        data = self._from_run(
            version.run_id,
            self.artifact_path,
            source=f"models:/{model_name}/{model_version}",
            lineage_digest=dict(version.tags or {}).get(TRAINING_ROWS_SHA256_TAG, ""),
        )
        self._store(key, data)
        return data

    def _from_run(self, run_id: str, path: str, *, source: str, lineage_digest: str = "") -> ReferenceData:
        artifact = f"{RUNS_SCHEME}{run_id}/{path}"
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise _mlflow_error(exc, "MLflow run", run_id) from exc
        with tempfile.TemporaryDirectory(prefix="drift-reference-") as tmp:
            try:
                local = Path(self.client.download_artifacts(run_id, path, dst_path=tmp))
            except Exception as exc:
                raise _mlflow_error(exc, "reference dataset", artifact) from exc
            self.downloads += 1
            if lineage_digest:  # registered as one file: a folder under its name is not those rows
                check_single_file(lineage_digest, local.is_file(), artifact=artifact, source=source)
            try:
                frame = pd.read_parquet(local)
            except (OSError, ValueError, ImportError) as exc:
                raise NotFound(
                    "reference dataset", artifact, description=f"unreadable: {type(exc).__name__}"
                ) from exc
            sha256 = _sha256(local)
        digest = sha256[:16]
        features = [f for f in run.data.params.get("features", "").split(",") if f]
        if features:
            missing = [f for f in features if f not in frame.columns]
            if missing:
                raise NotFound(
                    "reference dataset",
                    artifact,
                    description=f"lacks the run's features {', '.join(missing[:5])}",
                )
            extra = (PREDICTION_COLUMN, self.label_column)
            keep = [*features, *(c for c in extra if c and c in frame.columns)]
            frame = frame[keep]
        # MLflow's digest of the training dataset input names the same rows as the training artifact
        mlflow_digest = _run_dataset_digest(run) if path == self.artifact_path else ""
        if lineage_digest:  # checked before the rows are used (lineage.py); the report records it
            mlflow_digest = check_lineage_digest(
                lineage_digest, sha256, mlflow_digest, artifact=artifact, source=source
            )
        metrics = run.data.metrics
        auc = next((float(metrics[m]) for m in self.auc_metrics if m in metrics), None)
        _LOG.info(
            "reference %s: %d rows, %d columns from run %s (reference AUC %s)",
            source,
            len(frame),
            frame.shape[1],
            run_id,
            "none" if auc is None else f"{auc:.4f}",
            extra={"drift.reference": source, "mlflow.run_id": run_id},
        )
        return ReferenceData(
            frame=frame, ref=DatasetRef(source=artifact, digest=mlflow_digest or digest), auc=auc
        )


def _run_dataset_digest(run: Any) -> str:
    """The digest of the run's training dataset input as MLflow recorded it, else empty."""
    inputs = getattr(run, "inputs", None)
    for dataset_input in getattr(inputs, "dataset_inputs", None) or ():
        contexts = {t.value for t in dataset_input.tags if t.key == "mlflow.data.context"}
        if not contexts or "training" in contexts:
            return str(dataset_input.dataset.digest or "")
    return ""


# --- registry-gateway -----------------------------------------------------------------------------

#: The settings named when the registry-gateway refuses the drift-service's credential (names, no
#: secret): its own credential, or the deprecated registry token when that is what it sends.
CREDENTIAL_SETTING = "DRIFT_SERVICE_CREDENTIAL"
REGISTRY_TOKEN_SETTING = "DRIFT_SERVICE_REGISTRY_TOKEN"  # noqa: S105


def _refused_token(setting: str) -> Any:
    def refused(exc: grpc.RpcError) -> Exception:
        return FailedPrecondition(
            f"the registry-gateway refused the drift-service's credential ({exc.code().name}); "
            f"set {setting} to a credential with the read_registry role",
            [
                PreconditionViolation(
                    type="REGISTRY_CREDENTIAL",
                    subject=setting,
                    description="a bearer credential of the registry-gateway with read_registry",
                )
            ],
        )

    return refused


def _registry_errors(subject: str, setting: str) -> DownstreamErrors:
    """The registry-gateway's errors of GetModelVersion (see
    :class:`RegistryGatewayTrainingDatasetResolver`)."""
    return DownstreamErrors(
        "the registry-gateway",
        on={
            grpc.StatusCode.UNAUTHENTICATED: _refused_token(setting),
            grpc.StatusCode.PERMISSION_DENIED: _refused_token(setting),
            grpc.StatusCode.NOT_FOUND: not_found(
                "model version", subject, description="not in the registry-gateway"
            ),
        },
        unavailable_message=f"the registry-gateway did not answer for model version {subject!r}",
        deadline_message=f"the registry-gateway did not answer in time for model version {subject!r}",
    )


class RegistryGatewayTrainingDatasetResolver(ReferenceResolver):
    """The training dataset of a model version, found through the registry-gateway.

    ``resolve(name, version, None)``: ``ModelRegistryService.GetModelVersion`` (``authorization:
    Bearer <credential>``, the ``read_registry`` role suffices) -> ``ModelVersion.lineage`` (run id,
    training dataset source and digest, feature service) -> the training rows downloaded from that
    MLflow run by ``mlflow`` (its download, columns, reference AUC and cache). The lineage's dataset
    digest is, for a version the gateway registered from a run with training rows, ``sha256:<64
    hex>`` of the rows it read at registration: the downloaded bytes must have it, else the
    reference is refused (FAILED_PRECONDITION ``REFERENCE_DIGEST_MISMATCH`` naming the version, the
    artifact and both digests; logged) and the report's reference :class:`DatasetRef` records the
    verified ``sha256:<64 hex>``. Any other digest (MLflow's dataset digest, no file hash) is recorded
    unverified. ``runs:/`` URIs go to ``mlflow`` directly.

    Errors of the registry-gateway: UNAUTHENTICATED / PERMISSION_DENIED -> FAILED_PRECONDITION
    naming ``credential_setting``; NOT_FOUND -> NOT_FOUND naming the model version;
    UNAVAILABLE -> UNAVAILABLE; DEADLINE_EXCEEDED -> DEADLINE_EXCEEDED.

    Args:
        target: the registry-gateway's ``host:port`` (gRPC).
        token: the bearer credential sent on every call: a string, or a provider called at each
            call (the kit's ``outgoing_credential(settings)``, re-read on rotation).
        mlflow: the MLflow resolver the rows are downloaded with.
        channel: a gRPC channel (tests); a kit channel to ``target`` when None.
        timeout_s: deadline of GetModelVersion.
        tls: TLS of the kit channel (``ClientTls.from_settings``); None: plaintext.
        credential_setting: the setting named when the registry-gateway refuses the credential.
    """

    def __init__(
        self,
        target: str,
        token: CredentialProvider | str,
        mlflow: MlflowTrainingDatasetResolver,
        *,
        channel: Any = None,
        timeout_s: float = 10.0,
        tls: ClientTls | None = None,
        credential_setting: str = CREDENTIAL_SETTING,
    ) -> None:
        self.target = target
        self.credential_setting = credential_setting
        self.mlflow = mlflow
        self._owns_channel = channel is None
        self._channel = channel if channel is not None else insecure_channel(target, tls=tls)
        self._stub = rpb_grpc.ModelRegistryServiceStub(
            grpc.intercept_channel(self._channel, BearerInterceptor(token))
        )
        self.timeout_s = timeout_s
        self.lookups = 0  # GetModelVersion calls (the cache's misses), for tests and logs

    def close(self) -> None:
        """Close the channel (when this resolver opened it)."""
        if self._owns_channel:
            self._channel.close()

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if dataset_uri:
            return self.mlflow.resolve(model_name, model_version, dataset_uri)
        key = ("registry", model_name, str(model_version))
        cached = self.mlflow._cached(key)
        if cached is not None:
            return cached
        subject = f"{model_name}/{model_version}"
        version = self._get_model_version(model_name, model_version, subject)
        lineage = version.lineage
        run_id = lineage.run_id or version.run_id
        if not run_id:
            raise FailedPrecondition(
                f"model version {subject} has no MLflow run in its lineage, so no training dataset; "
                "pass reference.dataset_uri",
                [
                    PreconditionViolation(
                        type="REFERENCE_UNAVAILABLE",
                        subject=subject,
                        description="register versions from a training run, "
                        "or set ComputeDriftRequest.dataset_uri",
                    )
                ],
            )
        _LOG.info(
            "reference of %s from the registry-gateway: run %s, dataset %s (digest %s), "
            "feature service %s/%s",
            subject,
            run_id,
            lineage.training_dataset.source or "unrecorded",
            lineage.training_dataset.digest or "unrecorded",
            lineage.feature_service.name or "?",
            lineage.feature_service.version or "?",
            extra={"drift.reference": f"models:/{subject}", "mlflow.run_id": run_id},
        )
        data = self.mlflow._from_run(
            run_id,
            self.mlflow.artifact_path,
            source=f"models:/{subject}",
            lineage_digest=lineage.training_dataset.digest,
        )
        self.mlflow._store(key, data)
        return data

    def _get_model_version(self, model_name: str, model_version: int, subject: str) -> Any:
        request = rpb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=model_name, version=model_version))
        self.lookups += 1
        try:
            response = self._stub.GetModelVersion(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            _registry_errors(subject, self.credential_setting).raise_for(exc)
        return response.model_version

"""The MLflow reference resolver against a real ``mlflow server`` (1 worker, no job execution).

The test logs what the training-service logs (a run with its ``features`` param, ROC AUC metrics,
the training rows as ``training_set/training_rows.parquet`` and the dataset input) and registers a
version of it, directly with the MLflow client (here the test plays the registry-gateway, the
registry's only writer in the platform; the drift-service itself only reads).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from conftest import ATTRIBUTES, T0, events_from_frame
from creditrisk.common.v1 import refs_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_kit import FailedPrecondition, NotFound, ServiceRunner, Unavailable, aio_channel
from creditrisk_testing.entrypoints import free_port
from creditrisk_testing.mlflow import acting_as, mlflow_server
from drift_service.convert import to_timestamp
from drift_service.core import DriftCore, default_resolver
from drift_service.domain import PREDICTION_COLUMN, GroundTruthLabel, PolicyKind, Window, now_utc
from drift_service.lineage import TRAINING_ROWS_SHA256_TAG
from drift_service.reference import (
    TRAINING_ROWS_ARTIFACT,
    MlflowTrainingDatasetResolver,
    RegistryGatewayTrainingDatasetResolver,
)
from drift_service.servicer import SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings
from german_frames import LABEL
from pydantic import ValidationError

MODEL = "credit-risk-drift-test"
#: The model's features: the protected attributes are logged beside them but are no model inputs.
PROTECTED = ("personal_status_and_sex", "foreign_worker")
FEATURES = [c for c in ATTRIBUTES if c not in PROTECTED]
RUN_TEST_AUC = 0.99


@dataclass(frozen=True)
class Tracking:
    url: str
    run_id: str
    version: int
    version_without_run: int
    #: MLflow's digest of the run's training dataset input (a hash of the frame's values).
    dataset_digest: str
    #: sha256 of the uploaded training rows file (the bytes the resolver downloads).
    rows_sha256: str


pytestmark = [
    pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning"),
    pytest.mark.slow,  # an MLflow server and a logged training run (the module's fixture)
]


@pytest.fixture(scope="module")
def tracking(
    tmp_path_factory: pytest.TempPathFactory, split: tuple[pd.DataFrame, pd.DataFrame]
) -> Iterator[Tracking]:
    """A tracking server with one training run and two registered versions (one without a run)."""
    data = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(data, timeout_s=120) as url:
        yield _log_training_run(url, split[0], data)


def _log_training_run(url: str, reference: pd.DataFrame, tmp: Path) -> Tracking:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.create_experiment("drift-reference-test")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "features", ",".join(FEATURES))
    client.log_metric(run_id, "test_roc_auc", RUN_TEST_AUC)
    client.log_metric(run_id, "cv_roc_auc_mean", 0.75)
    rows = reference.copy()
    rows.insert(0, "applicant_id", np.arange(len(rows)))
    rows["creditability"] = (rows["creditability"] == "bad").astype("Int64")  # as the training set has it
    folder = tmp / "training_set"
    folder.mkdir()
    rows.to_parquet(folder / "training_rows.parquet", index=False)
    client.log_artifact(run_id, str(folder / "training_rows.parquet"), artifact_path="training_set")
    dataset = mlflow.data.from_pandas(rows, name="credit_risk_v1-training", targets="creditability")
    client.log_inputs(
        run_id,
        datasets=[
            mlflow.entities.DatasetInput(
                dataset._to_mlflow_entity(),
                tags=[mlflow.entities.InputTag("mlflow.data.context", "training")],
            )
        ],
    )
    client.set_terminated(run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, source=f"runs:/{run_id}/model", run_id=run_id)
    bare = client.create_model_version(MODEL, source="s3://external-bucket/model")  # no run
    rows_sha256 = hashlib.sha256((folder / "training_rows.parquet").read_bytes()).hexdigest()
    return Tracking(url, run_id, int(version.version), int(bare.version), dataset.digest, rows_sha256)


def test_registered_version_resolves_to_its_runs_training_rows(tracking: Tracking) -> None:
    resolver = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL)
    data = resolver.resolve(MODEL, tracking.version, None)
    # the run's model features, the score and the label; not the id nor the protected attributes
    assert list(data.frame.columns) == [*FEATURES, PREDICTION_COLUMN, "creditability"]
    assert len(data.frame) == 500
    assert data.ref.source == f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
    assert len(data.ref.digest) >= 8  # MLflow's own digest of the dataset input
    assert data.auc == RUN_TEST_AUC
    # cached per (model, version): no second download
    assert resolver.resolve(MODEL, tracking.version, None) is data
    assert resolver.downloads == 1


def test_mlflow_basic_auth_a_reader_resolves_a_stranger_is_refused(tracking: Tracking) -> None:
    """The server runs MLflow's basic-auth app: the drift-service needs a user with READ."""
    with acting_as("reader"):
        data = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL).resolve(
            MODEL, tracking.version, None
        )
        assert len(data.frame) == 500
    # a user without a grant (403), and one with a wrong password (401)
    for password in (None, "not-its-password"):
        with acting_as("stranger"):
            if password is not None:
                os.environ["MLFLOW_TRACKING_PASSWORD"] = password  # restored by acting_as
            resolver = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL)
            with pytest.raises(FailedPrecondition, match="refused") as refused:
                resolver.resolve(MODEL, tracking.version, None)
            assert "MLFLOW_TRACKING_USERNAME" in refused.value.violations[0].description
            with pytest.raises(FailedPrecondition, match="refused"):
                resolver.resolve(MODEL, 1, f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}")


def test_a_run_without_a_registered_version_resolves_from_a_runs_uri(tracking: Tracking) -> None:
    resolver = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL)
    uri = f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
    data = resolver.resolve("unregistered-model", 1, uri)
    assert data.ref.source == uri
    assert list(data.frame.columns) == [*FEATURES, PREDICTION_COLUMN, "creditability"]
    assert data.auc == RUN_TEST_AUC
    assert resolver.resolve("unregistered-model", 1, uri) is data
    assert resolver.downloads == 1


def test_unknown_things_are_not_found_and_a_dead_server_unavailable(tracking: Tracking) -> None:
    resolver = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL)
    with pytest.raises(NotFound, match=f"{MODEL}/99"):
        resolver.resolve(MODEL, 99, None)
    # MLflow's basic-auth app answers 403 for a registered model or a run that does not exist (it
    # resolves the permission first): refused, the message naming it and that case
    with pytest.raises(FailedPrecondition, match=r"no-such-model/1.*does not exist"):
        resolver.resolve("no-such-model", 1, None)
    with pytest.raises(FailedPrecondition, match=r"0123456789abcdef0123456789abcdef.*does not exist"):
        resolver.resolve(MODEL, 1, f"runs:/0123456789abcdef0123456789abcdef/{TRAINING_ROWS_ARTIFACT}")
    with pytest.raises(NotFound, match="reference dataset"):
        resolver.resolve(MODEL, 1, f"runs:/{tracking.run_id}/training_set/absent.parquet")
    with pytest.raises(FailedPrecondition, match="no MLflow run"):
        resolver.resolve(MODEL, tracking.version_without_run, None)
    dead = MlflowTrainingDatasetResolver(f"http://127.0.0.1:{free_port()}")
    began = time.monotonic()
    with pytest.raises(Unavailable, match="MLflow"):
        dead.resolve(MODEL, 1, None)
    assert time.monotonic() - began < 30


@pytest.mark.usefixtures("evidently_loaded")
def test_core_defaults_to_the_mlflow_training_dataset_and_its_run_auc(
    tracking: Tracking, settings: DriftServiceSettings, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    settings = settings.model_copy(update={"mlflow_tracking_uri": tracking.url})
    core = DriftCore(settings)
    try:
        events = events_from_frame(split[1].iloc[:200], model_name=MODEL, model_version=tracking.version)
        core.log_predictions(events)
        rng = np.random.default_rng(3)
        labels = [
            GroundTruthLabel(label=int(rng.random() < 0.3), observed_time=now_utc(), event_id=e.event_id)
            for e in events[:150]
        ]
        core.log_ground_truth(labels)
        window = Window(MODEL, T0, T0 + timedelta(days=1))
        outcome = core.compute_drift(window)  # no dataset_uri: the version's training dataset
        (report,) = outcome.reports
        assert report.reference.source == f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
        assert report.reference_row_count == 500
        assert [f.feature for f in report.features] == sorted(FEATURES)
        assert not report.dataset_drift
        (perf,) = core.get_performance(window)
        (trigger,) = outcome.triggers
        (auc,) = [r for r in trigger.reasons if r.kind is PolicyKind.AUC_DROP]
        assert perf.roc_auc is not None
        assert auc.figure == pytest.approx(RUN_TEST_AUC - perf.roc_auc)  # the run's metric, not the rows'
    finally:
        core.close()


# --- through the registry-gateway ----------------------------------------------------------------

VIEWER_TOKEN = "drift-viewer-token"
OUTSIDER_TOKEN = "no-role-token"
#: Versions the fake registry-gateway knows, by what their lineage holds.
V_MLFLOW_DIGEST = 7  # lineage digest: MLflow's dataset digest (not a file hash)
V_FILE_SHA256 = 8  # lineage digest: the rows file's sha256
V_WRONG_SHA256 = 9  # lineage digest: a sha256 of other bytes
V_NO_RUN = 10  # no run in the lineage


@dataclass
class FakeRegistry(rpb_grpc.ModelRegistryServiceServicer):
    """GetModelVersion of a registry-gateway: viewer token checked, lineage pointing at the run."""

    tracking: Tracking
    tokens: list[str] = field(default_factory=list)

    def GetModelVersion(self, request: rpb.GetModelVersionRequest, context: grpc.ServicerContext) -> object:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        self.tokens.append(auth)
        if auth == f"Bearer {OUTSIDER_TOKEN}":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "GetModelVersion needs the viewer role")
        if auth != f"Bearer {VIEWER_TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        digests = {
            V_MLFLOW_DIGEST: self.tracking.dataset_digest,
            V_FILE_SHA256: f"sha256:{self.tracking.rows_sha256}",
            V_WRONG_SHA256: "0" * 64,
            V_NO_RUN: "",
        }
        if request.model.name != MODEL or request.model.version not in digests:
            context.abort(grpc.StatusCode.NOT_FOUND, f"version {request.model.version} not found")
        run_id = "" if request.model.version == V_NO_RUN else self.tracking.run_id
        version = rpb.ModelVersion(name=MODEL, version=request.model.version, run_id=run_id)
        version.lineage.CopyFrom(
            rpb.Lineage(
                run_id=run_id,
                training_dataset=refs_pb2.DatasetRef(
                    source="feature-service://credit_risk_v1", digest=digests[request.model.version]
                ),
                feature_service=refs_pb2.FeatureServiceRef(name="credit_risk_v1", version="1"),
            )
        )
        return rpb.GetModelVersionResponse(model_version=version)


@pytest.fixture(scope="module")
def registry(tracking: Tracking) -> Iterator[tuple[str, FakeRegistry]]:
    """An in-process fake registry-gateway on a free port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fake = FakeRegistry(tracking)
    rpb_grpc.add_ModelRegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", fake
    finally:
        server.stop(None)


def _via_registry(
    target: str, tracking: Tracking, token: str = VIEWER_TOKEN
) -> RegistryGatewayTrainingDatasetResolver:
    return RegistryGatewayTrainingDatasetResolver(
        target, token, MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL)
    )


def test_the_registry_gateways_lineage_names_the_run_and_the_dataset_digest(
    tracking: Tracking, registry: tuple[str, FakeRegistry]
) -> None:
    target, fake = registry
    resolver = _via_registry(target, tracking)
    try:
        fake.tokens.clear()
        data = resolver.resolve(MODEL, V_MLFLOW_DIGEST, None)
        assert fake.tokens == [f"Bearer {VIEWER_TOKEN}"]  # the viewer token arrived
        assert list(data.frame.columns) == [*FEATURES, PREDICTION_COLUMN, "creditability"]
        assert len(data.frame) == 500
        assert data.ref.source == f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
        # MLflow's dataset digest is no file hash: recorded as the lineage has it, not verified
        assert data.ref.digest == tracking.dataset_digest
        assert data.auc == RUN_TEST_AUC
        # cached per (model, version): neither a second lookup nor a second download
        assert resolver.resolve(MODEL, V_MLFLOW_DIGEST, None) is data
        assert (resolver.lookups, resolver.mlflow.downloads) == (1, 1)
        # a file sha256 in the lineage is checked against the downloaded bytes
        verified = resolver.resolve(MODEL, V_FILE_SHA256, None)
        assert verified.ref.digest == f"sha256:{tracking.rows_sha256}"
        with pytest.raises(FailedPrecondition, match="do not match the sha256"):
            resolver.resolve(MODEL, V_WRONG_SHA256, None)
        with pytest.raises(FailedPrecondition, match="no MLflow run"):
            resolver.resolve(MODEL, V_NO_RUN, None)
        # runs:/ URIs skip the registry
        uri = f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
        assert resolver.resolve(MODEL, 1, uri).ref.source == uri
    finally:
        resolver.close()


def test_registry_gateway_errors_are_mapped(tracking: Tracking, registry: tuple[str, FakeRegistry]) -> None:
    target, _ = registry
    for token, code in (("wrong-token", "UNAUTHENTICATED"), (OUTSIDER_TOKEN, "PERMISSION_DENIED")):
        resolver = _via_registry(target, tracking, token)
        with pytest.raises(FailedPrecondition, match=f"{code}.*DRIFT_SERVICE_CREDENTIAL"):
            resolver.resolve(MODEL, V_MLFLOW_DIGEST, None)
        resolver.close()
    resolver = _via_registry(target, tracking)
    with pytest.raises(NotFound, match=f"{MODEL}/99"):
        resolver.resolve(MODEL, 99, None)
    resolver.close()
    dead = _via_registry(f"127.0.0.1:{free_port()}", tracking)
    began = time.monotonic()
    with pytest.raises(Unavailable, match="registry-gateway"):
        dead.resolve(MODEL, V_MLFLOW_DIGEST, None)
    assert time.monotonic() - began < 30
    dead.close()


def test_settings_make_the_registry_gateway_the_default(
    tracking: Tracking, registry: tuple[str, FakeRegistry], settings: DriftServiceSettings, tmp_path: Path
) -> None:
    target, fake = registry
    wired = DriftServiceSettings.model_validate(
        {
            **settings.model_dump(),
            "mlflow_tracking_uri": tracking.url,
            "registry_target": target,
            "registry_token": VIEWER_TOKEN,
        }
    )
    resolver = default_resolver(wired)
    assert isinstance(resolver.training, RegistryGatewayTrainingDatasetResolver)
    fake.tokens.clear()
    data = resolver.resolve(MODEL, V_MLFLOW_DIGEST, None)
    assert data.ref.digest == tracking.dataset_digest
    assert fake.tokens == [f"Bearer {VIEWER_TOKEN}"]
    resolver.training.close()
    assert VIEWER_TOKEN not in repr(wired)
    plain = settings.model_copy(update={"mlflow_tracking_uri": tracking.url})
    assert type(default_resolver(plain).training) is MlflowTrainingDatasetResolver
    base = {**settings.model_dump(), "mlflow_tracking_uri": tracking.url}
    with pytest.raises(ValidationError, match="needs DRIFT_SERVICE_CREDENTIAL"):
        DriftServiceSettings.model_validate({**base, "registry_target": target})
    with pytest.raises(ValidationError, match="DRIFT_SERVICE_MLFLOW_TRACKING_URI"):
        DriftServiceSettings.model_validate(
            {**base, "mlflow_tracking_uri": None, "registry_target": target, "registry_token": "t"}
        )
    # no registry token: the service's own credential file (what deploy/stack/local.toml gives it)
    key_file = tmp_path / "drift-service.key"
    key_file.write_text(f"{VIEWER_TOKEN}\n")
    own = DriftServiceSettings.model_validate(
        {**base, "registry_target": target, "credential_file": key_file}
    )
    resolver = default_resolver(own)
    assert isinstance(resolver.training, RegistryGatewayTrainingDatasetResolver)
    fake.tokens.clear()
    resolver.resolve(MODEL, V_MLFLOW_DIGEST, None)
    assert fake.tokens == [f"Bearer {VIEWER_TOKEN}"]
    resolver.training.close()


# --- the training rows a version registered -------------------------------------------------------


def _rows_run(tracking: Tracking, rows: pd.DataFrame, folder: Path) -> tuple[str, str]:
    """A run beside the fixture's (its experiment, its ``features`` param) logging ``rows`` as its
    training rows; ``(run id, sha256 of the uploaded file)``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)
    run = client.create_run(client.get_run(tracking.run_id).info.experiment_id)
    client.log_param(run.info.run_id, "features", ",".join(FEATURES))
    return run.info.run_id, _log_rows(client, run.info.run_id, rows, folder)


def _log_rows(client: Any, run_id: str, rows: pd.DataFrame, folder: Path) -> str:
    """Upload ``rows`` as the run's training rows (replacing what it had); their file's sha256."""
    folder.mkdir(parents=True)
    path = folder / "training_rows.parquet"
    rows.to_parquet(path, index=False)
    client.log_artifact(run_id, str(path), artifact_path="training_set")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_version_tagged_with_its_rows_sha256_is_verified_and_an_overwrite_refused(
    tracking: Tracking,
    split: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The MLflow-only path: the registry-gateway's version tag ``registry.dataset.sha256`` (only
    registry writers may set it) names the rows registered; the run's writer overwrites them later."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)
    rows = split[0].copy()
    run_id, registered = _rows_run(tracking, rows, tmp_path / "registered")
    version = int(
        client.create_model_version(
            MODEL,
            source=f"runs:/{run_id}/model",
            run_id=run_id,
            tags={TRAINING_ROWS_SHA256_TAG: f"sha256:{registered}"},
        ).version
    )
    data = MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL).resolve(MODEL, version, None)
    assert data.ref.digest == f"sha256:{registered}"  # the report records the verified sha256
    assert len(data.frame) == len(rows)

    poisoned_rows = rows.copy()
    poisoned_rows[PREDICTION_COLUMN] = 0.01  # every training score replaced: no prediction drift seen
    poisoned = _log_rows(client, run_id, poisoned_rows, tmp_path / "poisoned")
    artifact = f"runs:/{run_id}/{TRAINING_ROWS_ARTIFACT}"
    with (
        caplog.at_level(logging.WARNING, logger="drift_service"),
        pytest.raises(FailedPrecondition) as refused,
    ):
        MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL).resolve(MODEL, version, None)
    message = str(refused.value)
    for named in (f"models:/{MODEL}/{version}", artifact, f"sha256:{registered}", f"sha256:{poisoned}"):
        assert named in message
    assert refused.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    (violation,) = refused.value.violations
    assert (violation.type, violation.subject) == ("REFERENCE_DIGEST_MISMATCH", f"models:/{MODEL}/{version}")
    (logged,) = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert artifact in logged.getMessage()
    assert f"sha256:{poisoned}" in logged.getMessage()
    # a version without the tag (registered before the gateway recorded it) resolves as before
    assert MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL).resolve(
        MODEL, tracking.version, None
    ).ref.digest == (tracking.dataset_digest)


def test_a_folder_holding_the_registered_rows_beside_others_is_refused(
    tracking: Tracking,
    split: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
) -> None:
    """The attacker review's poisoning (issue 18): the run's writer deletes the registered file and
    logs a folder of the same name holding the registered bytes (``a.parquet``) and many altered
    rows in a file without the suffix; pandas reads both, a hash of the ``*.parquet`` files alone
    matched. Refused as a folder, before it is read."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)
    rows = split[0].copy()
    run_id, registered = _rows_run(tracking, rows, tmp_path / "registered")
    version = int(
        client.create_model_version(
            MODEL,
            source=f"runs:/{run_id}/model",
            run_id=run_id,
            tags={TRAINING_ROWS_SHA256_TAG: f"sha256:{registered}"},
        ).version
    )
    artifacts = Path(client.download_artifacts(run_id, TRAINING_ROWS_ARTIFACT, dst_path=str(tmp_path / "dl")))
    folder = tmp_path / "swap" / "training_rows.parquet"
    folder.mkdir(parents=True)
    (folder / "a.parquet").write_bytes(artifacts.read_bytes())  # the registered bytes
    poison = rows.copy()
    poison[PREDICTION_COLUMN] = 0.01
    pd.concat([poison] * 5).to_parquet(folder / "zpoison", index=False)  # no .parquet suffix
    # replace the file by the folder, as the run's writer can (MLflow's artifact API)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(client.get_run(run_id).info.artifact_uri, tracking_uri=tracking.url)
    repository.delete_artifacts(TRAINING_ROWS_ARTIFACT)
    client.log_artifacts(run_id, str(folder.parent), artifact_path="training_set")
    assert Path(
        client.download_artifacts(run_id, TRAINING_ROWS_ARTIFACT, dst_path=str(tmp_path / "x"))
    ).is_dir()
    with pytest.raises(FailedPrecondition, match="are a folder") as refused:
        MlflowTrainingDatasetResolver(tracking.url, label_column=LABEL).resolve(MODEL, version, None)
    (violation,) = refused.value.violations
    assert violation.type == "REFERENCE_DIGEST_MISMATCH"


@pytest.mark.usefixtures("evidently_loaded")
async def test_compute_drift_refuses_rows_that_do_not_match_the_lineage_sha256(
    tracking: Tracking,
    registry: tuple[str, FakeRegistry],
    settings: DriftServiceSettings,
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Over gRPC, the reference found through the registry-gateway: rows whose sha256 differs from
    the lineage's are refused with FAILED_PRECONDITION and no report; matching rows are used and the
    report's reference records their sha256."""
    target, _ = registry
    wired = DriftServiceSettings.model_validate(
        {
            **settings.model_dump(),
            "mlflow_tracking_uri": tracking.url,
            "registry_target": target,
            "registry_token": VIEWER_TOKEN,
            "host": "127.0.0.1",
            "port": 0,
            "grace_period_s": 1.0,
        }
    )
    core = DriftCore(wired)
    runner = ServiceRunner(
        wired,
        service_names=[SERVICE_NAME],
        register=lambda server: dpb_grpc.add_DriftServiceServicer_to_server(
            DriftServiceServicer(core), server
        ),
        instrument=False,
        reflection=False,
    )
    await runner.start()
    channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=120, instrument=False, retry=None)
    try:
        stub = dpb_grpc.DriftServiceStub(channel)
        for version in (V_WRONG_SHA256, V_FILE_SHA256):
            core.log_predictions(
                events_from_frame(split[1].iloc[:200], model_name=MODEL, model_version=version)
            )

        def window(version: int) -> dpb.Window:
            w = dpb.Window(model_name=MODEL, model_version=version)
            w.time_range.start.CopyFrom(to_timestamp(T0))
            w.time_range.end.CopyFrom(to_timestamp(T0 + timedelta(days=1)))
            return w

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ComputeDrift(dpb.ComputeDriftRequest(window=window(V_WRONG_SHA256)))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = refused.value.details() or ""
        for named in (
            f"models:/{MODEL}/{V_WRONG_SHA256}",
            f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}",
            f"sha256:{'0' * 64}",
            f"sha256:{tracking.rows_sha256}",
        ):
            assert named in details
        assert core.store.list_drift_reports(model_name=MODEL, model_version=V_WRONG_SHA256)[0] == []

        response = await stub.ComputeDrift(dpb.ComputeDriftRequest(window=window(V_FILE_SHA256)))
        (report,) = response.reports
        assert report.reference.digest == f"sha256:{tracking.rows_sha256}"
        assert report.reference.source == f"runs:/{tracking.run_id}/{TRAINING_ROWS_ARTIFACT}"
        assert report.reference_row_count == 500
    finally:
        await channel.close()
        await runner.stop()
        core.close()

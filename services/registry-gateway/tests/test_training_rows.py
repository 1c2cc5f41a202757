"""The training rows a version's lineage names are the ones registered: the gateway keeps the sha256
of the run's ``training_set/training_rows.parquet`` at registration and answers it as the lineage's
training dataset digest, whatever the run's artifact (or the version's tags in MLflow) hold later.

The overwrite is made with the training-service's MLflow rights: a user of its own, created on the
suite's server, with MANAGE on the run's experiment only (what MLflow's creator grant gives the
training-service on the experiment it creates; docs/security.md, "MLflow")."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pandas as pd
import pytest
from conftest import PROMOTER, VIEWER, Stack, unique
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_testing.german_credit import german_credit_frame
from creditrisk_testing.mlflow import acting_as, acting_as_user
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from registry_gateway.registration import TRAINING_ROWS_PATH, TRAINING_ROWS_SHA256_TAG
from test_registry import FS, _notebook_run

DATASET_DIGEST_TAG = "registry.dataset.digest"


def _client(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows_file(folder: Path, *, poisoned: bool) -> Path:
    """A training rows file as the training-service logs it; ``poisoned``: every label flipped."""
    folder.mkdir(parents=True)
    rows = german_credit_frame(42).drop(columns=["event_timestamp", "label_timestamp"], errors="ignore")
    if poisoned:
        rows["creditability"] = 1 - rows["creditability"]
    path = folder / "training_rows.parquet"
    rows.to_parquet(path, index=False)
    return path


@contextmanager
def _as_training_service(stack: Stack, experiment_id: str) -> Iterator[None]:
    """Act as a user with the training-service's rights on ``experiment_id`` (MANAGE, nothing else)."""
    from mlflow.server.auth.client import AuthServiceClient

    user, password = f"trainer-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(18)
    with acting_as("admin"):
        admin = AuthServiceClient(stack.mlflow_url)
        admin.create_user(user, password)
        admin.grant_user_permission(user, "experiment", experiment_id, "MANAGE")
    with acting_as_user(user, password):
        yield


async def _register(stack: Stack, run_id: str, name: str) -> pb.ModelVersion:
    response = await stack.stub.RegisterModelVersion(
        pb.RegisterModelVersionRequest(
            run_id=run_id, artifact_path="model", registered_model_name=name, feature_service=FS
        ),
        metadata=PROMOTER,
    )
    return response.model_version


async def _lineage_digests(stack: Stack, name: str, version: int) -> tuple[str, str]:
    """The lineage digest of ``name``/``version`` as GetModelVersion and ListModelVersions answer it."""
    got = await stack.stub.GetModelVersion(
        pb.GetModelVersionRequest(model=refs_pb2.ModelRef(name=name, version=version)), metadata=VIEWER
    )
    listed = await stack.stub.ListModelVersions(pb.ListModelVersionsRequest(name=name), metadata=VIEWER)
    (in_list,) = [v for v in listed.model_versions if v.version == version]
    return got.model_version.lineage.training_dataset.digest, in_list.lineage.training_dataset.digest


async def test_the_lineage_keeps_the_registered_rows_sha256_after_an_overwrite(
    stack: Stack, tmp_path: Path
) -> None:
    client = _client(stack)
    run_id = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop=None, extra=None, rows=False)
    registered_rows = _rows_file(tmp_path / "registered", poisoned=False)
    await asyncio.to_thread(client.log_artifact, run_id, str(registered_rows), "training_set")
    registered = _sha256(registered_rows)
    name = unique("rows")
    mv = await _register(stack, run_id, name)
    assert mv.lineage.training_dataset.digest == f"sha256:{registered}"
    assert mv.tags[TRAINING_ROWS_SHA256_TAG] == f"sha256:{registered}"
    assert not mv.tags[DATASET_DIGEST_TAG].startswith("sha256:")  # MLflow's own digest, kept as before

    # the training-service's MLflow user overwrites its run's training rows after registration
    poisoned_rows = _rows_file(tmp_path / "poisoned", poisoned=True)
    poisoned = _sha256(poisoned_rows)
    assert poisoned != registered
    experiment_id = client.get_run(run_id).info.experiment_id
    with _as_training_service(stack, experiment_id):
        trainer = _client(stack)
        await asyncio.to_thread(trainer.log_artifact, run_id, str(poisoned_rows), "training_set")
        # it cannot rewrite the version's tags (no registry write): 403
        with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403|Permission"):
            trainer.set_model_version_tag(
                name, str(mv.version), TRAINING_ROWS_SHA256_TAG, f"sha256:{poisoned}"
            )
    downloaded = Path(
        await asyncio.to_thread(client.download_artifacts, run_id, TRAINING_ROWS_PATH, str(tmp_path))
    )
    assert _sha256(downloaded) == poisoned  # the overwrite took: the run now holds other rows
    assert await _lineage_digests(stack, name, mv.version) == (f"sha256:{registered}",) * 2

    # a registry writer rewriting the tag too: the lineage still answers what the gateway kept
    client.set_model_version_tag(name, str(mv.version), TRAINING_ROWS_SHA256_TAG, f"sha256:{poisoned}")
    assert await _lineage_digests(stack, name, mv.version) == (f"sha256:{registered}",) * 2
    assert stack.core is not None
    assert stack.core.store.training_rows_sha256(name, mv.version) == registered


async def test_a_run_without_training_rows_is_refused(stack: Stack) -> None:
    """Second attacker pass (issue 18): a version registered without rows had no sha256, so rows its
    run's writer logged later were read as its drift reference unverified. Refused, named."""
    run_id = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop=None, extra=None, rows=False)
    assert not [f for f in _client(stack).list_artifacts(run_id, "training_set")]
    name = unique("no-rows")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _register(stack, run_id, name)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"run {run_id!r} logged no training rows {TRAINING_ROWS_PATH}" in (refused.value.details() or "")
    assert not _client(stack).search_model_versions(f"name = '{name}'")


async def test_the_training_service_runs_lineage_is_their_rows_sha256(stack: Stack, tmp_path: Path) -> None:
    """A run the training-service's own code logged (fast scorer checked on the same rows)."""
    name = unique("trained")
    mv = await _register(stack, stack.runs["good"], name)
    assert mv.tags["registry.fast_scorer"] == "checked"
    path = Path(
        await asyncio.to_thread(
            _client(stack).download_artifacts, stack.runs["good"], TRAINING_ROWS_PATH, str(tmp_path)
        )
    )
    assert len(pd.read_parquet(path)) > 0
    assert mv.lineage.training_dataset.digest == f"sha256:{_sha256(path)}"


async def test_training_rows_that_are_not_one_file_are_refused(stack: Stack, tmp_path: Path) -> None:
    """A folder logged under the training rows' name has no single sha256 the drift-service could
    verify: the registration names it (FAILED_PRECONDITION), no version is created."""
    run_id = await asyncio.to_thread(_notebook_run, stack.mlflow_url, drop=None, extra=None, rows=False)
    folder = tmp_path / "training_rows.parquet"
    folder.mkdir()
    german_credit_frame(42).head(10).to_parquet(folder / "part-0.parquet", index=False)
    await asyncio.to_thread(_client(stack).log_artifacts, run_id, str(folder), TRAINING_ROWS_PATH)
    name = unique("rows-folder")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _register(stack, run_id, name)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"the training rows {TRAINING_ROWS_PATH} of run {run_id!r} are not one file" in (
        refused.value.details() or ""
    )
    assert not _client(stack).search_model_versions(f"name = '{name}'")

"""MLflow behind its basic-auth app with the platform's users (training_service.mlflow_auth), over
MLflow's REST API on a real server (the session's embedded one): anonymous calls get 401, the
readers (model-server, drift-service) get 403 for every registry write, the registry-gateway may
write, artifact downloads need a user with read on the run's experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.tracking import MlflowClient
from training_service.mlflow_auth import PLATFORM_USERS, password_variable

pytestmark = pytest.mark.slow  # a real mlflow server (session fixture)

MODEL = "credit-risk-auth-test"
#: The session's passwords (tests/conftest.py gives every server of the session the same).
PASSWORDS = {user: os.environ[password_variable(user)] for user in PLATFORM_USERS}


def call(
    url: str, method: str, path: str, user: str | None, body: dict[str, Any] | None = None
) -> requests.Response:
    """One REST call as ``user`` (None: anonymous)."""
    auth = (user, PASSWORDS[user]) if user else None
    return requests.request(method, f"{url}{path}", json=body, auth=auth, timeout=30)


@pytest.fixture(scope="module")
def run(mlflow_embedded: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A training run with a training-rows artifact, logged as the training-service user (its
    experiment created by it), and a registered model with one version made by the registry-gateway."""
    client = MlflowClient(tracking_uri=mlflow_embedded)
    experiment = client.create_experiment("auth-test")
    run_id = client.create_run(experiment).info.run_id
    rows = tmp_path_factory.mktemp("rows") / "training_rows.csv"
    rows.write_text("applicant_id,creditability\n1,0\n")
    client.log_artifact(run_id, str(rows), artifact_path="training_set")
    artifact_uri = client.get_run(run_id).info.artifact_uri  # mlflow-artifacts:/<exp>/<run>/artifacts
    path = artifact_uri.removeprefix("mlflow-artifacts:/") + "/training_set/training_rows.csv"
    assert call(
        mlflow_embedded,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        "registry-gateway",
        {"name": MODEL},
    ).ok
    created = call(
        mlflow_embedded,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        "registry-gateway",
        {"name": MODEL, "source": artifact_uri, "run_id": run_id},
    )
    assert created.status_code == 200, created.text
    return {"run_id": run_id, "experiment": experiment, "artifact": path, "source": artifact_uri}


def registry_writes(run: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The registry writes the issue's bypass used: a version, an alias, a tag (model and version)."""
    return [
        (
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            {"name": MODEL, "source": run["source"], "run_id": run["run_id"]},
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            {"name": MODEL, "alias": "champion", "version": "1"},
        ),
        (
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": MODEL, "version": "1", "key": "approved", "value": "x"},
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            {"name": MODEL, "key": "approved", "value": "x"},
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "champion"}),
    ]


def test_health_is_open_and_anonymous_calls_get_401(mlflow_embedded: str, run: dict[str, str]) -> None:
    assert requests.get(f"{mlflow_embedded}/health", timeout=10).status_code == 200
    anonymous = [
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={MODEL}", None),
        ("GET", f"/api/2.0/mlflow/runs/get?run_id={run['run_id']}", None),
        ("GET", f"/api/2.0/mlflow-artifacts/artifacts/{run['artifact']}", None),
        ("POST", "/api/2.0/mlflow/experiments/create", {"name": "anonymous"}),
        *registry_writes(run),
    ]
    for method, path, body in anonymous:
        assert call(mlflow_embedded, method, path, None, body).status_code == 401, path
    wrong = requests.get(
        f"{mlflow_embedded}/api/2.0/mlflow/registered-models/get?name={MODEL}",
        auth=("model-server", "not-its-password"),
        timeout=10,
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize("reader", ["model-server", "drift-service"])
def test_readers_read_but_every_registry_write_is_403(
    mlflow_embedded: str, run: dict[str, str], reader: str
) -> None:
    for method, path, body in registry_writes(run):
        response = call(mlflow_embedded, method, path, reader, body)
        assert response.status_code == 403, (path, response.status_code, response.text)
    assert call(mlflow_embedded, "GET", f"/api/2.0/mlflow/registered-models/get?name={MODEL}", reader).ok
    assert call(mlflow_embedded, "GET", f"/api/2.0/mlflow/runs/get?run_id={run['run_id']}", reader).ok
    download = call(mlflow_embedded, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{run['artifact']}", reader)
    assert download.status_code == 200
    assert download.text.startswith("applicant_id")
    # nor may it write the training run (the rows, metrics) of an experiment it only reads
    logged = call(
        mlflow_embedded,
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        reader,
        {"run_id": run["run_id"], "key": "forged", "value": 1.0, "timestamp": 0, "step": 0},
    )
    assert logged.status_code == 403


def test_training_service_may_not_write_the_registry(mlflow_embedded: str, run: dict[str, str]) -> None:
    for method, path, body in registry_writes(run):
        assert call(mlflow_embedded, method, path, "training-service", body).status_code == 403, path


def test_registry_gateway_writes_versions_aliases_and_tags(mlflow_embedded: str, run: dict[str, str]) -> None:
    for method, path, body in registry_writes(run):
        response = call(mlflow_embedded, method, path, "registry-gateway", body)
        assert response.status_code == 200, (path, response.text)


def test_artifact_download_needs_read_on_the_experiment(mlflow_embedded: str, run: dict[str, str]) -> None:
    """The training-service reads its own experiment's rows, not those of one it was not granted."""
    own = call(
        mlflow_embedded, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{run['artifact']}", "training-service"
    )
    assert own.status_code == 200
    created = call(
        mlflow_embedded, "POST", "/api/2.0/mlflow/experiments/create", "registry-gateway", {"name": "rg-own"}
    )
    experiment = created.json()["experiment_id"]
    other = call(
        mlflow_embedded,
        "POST",
        "/api/2.0/mlflow/runs/create",
        "registry-gateway",
        {"experiment_id": experiment},
    ).json()["run"]["info"]
    path = other["artifact_uri"].removeprefix("mlflow-artifacts:/") + "/x.csv"
    put = requests.put(
        f"{mlflow_embedded}/api/2.0/mlflow-artifacts/artifacts/{path}",
        data=b"a,b\n",
        auth=("registry-gateway", PASSWORDS["registry-gateway"]),
        timeout=30,
    )
    assert put.status_code == 200, put.text
    refused = call(mlflow_embedded, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", "training-service")
    assert refused.status_code == 403
    assert (
        call(
            mlflow_embedded, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", "model-server"
        ).status_code
        == 200
    )


def test_prepare_is_idempotent_and_keeps_secrets_private(tmp_path: Path) -> None:
    from training_service.mlflow_auth import prepare

    first = prepare(tmp_path)
    second = prepare(tmp_path)
    assert first.passwords == second.passwords  # given by the session's environment, admin's kept
    assert first.passwords["registry-gateway"] == PASSWORDS["registry-gateway"]
    for name in ("secrets.json", "basic_auth.ini", "users.db"):
        assert (tmp_path / "auth" / name).stat().st_mode & 0o077 == 0
    stored = json.loads((tmp_path / "auth" / "secrets.json").read_text())
    assert stored["password:admin"] == first.passwords["admin"]


def test_the_server_takes_the_users_passwords_from_their_files(tmp_path: Path) -> None:
    """The local stack gives ``CREDITRISK_MLFLOW_PASSWORD_<USER>_FILE`` (its data folder's
    ``secrets/mlflow-<user>.password``, never a value): ``python -m training_service.mlflow_server``
    provisions each user with its file's password; a missing file exits 2 naming it."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITRISK_MLFLOW_PASSWORD_")}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for user in PLATFORM_USERS:
        (secrets / f"mlflow-{user}.password").write_text(f"from-the-file-{user}-0123456789\n")
        env[password_variable(user) + "_FILE"] = str(secrets / f"mlflow-{user}.password")
    command = [sys.executable, "-m", "training_service.mlflow_server", "--print", "--dir"]
    missing = tmp_path / "nope"
    bad = {**env, password_variable("model-server") + "_FILE": str(missing)}
    done = subprocess.run(
        [*command, str(tmp_path / "bad")], env=bad, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"CREDITRISK_MLFLOW_PASSWORD_MODEL_SERVER_FILE: cannot read {missing}: ")
    assert not (tmp_path / "bad").exists()  # stopped before anything was provisioned
    done = subprocess.run(
        [*command, str(tmp_path / "mlflow")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "from-the-file" not in done.stdout + done.stderr
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{tmp_path / 'mlflow' / 'auth' / 'users.db'}")
    try:
        for user in PLATFORM_USERS:
            assert store.authenticate_user(user, f"from-the-file-{user}-0123456789", use_primary=True), user
            assert not store.authenticate_user(user, PASSWORDS[user], use_primary=True), user
    finally:
        store.engine.dispose()

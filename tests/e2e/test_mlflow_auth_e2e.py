"""MLflow behind its basic-auth app, through the stack (deploy/stack/local.toml): the issue's bypass
replayed against the stack's tracking server and refused.

The registry-gateway registers a version of the session's trained run (its MLflow user writes the
registry); then, over MLflow's REST API, the same writes the bypass used (a model version copying
the registered one's source, the ``champion`` alias moved onto it, a tag set) are refused without
credentials (401) and with the model-server's and the drift-service's (403, readers), which still
read the registry and the run's training rows; the registered model is unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from e2e_stack import MODEL_NAME, VERIFY, Stack, mlflow_auth, register, trained_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _writes(source: str, run_id: str, version: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            {"name": MODEL_NAME, "source": source, "run_id": run_id},
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            {"name": MODEL_NAME, "alias": "champion", "version": version},
        ),
        (
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": MODEL_NAME, "version": version, "key": "k", "value": "v"},
        ),
    ]


def test_mlflow_refuses_anonymous_and_reader_writes(stack: Stack) -> None:
    job = trained_run(stack)
    registered = register(stack, job.result.mlflow_run_id)  # the registry-gateway's MLflow user writes
    url = f"https://{stack.targets['mlflow']}"
    admin_view = mlflow_auth("registry-gateway")
    version = httpx.get(
        f"{url}/api/2.0/mlflow/model-versions/get",
        params={"name": MODEL_NAME, "version": str(registered.version)},
        auth=admin_view,
        timeout=30,
        verify=VERIFY,
    ).json()["model_version"]
    before = httpx.get(
        f"{url}/api/2.0/mlflow/registered-models/get",
        params={"name": MODEL_NAME},
        auth=admin_view,
        timeout=30,
        verify=VERIFY,
    ).json()["registered_model"]

    assert httpx.get(f"{url}/health", timeout=10, verify=VERIFY).status_code == 200
    reads = [
        ("GET", "/api/2.0/mlflow/registered-models/get", {"name": MODEL_NAME}),
        ("GET", "/api/2.0/mlflow/runs/get", {"run_id": job.result.mlflow_run_id}),
        (
            "GET",
            "/get-artifact",
            {"path": "training_set/training_rows.parquet", "run_uuid": job.result.mlflow_run_id},
        ),
    ]
    writes = _writes(version["source"], job.result.mlflow_run_id, str(registered.version))
    refused: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60, verify=VERIFY) as client:
        for method, path, params in reads:
            assert client.request(method, path, params=params).status_code == 401, path
        for method, path, body in writes:
            assert client.request(method, path, json=body).status_code == 401, path
            refused["anonymous"] = refused.get("anonymous", 0) + 1
        for reader in ("model-server", "drift-service"):
            auth = mlflow_auth(reader)
            for method, path, params in reads:
                assert client.request(method, path, params=params, auth=auth).status_code == 200, (
                    reader,
                    path,
                )
            for method, path, body in writes:
                response = client.request(method, path, json=body, auth=auth)
                assert response.status_code == 403, (reader, path, response.status_code, response.text)
                refused[reader] = refused.get(reader, 0) + 1
        after = client.get(
            "/api/2.0/mlflow/registered-models/get", params={"name": MODEL_NAME}, auth=admin_view
        ).json()["registered_model"]
    assert after.get("aliases") == before.get("aliases")
    assert after.get("latest_versions") == before.get("latest_versions")
    print(f"mlflow auth e2e: writes refused {refused}")

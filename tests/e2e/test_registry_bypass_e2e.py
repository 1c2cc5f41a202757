"""The registry cannot be bypassed: the attack of issue 18 replayed on the full stack.

Through MLflow's own REST API, with a stolen MLflow writer credential (the registry-gateway's own
MLflow user: MLflow's basic-auth app refuses every other user's registry writes, tested in
test_mlflow_auth_e2e.py) but no gRPC credential of the registry-gateway, a writer creates a version
copying the champion's source, run, digest tags and approval tag, and moves ``champion`` to it:
the champion slot (seldon-core, its own process) keeps serving the approved version and reports
the refusal. Then the downgrade: the alias put back, in MLflow, on an older version that the
gateway once approved as champion (forced, then rolled back): refused as well. The alias is put
back where the gateway left it at the end. Figures in docs/security.md.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from typing import Any

import pytest
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk.registry.v1 import registry_service_pb2_grpc as pb_grpc
from e2e_stack import (
    ADMIN_TOKEN,
    MODEL_NAME,
    MODEL_SERVER_HEADERS,
    VERIFY,
    Stack,
    bearer,
    first_champion,
    mlflow_auth,
    register,
    stack_channel,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _mlflow(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"https://{stack.target('mlflow')}/api/2.0/mlflow/{path}"
    data = None if body is None else json.dumps(body).encode()
    user, password = mlflow_auth("registry-gateway")  # the stolen writer credential
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(request, timeout=30, context=VERIFY) as response:
        return dict(json.loads(response.read() or b"{}"))


def _status(http: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{http}/health/status", timeout=10, context=VERIFY) as response:
        return dict(json.loads(response.read()))


def _predict_version(http: str, record: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{http}/api/v1.0/predictions",
        data=json.dumps({"jsonData": record}).encode(),
        headers={"Content-Type": "application/json", **MODEL_SERVER_HEADERS},
    )
    with urllib.request.urlopen(request, timeout=30, context=VERIFY) as response:
        return str(json.loads(response.read())["jsonData"]["model_version"])


def _move_alias(stack: Stack, version: str) -> None:
    _mlflow(
        stack,
        "POST",
        "registered-models/alias",
        {"name": MODEL_NAME, "alias": "champion", "version": version},
    )


def _wait_refused(http: str, version: str, timeout_s: float = 60.0) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    while True:
        status = _status(http)
        if version in status.get("refused", {}):
            return status, time.monotonic() - started
        assert time.monotonic() - started < timeout_s, f"version {version} not refused: {status}"
        time.sleep(0.2)


def test_mlflow_bypass_and_downgrade_are_refused(stack: Stack) -> None:
    first_champion(stack)  # a champion exists; earlier tests of the session may have moved it since
    champion = str(
        _mlflow(stack, "GET", f"registered-models/alias?name={MODEL_NAME}&alias=champion")["model_version"][
            "version"
        ]
    )
    http = f"https://{stack.target('model-server-champion')}"
    deadline = time.monotonic() + 120
    while _status(http).get("version") != champion:
        assert time.monotonic() < deadline, _status(http)
        time.sleep(0.5)
    record = {"duration_in_month": 12, "credit_amount": 2500}
    assert _predict_version(http, record) == champion
    try:
        # 1. the bypass: a copy of the champion (source, run, every tag) moved to champion in MLflow
        mv = _mlflow(stack, "GET", f"model-versions/get?name={MODEL_NAME}&version={champion}")[
            "model_version"
        ]
        tags = [{"key": t["key"], "value": t["value"]} for t in mv.get("tags", [])]
        assert any(t["key"] == "creditrisk.approval.champion" for t in tags)
        body = {"name": MODEL_NAME, "source": mv["source"], "run_id": mv["run_id"], "tags": tags}
        if str(mv["source"]).startswith("models:/"):  # a logged model: MLflow wants its id too
            body["model_id"] = mv.get("model_id") or str(mv["source"]).removeprefix("models:/")
        copy = str(_mlflow(stack, "POST", "model-versions/create", body)["model_version"]["version"])
        _move_alias(stack, copy)
        status, seconds = _wait_refused(http, copy)
        assert status["version"] == champion
        assert "mismatch" in status["refused"][copy]
        assert _predict_version(http, record) == champion
        print(f"\nbypass: copy v{copy} refused within {seconds:.1f} s: {status['refused'][copy]}")

        # 2. the downgrade: a version the gateway approved as champion earlier (forced, rolled back)
        _move_alias(stack, champion)
        older = str(register(stack, mv["run_id"]).version)
        with stack_channel(stack.target("registry-gateway")) as channel:
            stub = pb_grpc.ModelRegistryServiceStub(channel)
            stub.PromoteModelVersion(
                pb.PromoteModelVersionRequest(
                    name=MODEL_NAME, version=int(older), force=True, reason="e2e: downgrade replay"
                ),
                metadata=bearer(ADMIN_TOKEN),
                timeout=300,
            )
            deadline = time.monotonic() + 120
            while _status(http).get("version") != older:
                assert time.monotonic() < deadline, _status(http)
                time.sleep(0.5)
            stub.RollbackChampion(
                pb.RollbackChampionRequest(name=MODEL_NAME, reason="e2e: downgrade replay"),
                metadata=bearer(ADMIN_TOKEN),
                timeout=60,
            )
        deadline = time.monotonic() + 120
        while _status(http).get("version") != champion:
            assert time.monotonic() < deadline, _status(http)
            time.sleep(0.5)
        _move_alias(stack, older)  # its approval is valid, but older than the rollback's
        status, seconds = _wait_refused(http, older)
        assert status["version"] == champion
        assert "downgrade" in status["refused"][older]
        assert _predict_version(http, record) == champion
        print(f"downgrade: v{older} refused within {seconds:.1f} s: {status['refused'][older]}")
        print(f"refusal counts of one serving process: {status['refusal_counts']}")
    finally:
        _move_alias(stack, champion)  # where the gateway left it (same approval: nothing to load)

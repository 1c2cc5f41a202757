"""Both runtimes, both protocols, as real processes: every German credit row scores exactly as the
same scorer in process (<= 1e-12), and the error mappings."""

from __future__ import annotations

import re
import time
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from model_server.signature import columns_from_records
from model_server.testing import fixtures as fx
from model_server.testing.clients import Clients, ScoreError

AUTH = fx.auth_headers()  # the slots check credentials (model_server.access)

PATHS = ["seldon_rest", "seldon_grpc", "mlserver_rest", "mlserver_grpc"]


@pytest.fixture(scope="module")
def clients(stack: Any, inproc_v1: Any) -> Clients:
    return Clients(
        model="credit-risk",
        kinds=inproc_v1.signature,
        seldon_http=stack.seldon_http,
        seldon_grpc=stack.seldon_grpc,
        mlserver_http=stack.mlserver_http,
        mlserver_grpc=stack.mlserver_grpc,
        headers=fx.auth_headers(),
    )


@pytest.fixture(scope="module")
def expected(stack: Any, inproc_v1: Any) -> np.ndarray:
    """Version 1's fast scorer in this process, one row at a time (as the servers score them)."""
    out = []
    for rec in stack.records:
        cols = columns_from_records([rec], inproc_v1.columns, "jsonData")
        out.append(inproc_v1.fast.predict_default(cols, 1)[0])
    return np.array(out)


@pytest.mark.parametrize("path", PATHS)
def test_every_row_scores_exactly(path: str, clients: Clients, stack: Any, expected: np.ndarray) -> None:
    call = getattr(clients, path)
    got, versions = [], set()
    for rec in stack.records:
        p, version, _ = call([rec])
        got.append(p[0])
        versions.add(version)
    assert len(got) == len(stack.records) == 1000
    assert float(np.max(np.abs(np.array(got) - expected))) <= 1e-12
    assert versions == {stack.versions["lr"]}


@pytest.mark.parametrize("path", PATHS)
def test_batch_and_meta(
    path: str, clients: Clients, stack: Any, expected: np.ndarray, inproc_v1: Any
) -> None:
    p, version, out = getattr(clients, path)(stack.records[:50])
    # the same call in process: a 50-row batch (onnxruntime's batched kernels round in float32
    # differently from one-row calls, up to ~1e-7, so a batch is compared with a batch)
    same = inproc_v1.fast.predict_default(
        columns_from_records(stack.records[:50], inproc_v1.columns, "jsonData"), 50
    )
    assert float(np.max(np.abs(np.array(p) - same))) <= 1e-12
    assert version == stack.versions["lr"]
    if path.startswith("seldon"):
        tags = out["meta"]["tags"]
        assert tags["model_name"] == "credit-risk"
        assert tags["alias"] == "champion"
        assert tags["decision_threshold"] == inproc_v1.threshold
        assert tags["decision"] == ["reject" if x >= inproc_v1.threshold else "approve" for x in p]


def test_seldon_rest_errors(stack: Any) -> None:
    url = f"{stack.seldon_http}/api/v1.0/predictions"
    r = httpx.post(url, json={"jsonData": {"credit_amount": "1169"}}, headers=AUTH)
    assert r.status_code == 400
    assert "jsonData.credit_amount" in r.json()["status"]["info"]
    r = httpx.post(url, json={"data": {"ndarray": [["a", 1]]}}, headers=AUTH)
    assert r.status_code == 400
    assert "jsonData" in r.json()["status"]["info"]
    assert httpx.get(f"{stack.seldon_http}/no/such/route").status_code == 404


def test_seldon_grpc_errors_are_unknown(clients: Clients) -> None:
    # seldon-core's gRPC path cannot carry a status: UNKNOWN, with the field named in the details
    with pytest.raises(ScoreError) as err:
        clients.seldon_grpc([{"purpose": 3}])
    assert err.value.code == grpc.StatusCode.UNKNOWN
    assert "jsonData.purpose" in err.value.body


def test_mlserver_errors(stack: Any, clients: Clients) -> None:
    body = {"inputs": [{"name": "duration_in_month", "shape": [1], "datatype": "BYTES", "data": ["6"]}]}
    r = httpx.post(f"{stack.mlserver_http}/v2/models/credit-risk/infer", json=body, headers=AUTH)
    assert r.status_code == 400
    assert "inputs.duration_in_month" in r.text
    body = {"inputs": [{"name": "no_such_feature", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    r = httpx.post(f"{stack.mlserver_http}/v2/models/credit-risk/infer", json=body, headers=AUTH)
    assert r.status_code == 400
    assert "inputs.no_such_feature" in r.text
    assert httpx.get(f"{stack.mlserver_http}/v2/no/such/route").status_code == 404
    wrong = {**clients.kinds, "purpose": "double"}  # a string feature sent as FP64
    with pytest.raises(ScoreError) as err:
        Clients(
            model="credit-risk", kinds=wrong, mlserver_grpc=stack.mlserver_grpc, headers=AUTH
        ).mlserver_grpc([{"purpose": 3.0}])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs.purpose" in err.value.body


def test_health_and_metrics(stack: Any, clients: Clients) -> None:
    ready = httpx.get(f"{stack.seldon_http}/health/ready").json()
    assert ready["ready"]
    assert ready["version"] == stack.versions["lr"]
    assert len(ready["processes"]) == 2
    assert httpx.get(f"{stack.seldon_http}/health/ping").status_code == 200
    assert httpx.get(f"{stack.seldon_http}/health/status").status_code == 200
    # answers of its own through both serving processes (each process's gauge is its last
    # answer's): their custom metrics reach seldon-core's store within one flush interval (1 s)
    clients.seldon_rest([stack.records[0]])
    clients.seldon_grpc([stack.records[0]])
    gauge = r'model_server_serving_version\{[^}]*alias="champion"[^}]*\} (\S+)'
    deadline = time.monotonic() + 10
    while True:
        metrics = httpx.get(f"{stack.seldon_metrics}/metrics").text
        served = [float(v) for v in re.findall(gauge, metrics)]
        if set(served) == {float(stack.versions["lr"])}:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "model_server_rows_scored_total" in metrics
    # the version serving, per serving process (seldon-core's GAUGE from the answer's meta.metrics)
    assert served, metrics[-2000:]
    assert set(served) == {float(stack.versions["lr"])}, metrics[-2000:]
    assert httpx.get(f"{stack.mlserver_http}/v2/health/ready").status_code == 200
    assert httpx.get(f"{stack.mlserver_http}/v2/models/credit-risk/ready").status_code == 200

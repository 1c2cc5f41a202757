"""Following the alias: a swap under load with zero failed requests, digest refusal, drain.

The only file that moves the session's aliases: each test starts with both on version 1, served by
every process, and puts them back there (:func:`on_version_1`), so that every other file, before
or after this one, finds version 1 serving.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from model_server import readiness
from model_server.testing import fixtures as fx
from model_server.testing.clients import Clients

MODEL = "credit-risk"


def _wait(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _states(state_dir: Any) -> list[dict[str, Any]]:
    return readiness.read_states(state_dir)


@pytest.fixture(autouse=True)
def on_version_1(stack: Any) -> Iterator[None]:
    """Both aliases on version 1 and served by both runtimes, before and after each test."""
    stack.serve(stack.versions["lr"])
    yield
    stack.serve(stack.versions["lr"])


def test_swap_under_load_zero_failures(stack: Any, inproc_v1: Any) -> None:
    v1, v2 = stack.versions["lr"], stack.versions["hgb"]
    clients = {
        path: Clients(
            model=MODEL,
            kinds=inproc_v1.signature,
            seldon_http=stack.seldon_http,
            seldon_grpc=stack.seldon_grpc,
            mlserver_http=stack.mlserver_http,
            mlserver_grpc=stack.mlserver_grpc,
            headers=fx.auth_headers(),
        )
        for path in ("seldon_rest", "seldon_grpc", "mlserver_rest", "mlserver_grpc")
    }
    stop = threading.Event()
    seen: dict[str, list[str]] = {p: [] for p in clients}
    failures: list[str] = []

    def fire(path: str) -> None:
        call = getattr(clients[path], path)
        i = 0
        while not stop.is_set():
            try:
                _, version, _ = call([stack.records[i % len(stack.records)]])
                seen[path].append(version)
            except Exception as exc:
                failures.append(f"{path}: {exc!r}")
            i += 1

    threads = [threading.Thread(target=fire, args=(p,)) for p in clients]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        fx.set_alias(stack.tracking_uri, MODEL, "champion", v2)
        fx.set_alias(stack.tracking_uri, MODEL, "challenger", v2)
        # the seldon slot reports v2 ready only once its REST AND gRPC processes both swapped
        _wait(lambda: httpx.get(f"{stack.seldon_http}/health/ready").json().get("version") == v2, 60)
        _wait(lambda: all(s["version"] == v2 for s in _states(stack.mlserver_state)), 60)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == []
    for path, versions in seen.items():
        assert versions[0] == v1, path
        assert versions[-1] == v2, path
        # monotone: once a process answered v2 it never answers v1 again
        first_v2 = versions.index(v2)
        assert set(versions[first_v2:]) == {v2}, path
    ready = httpx.get(f"{stack.seldon_http}/health/ready").json()
    assert ready["ready"]
    assert set(ready["processes"].values()) == {v2}
    assert len(ready["processes"]) == 2
    # MLServer's serving-version gauge follows the swap (read from the slot at each scrape)
    metrics = httpx.get(f"{stack.mlserver_metrics}/metrics", timeout=10).text
    served = re.search(r'model_server_serving_version\{alias="challenger"\} (\S+)', metrics)
    assert served is not None, metrics[-2000:]
    assert float(served.group(1)) == float(v2)


def test_digest_refusal_keeps_serving(stack: Any, inproc_v1: Any) -> None:
    serving = stack.versions["lr"]  # what the refusals must leave serving
    c = Clients(
        model=MODEL,
        kinds=inproc_v1.signature,
        seldon_http=stack.seldon_http,
        mlserver_http=stack.mlserver_http,
        headers=fx.auth_headers(),
    )
    for bad, reason in (
        (stack.versions["tampered"], "sha256 mismatch for fast_scorer/model.onnx"),
        (stack.versions["untagged"], "unsigned: no signed approval"),
    ):
        fx.set_alias(stack.tracking_uri, MODEL, "champion", bad)
        fx.set_alias(stack.tracking_uri, MODEL, "challenger", bad)
        for state_dir, expected in ((stack.seldon_state, 2), (stack.mlserver_state, 1)):
            _wait(
                lambda d=state_dir, bad=bad, expected=expected: (
                    all(bad in s["refused"] for s in _states(d)) and len(_states(d)) == expected
                )
            )
            for s in _states(state_dir):
                assert reason in s["refused"][bad]
                assert s["version"] == serving
                assert s["target"] == bad
        assert c.seldon_rest([stack.records[0]])[1] == serving
        assert c.mlserver_rest([stack.records[0]])[1] == serving
        ready = httpx.get(f"{stack.seldon_http}/health/ready").json()
        assert ready["ready"]
        assert ready["version"] == serving
    log = (stack.work / "seldon.log").read_text()
    assert "refused to load" in log


def test_drain_flips_readiness(stack: Any) -> None:
    readiness.request_drain(stack.seldon_state)
    readiness.request_drain(stack.mlserver_state)
    try:
        r = httpx.get(f"{stack.seldon_http}/health/ready")
        assert r.status_code == 503
        assert r.json()["reason"] == "draining"
        assert httpx.get(f"{stack.seldon_http}/health/status").status_code == 503
        assert httpx.get(f"{stack.mlserver_http}/v2/health/ready").status_code != 200
        # still scoring: in-flight and late requests are served while the supervisor waits
        body = {"jsonData": stack.records[0]}
        assert (
            httpx.post(
                f"{stack.seldon_http}/api/v1.0/predictions", json=body, headers=fx.auth_headers()
            ).status_code
            == 200
        )
    finally:
        (stack.seldon_state / readiness.DRAIN_FILE).unlink()
        (stack.mlserver_state / readiness.DRAIN_FILE).unlink()
    assert httpx.get(f"{stack.seldon_http}/health/ready").status_code == 200
    assert json.loads(httpx.get(f"{stack.seldon_http}/health/ready").text)["ready"]

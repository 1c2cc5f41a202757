"""The inference-gateway's lossless prediction log end to end: the drift-service killed and
restarted under a bounded load.

N predictions go through the gateway (REST, a few concurrent clients) with application times in a
simulated range of their own, so that the drift-service's window over that range holds exactly this
test's events. Part way through the drift-service is stopped (the stack's supervisor) and, after
more predictions were answered while it is down, restarted on the same address (the gateway read it
at its start). Every prediction is answered 200 throughout; once the gateway's durable buffer has
drained, the drift-service stores exactly N events for the window (none lost, none doubled:
``LogPredictions`` is idempotent by event id).
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from creditrisk.common.v1 import serving_pb2, time_range_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from e2e_stack import (
    CANARY_SHARE_KEY,
    CHALLENGER_MODE_KEY,
    GATEWAY_HEADERS,
    MODEL_NAME,
    VERIFY,
    Stack,
    authed_channel,
    challenger_version,
    drift_data_dir,
    first_champion,
    gateway_channel,
    inference_gateway_challenger_http,
    inference_gateway_http,
)
from google.protobuf import timestamp_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

#: Predictions of the kill/restart test and its concurrent clients.
N = 120
CLIENTS = 3
#: The simulated application times of the kill/restart test: one second per prediction.
WINDOW_START = datetime(2021, 3, 1, tzinfo=UTC)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def _materialized(stack: Stack) -> None:
    """Materialize the online store once per session (shared flag with the other gateway tests)."""
    if stack.cache.get("materialized"):
        return
    with authed_channel(stack.target("feature-service")) as channel:
        fpb_grpc.FeatureStoreServiceStub(channel).Materialize(
            fpb.MaterializeRequest(
                range=time_range_pb2.TimeRange(
                    start=_ts(datetime(2022, 1, 1, tzinfo=UTC)), end=_ts(datetime.now(UTC))
                )
            ),
            timeout=120,
        )
    stack.cache["materialized"] = True


def _stored(stack: Stack, start: datetime, end: datetime) -> int:
    """Prediction events of the model stored by the drift-service with an event time in
    ``[start, end)``, every version summed (GetPerformance's prediction_count)."""
    with authed_channel(stack.targets["drift-service"]) as channel:  # the pipeline: read_monitoring
        stub = dpb_grpc.DriftServiceStub(channel)
        window = dpb.Window(
            model_name=MODEL_NAME, time_range=time_range_pb2.TimeRange(start=_ts(start), end=_ts(end))
        )
        try:
            reports = stub.GetPerformance(dpb.GetPerformanceRequest(window=window), timeout=30).reports
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                return 0
            raise
        return sum(r.prediction_count for r in reports)


def _restart_drift_service(stack: Stack, port: int) -> None:
    """Start the drift-service again on its previous port (the gateway keeps its address), with the
    session's ``OTEL_*`` and a metrics port like any start (:meth:`Stack.start`)."""
    stack.start("drift-service", port=port)


def test_drift_service_killed_and_restarted_under_load_loses_nothing(stack: Stack) -> None:
    began = time.monotonic()
    first_champion(stack)
    _materialized(stack)
    base = inference_gateway_http(stack)
    drift_port = int(stack.targets["drift-service"].rsplit(":", 1)[1])
    end = WINDOW_START + timedelta(seconds=N)
    assert _stored(stack, WINDOW_START, end) == 0  # the window is this test's own

    lock = threading.Lock()
    next_index = 0
    #: requests are taken below this bound: the stop, the outage and the restart each see traffic
    allowed = N // 2
    answered: list[str] = []
    failures: list[str] = []

    def load() -> None:
        nonlocal next_index
        with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
            while True:
                with lock:
                    if next_index >= N:
                        return
                    i = next_index if next_index < allowed else -1
                    if i >= 0:
                        next_index += 1
                if i < 0:
                    time.sleep(0.05)
                    continue
                asked = {
                    "applicant_id": 1 + (i % 1000),
                    "event_time": (WINDOW_START + timedelta(seconds=i)).isoformat(),
                }
                try:
                    response = client.post("/v1/predict", json=asked)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                with lock:
                    answered.append(response.json()["event_id"])
                time.sleep(0.05)  # a bounded, steady load

    def wait_answered(count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(answered) + len(failures) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        wait_answered(N // 4, 60)
        stack.stop("drift-service")  # under load: requests keep flowing
        with lock:
            down_at = len(answered)
            allowed = 3 * N // 4
        wait_answered(3 * N // 4, 60)  # these are answered while it is down
        answered_while_down = len(answered) - down_at
        with lock:
            allowed = N
        _restart_drift_service(stack, drift_port)  # under load again
    finally:
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures[:5]
    assert len(answered) == N
    assert len(set(answered)) == N
    assert answered_while_down >= N // 4

    deadline = time.monotonic() + 90
    while (stored := _stored(stack, WINDOW_START, end)) < N and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored == N
    time.sleep(2)  # nothing more arrives (no duplicate stored)
    assert _stored(stack, WINDOW_START, end) == N
    with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
        assert client.get("/readyz").status_code == 200
    print(
        f"gateway e2e: drift-service killed under load, {answered_while_down} answered while down, "
        f"{N} sent == {stored} stored, {time.monotonic() - began:.1f} s"
    )


#: Predictions of the shadow test and their simulated application times.
SHADOW_N = 40
SHADOW_WINDOW_START = datetime(2021, 4, 1, tzinfo=UTC)


def _stored_modes(stack: Stack, start: datetime, end: datetime) -> list[tuple[int, int, str, str]]:
    """``(model_version, mode, event_id, primary_event_id)`` of the events stored in the window,
    read from the drift-service's SQLite store (read-only: the gRPC API has no per-mode count)."""
    db = drift_data_dir(stack) / "drift.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT model_version, mode, event_id, primary_event_id FROM prediction_events "
            "WHERE model_name = ? AND event_time >= ? AND event_time < ?",
            (MODEL_NAME, start.replace(tzinfo=None).isoformat(" "), end.replace(tzinfo=None).isoformat(" ")),
        ).fetchall()
    return [(int(v), int(m), e, p or "") for v, m, e, p in rows]


def _wait_challenger_ready(gateway: str, version: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        with gateway_channel(gateway) as channel:
            models = (
                pb_grpc.InferenceServiceStub(channel)
                .ListServingModels(pb.ListServingModelsRequest(), timeout=30)
                .models
            )
        slots = [m for m in models if m.slot == serving_pb2.SERVING_SLOT_CHALLENGER]
        if slots and slots[0].ready and slots[0].model_version == version:
            return slots[0]
        assert time.monotonic() < deadline, models
        time.sleep(0.5)


def test_shadow_challenger_answers_nothing_and_is_logged_as_shadow(stack: Stack) -> None:
    began = time.monotonic()
    first_champion(stack)
    _materialized(stack)
    challenger = challenger_version(stack)
    stack.cache[CHALLENGER_MODE_KEY] = "shadow"
    base = inference_gateway_challenger_http(stack)
    champion = stack.cache["champion_version"]
    assert challenger != champion
    slot = _wait_challenger_ready(stack.targets["inference-gateway-challenger"], challenger)
    assert slot.alias == "challenger"
    assert slot.mode == serving_pb2.SERVING_MODE_SHADOW
    end = SHADOW_WINDOW_START + timedelta(seconds=SHADOW_N)
    assert _stored(stack, SHADOW_WINDOW_START, end) == 0

    answered: set[str] = set()
    with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
        for i in range(SHADOW_N):
            asked = {
                "applicant_id": 1 + i,
                "event_time": (SHADOW_WINDOW_START + timedelta(seconds=i)).isoformat(),
            }
            response = client.post("/v1/predict", json=asked)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["serving_slot"] == "SERVING_SLOT_CHAMPION"
            assert int(body["model_version"]) == champion
            answered.add(body["event_id"])
    assert len(answered) == SHADOW_N

    deadline = time.monotonic() + 60
    while (stored := _stored(stack, SHADOW_WINDOW_START, end)) < 2 * SHADOW_N and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored == 2 * SHADOW_N
    rows = _stored_modes(stack, SHADOW_WINDOW_START, end)
    primary = {e: (v, m) for v, m, e, _ in rows if e in answered}
    shadows = [(v, m, p) for v, m, e, p in rows if e not in answered]
    assert set(primary.values()) == {(champion, int(serving_pb2.SERVING_MODE_CHAMPION))}
    assert len(primary) == SHADOW_N
    assert len(shadows) == SHADOW_N
    assert {(v, m) for v, m, _ in shadows} == {(challenger, int(serving_pb2.SERVING_MODE_SHADOW))}
    assert {p for _, _, p in shadows} == answered  # each shadow names its answered prediction
    print(
        f"gateway e2e: shadow v{challenger} behind champion v{champion}, {SHADOW_N} answered, "
        f"{len(shadows)} shadow events stored, {time.monotonic() - began:.1f} s"
    )


#: Applicants of the canary test, its share and its simulated application times.
CANARY_APPLICANTS = range(1, 301)
CANARY_SHARE = 0.3
CANARY_WINDOW_START = datetime(2021, 5, 1, tzinfo=UTC)


def _bucket(applicant_id: int) -> float:
    """The gateway's documented sticky bucket: sha256(str(a))[:8] as a fraction of 2^64."""
    return int.from_bytes(hashlib.sha256(str(applicant_id).encode()).digest()[:8], "big") / 2**64


def test_canary_share_is_sticky_per_applicant(stack: Stack) -> None:
    began = time.monotonic()
    first_champion(stack)
    _materialized(stack)
    challenger = challenger_version(stack)
    if "inference-gateway-challenger" in stack.targets:  # the mode is read at start
        stack.stop("inference-gateway-challenger")
    stack.cache[CHALLENGER_MODE_KEY] = "canary"
    stack.cache[CANARY_SHARE_KEY] = CANARY_SHARE
    try:
        base = inference_gateway_challenger_http(stack)
        champion = stack.cache["champion_version"]
        slot = _wait_challenger_ready(stack.targets["inference-gateway-challenger"], challenger)
        assert slot.mode == serving_pb2.SERVING_MODE_CANARY
        assert slot.canary_share == pytest.approx(CANARY_SHARE)

        slots: dict[int, str] = {}
        n = len(CANARY_APPLICANTS)
        with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
            for i, applicant in enumerate(CANARY_APPLICANTS):
                asked = {
                    "applicant_id": applicant,
                    "event_time": (CANARY_WINDOW_START + timedelta(seconds=i)).isoformat(),
                }
                response = client.post("/v1/predict", json=asked)
                assert response.status_code == 200, response.text
                body = response.json()
                slots[applicant] = body["serving_slot"]
                expected = challenger if body["serving_slot"] == "SERVING_SLOT_CHALLENGER" else champion
                assert int(body["model_version"]) == expected
            # sticky: the same applicants again land on the same slot
            for applicant in list(CANARY_APPLICANTS)[:30]:
                response = client.post("/v1/predict", json={"applicant_id": applicant})
                assert response.status_code == 200, response.text
                assert response.json()["serving_slot"] == slots[applicant]

        canary = {a for a, s in slots.items() if s == "SERVING_SLOT_CHALLENGER"}
        assert set(slots.values()) <= {"SERVING_SLOT_CHAMPION", "SERVING_SLOT_CHALLENGER"}
        assert canary == {a for a in CANARY_APPLICANTS if _bucket(a) < CANARY_SHARE}
        share = len(canary) / n
        sigma = math.sqrt(CANARY_SHARE * (1 - CANARY_SHARE) / n)
        assert abs(share - CANARY_SHARE) <= 4 * sigma, (share, sigma)

        end = CANARY_WINDOW_START + timedelta(seconds=n)
        deadline = time.monotonic() + 60
        while (stored := _stored(stack, CANARY_WINDOW_START, end)) < n and time.monotonic() < deadline:
            time.sleep(0.5)
        assert stored == n
        rows = _stored_modes(stack, CANARY_WINDOW_START, end)
        modes = Counter((v, m) for v, m, _, _ in rows)
        assert modes == {
            (challenger, int(serving_pb2.SERVING_MODE_CANARY)): len(canary),
            (champion, int(serving_pb2.SERVING_MODE_CHAMPION)): n - len(canary),
        }
    finally:
        if "inference-gateway-challenger" in stack.targets:
            stack.stop("inference-gateway-challenger")
        stack.cache[CHALLENGER_MODE_KEY] = "shadow"
        stack.cache[CANARY_SHARE_KEY] = 0.0
    print(
        f"gateway e2e: canary v{challenger} share {share:.3f} (asked {CANARY_SHARE}, 4 sd {4 * sigma:.3f}), "
        f"sticky, {n} events stored by mode, {time.monotonic() - began:.1f} s"
    )

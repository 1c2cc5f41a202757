"""The inference-gateway in front of the champion model-server slot, every service its own process.

The session's first champion (trained through the training-service, registered and promoted through
the registry-gateway: ``e2e_stack.first_champion``) is served by the seldon-core runtime of the
model-server, which follows ``credit-risk@champion`` in MLflow and verifies the registry's digests.
The inference-gateway enriches requests from the real feature-service, reads the version's signature
from the registry-gateway (viewer token), scores through the slot over REST and logs every
prediction to the real drift-service. Held-out applicants (not among the run's training rows) are
scored over REST and gRPC; errors are mapped; the events are counted in the drift-service; a second
gateway speaking Open Inference Protocol V2 to the same champion on the MLServer runtime answers as
the first; then the champion is swapped (admin force promotion) under a small load with zero
failed requests.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pyarrow.parquet as pq
import pytest
from creditrisk.common.v1 import serving_pb2, time_range_pb2, values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as pb
from creditrisk.inference.v1 import inference_service_pb2_grpc as pb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from e2e_stack import (
    ADMIN_TOKEN,
    GATEWAY_HEADERS,
    MODEL_NAME,
    VERIFY,
    Stack,
    authed_channel,
    bearer,
    first_champion,
    gateway_channel,
    inference_gateway_http,
    mlflow_auth,
    register,
    stack_channel,
)
from google.protobuf import timestamp_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

UNKNOWN_APPLICANT = 5000
#: Closed-loop clients of the swap test (concurrent requests through the gateway and every hop).
CLIENTS = 3


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def held_out_applicants(stack: Stack, run_id: str, count: int) -> list[int]:
    """Applicant ids of the German credit file that are not among the run's training rows."""
    response = httpx.get(
        f"https://{stack.targets['mlflow']}/get-artifact",
        params={"path": "training_set/training_rows.parquet", "run_uuid": run_id},
        auth=mlflow_auth("drift-service"),
        timeout=60,
        verify=VERIFY,
    )
    response.raise_for_status()
    trained = set(pq.read_table(io.BytesIO(response.content)).column("applicant_id").to_pylist())
    return [i for i in range(1, 1001) if i not in trained][:count]


def materialized(stack: Stack) -> None:
    """Materialize the online store once per session (the feature-service's e2e may have done it)."""
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


def _count_logged(stack: Stack, version: int, start: datetime) -> int:
    with authed_channel(stack.target("drift-service")) as channel:  # the pipeline: read_monitoring
        stub = dpb_grpc.DriftServiceStub(channel)
        window = dpb.Window(
            model_name=MODEL_NAME,
            model_version=version,
            time_range=time_range_pb2.TimeRange(
                start=_ts(start), end=_ts(datetime.now(UTC) + timedelta(minutes=1))
            ),
        )
        try:
            (report,) = stub.GetPerformance(dpb.GetPerformanceRequest(window=window), timeout=30).reports
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # no event of this version stored yet
                return 0
            raise
        return report.prediction_count


def test_predictions_through_the_gateway(stack: Stack) -> None:
    began = time.monotonic()
    start = datetime.now(UTC) - timedelta(seconds=5)
    champion = first_champion(stack)
    version = stack.cache["champion_version"]
    materialized(stack)
    base = inference_gateway_http(stack)  # starts the champion slot, the gateway and what they need
    print(f"gateway e2e: stack ready in {time.monotonic() - began:.1f} s")
    applicants = held_out_applicants(stack, champion["job"].result.mlflow_run_id, 3)
    assert len(applicants) == 3
    threshold = champion["registered"].decision_threshold

    # --- REST
    with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
        assert client.get("/readyz").status_code == 200
        rest = {}
        for applicant in applicants:
            asked = {"applicant_id": applicant, "client_request_id": "e2e"}
            response = client.post("/v1/predict", json=asked)
            assert response.status_code == 200, response.text
            body = response.json()
            assert 0.0 <= body["probability_of_default"] <= 1.0
            rejected = body["probability_of_default"] >= threshold
            assert body["decision"] == ("DECISION_DECLINE" if rejected else "DECISION_APPROVE")
            assert body["decision_threshold"] == pytest.approx(threshold)
            assert (body["model_name"], int(body["model_version"])) == (MODEL_NAME, version)
            assert body["serving_slot"] == "SERVING_SLOT_CHAMPION"
            assert body["event_id"]
            assert len(body["trace_id"]) == 32
            assert body["client_request_id"] == "e2e"
            assert body["features"]["credit_amount"] is not None
            rest[applicant] = body

        # an applicant the feature store does not know, with no request values: 404
        missing = client.post("/v1/predict", json={"applicant_id": UNKNOWN_APPLICANT})
        assert missing.status_code == 404, missing.text
        # a value of the wrong type: 422 naming the field, the model is not called
        wrong = client.post(
            "/v1/predict", json={"applicant_id": applicants[0], "request_values": {"credit_amount": "lots"}}
        )
        assert wrong.status_code == 422, wrong.text
        fields = [v["field"] for v in wrong.json()["error"]["field_violations"]]
        assert any("credit_amount" in f for f in fields), fields

    # --- gRPC: the same applicants score the same
    with gateway_channel(stack.targets["inference-gateway"]) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        event_ids = {body["event_id"] for body in rest.values()}
        for applicant in applicants:
            answer = stub.Predict(pb.PredictRequest(applicant_id=applicant), timeout=30)
            assert answer.probability_of_default == pytest.approx(
                rest[applicant]["probability_of_default"], abs=1e-12
            )
            assert serving_pb2.Decision.Name(answer.decision) == rest[applicant]["decision"]
            assert (answer.model_name, answer.model_version) == (MODEL_NAME, version)
            assert answer.event_id
            assert answer.event_id not in event_ids
            event_ids.add(answer.event_id)
            assert len(answer.trace_id) == 32
        with pytest.raises(grpc.RpcError) as not_found:
            stub.Predict(pb.PredictRequest(applicant_id=UNKNOWN_APPLICANT), timeout=30)
        assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as invalid:
            stub.Predict(
                pb.PredictRequest(
                    applicant_id=applicants[0],
                    request_values={"credit_amount": values_pb2.FeatureValue(string_value="lots")},
                ),
                timeout=30,
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "credit_amount" in (invalid.value.details() or "")

    # --- every answered prediction reached the drift-service (LogPredictions by the gateway)
    deadline = time.monotonic() + 30
    while (logged := _count_logged(stack, version, start)) < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logged == 6
    print(f"gateway e2e: predictions + drift log {time.monotonic() - began:.1f} s")


def test_v2_gateway_on_the_mlserver_slot_scores_as_the_seldon_one(stack: Stack) -> None:
    """The Apache-2.0 path: a gateway speaking the Open Inference Protocol V2 (REST) to a champion
    slot on the MLServer runtime answers every applicant as the gateway on the seldon-core slot
    does (same version, probability, decision, threshold and features), with and without a
    request-time override, over REST and gRPC."""
    champion = first_champion(stack)
    materialized(stack)
    seldon_base = inference_gateway_http(stack)
    v2_base = inference_gateway_http(
        stack, "inference-gateway-v2"
    )  # starts the MLServer slot and the second gateway
    applicants = held_out_applicants(stack, champion["job"].result.mlflow_run_id, 4)
    asks = [{"applicant_id": a} for a in applicants]
    asks.append({"applicant_id": applicants[0], "request_values": {"credit_amount": 12345}})
    with (
        httpx.Client(base_url=seldon_base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as seldon,
        httpx.Client(base_url=v2_base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as v2,
    ):
        assert v2.get("/readyz").status_code == 200
        for asked in asks:
            for _ in range(50):  # both slots follow credit-risk@champion: wait out a lagging swap
                a, b = seldon.post("/v1/predict", json=asked), v2.post("/v1/predict", json=asked)
                assert a.status_code == 200, a.text
                assert b.status_code == 200, b.text
                if a.json()["model_version"] == b.json()["model_version"]:
                    break
                time.sleep(0.2)
            one, other = a.json(), b.json()
            assert other["probability_of_default"] == pytest.approx(one["probability_of_default"], abs=1e-9)
            for key in (
                "decision",
                "decision_threshold",
                "model_name",
                "model_version",
                "features",
                "missing_features",
            ):
                assert other[key] == one[key], key
            assert other["event_id"] != one["event_id"]
        override = v2.post("/v1/predict", json=asks[-1]).json()
        assert override["features"]["credit_amount"] == 12345
    with gateway_channel(stack.targets["inference-gateway-v2"]) as channel:
        answer = pb_grpc.InferenceServiceStub(channel).Predict(
            pb.PredictRequest(applicant_id=applicants[1]), timeout=30
        )
    assert answer.model_name == MODEL_NAME
    assert 0.0 <= answer.probability_of_default <= 1.0


def test_champion_swap_under_load_fails_nothing(stack: Stack) -> None:
    began = time.monotonic()
    champion = first_champion(stack)
    old = stack.cache["champion_version"]
    materialized(stack)
    base = inference_gateway_http(stack)
    applicants = held_out_applicants(stack, champion["job"].result.mlflow_run_id, 8)
    new = register(stack, champion["job"].result.mlflow_run_id).version

    failures: list[str] = []
    seen: list[list[int]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()

    def load(index: int) -> None:
        with httpx.Client(base_url=base, timeout=30, headers=GATEWAY_HEADERS, verify=VERIFY) as client:
            i = 0
            while not stop.is_set():
                applicant = applicants[(index + i) % len(applicants)]
                i += 1
                try:
                    response = client.post("/v1/predict", json={"applicant_id": applicant})
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                seen[index].append(int(response.json()["model_version"]))

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        with stack_channel(stack.target("registry-gateway")) as channel:
            stub = rpb_grpc.ModelRegistryServiceStub(channel)
            moved = stub.PromoteModelVersion(
                rpb.PromoteModelVersionRequest(
                    name=MODEL_NAME, version=new, force=True, reason="e2e: champion swap under load"
                ),
                metadata=bearer(ADMIN_TOKEN),
                timeout=300,
            )
        assert (moved.change.from_version, moved.change.to_version) == (old, new)
        stack.cache["champion_version"] = new
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(s and s[-1] == new for s in seen):
            time.sleep(0.5)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures[:5]
    with gateway_channel(stack.targets["inference-gateway"]) as channel:
        serving = pb_grpc.InferenceServiceStub(channel).ListServingModels(
            pb.ListServingModelsRequest(), timeout=30
        )
        (slot,) = [m for m in serving.models if m.slot == serving_pb2.SERVING_SLOT_CHAMPION]
        assert (slot.alias, slot.model_name, slot.model_version, slot.ready) == (
            "champion",
            MODEL_NAME,
            new,
            True,
        )
    for versions in seen:
        assert versions
        assert versions[-1] == new
        assert versions == sorted(versions)  # old, then new: never back
    print(
        f"gateway e2e: swap {old} -> {new} under load, {sum(map(len, seen))} requests, 0 failed, "
        f"{time.monotonic() - began:.1f} s"
    )

"""Routing: shadow never returned nor awaited, canary share and stickiness, not-ready slots, and a
champion swap through the alias stream under load."""

from __future__ import annotations

import asyncio
import math
import time

from conftest import wait_for
from creditrisk.common.v1 import serving_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from inference_gateway.routing import CHALLENGER, CHAMPION, bucket


async def test_shadow_is_logged_never_returned_never_awaited(start_gateway, stack):
    stack.registry.aliases["challenger"] = 2
    gw = await start_gateway(challenger_mode="shadow")
    await wait_for(lambda: gw.core.router.challenger.ready)
    stack.challenger.delay_s = 0.4  # a slow shadow
    started = time.monotonic()
    bodies = [(await gw.http.post("/v1/predict", json={"applicant_id": 100 + i})).json() for i in range(5)]
    elapsed = time.monotonic() - started
    assert elapsed < 5 * 0.4 / 2, elapsed  # the answers did not wait for the shadow
    assert all(b["serving_slot"] == "SERVING_SLOT_CHAMPION" and b["model_version"] == 1 for b in bodies)
    await gw.core.wait_shadows()
    assert await gw.core.logger.flush()
    events = stack.drift.events
    for body in bodies:
        shadows = [e for e in events.values() if e.primary_event_id == body["event_id"]]
        assert len(shadows) == 1
        (shadow,) = shadows
        assert shadow.mode == serving_pb2.SERVING_MODE_SHADOW
        assert shadow.model_version == 2
        assert shadow.decision_threshold == 0.3
        assert events[body["event_id"]].mode == serving_pb2.SERVING_MODE_CHAMPION


async def test_canary_share_within_binomial_error_and_sticky(start_gateway, stack):
    stack.registry.aliases["challenger"] = 2
    share = 0.3
    gw = await start_gateway(challenger_mode="canary", canary_share=share)
    await wait_for(lambda: gw.core.router.challenger.ready)
    router = gw.core.router
    n = 3000
    chosen = [router.route(100 + i).answer.slot for i in range(n)]
    canary = sum(1 for c in chosen if c == CHALLENGER)
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(canary - n * share) < 4 * sigma, canary
    # Through the API: the answering slot matches the routing and stays the same per applicant.
    for applicant in range(100, 140):
        slots = {
            (await gw.http.post("/v1/predict", json={"applicant_id": applicant})).json()["serving_slot"]
            for _ in range(2)
        }
        expected = "SERVING_SLOT_CHALLENGER" if bucket(applicant) < share else "SERVING_SLOT_CHAMPION"
        assert slots == {expected}
    models = {m.alias: m for m in (await gw.grpc.ListServingModels(ipb.ListServingModelsRequest())).models}
    assert models["challenger"].mode == serving_pb2.SERVING_MODE_CANARY
    assert models["challenger"].canary_share == share
    assert models["challenger"].model_version == 2


async def test_not_ready_slot_gets_no_traffic(start_gateway, stack):
    stack.registry.aliases["challenger"] = 2
    gw = await start_gateway(challenger_mode="canary", canary_share=1.0)
    await wait_for(lambda: gw.core.router.challenger.ready)
    stack.challenger.ready = False
    await wait_for(lambda: not gw.core.router.challenger.ready)
    before = len(stack.challenger.records)
    for i in range(20):
        r = await gw.http.post("/v1/predict", json={"applicant_id": 100 + i})
        assert r.json()["serving_slot"] == "SERVING_SLOT_CHAMPION"
    assert len(stack.challenger.records) == before
    # The champion not ready: 503 and not ready.
    stack.champion.ready = False
    await wait_for(lambda: not gw.core.router.champion.ready)
    r = await gw.http.post("/v1/predict", json={"applicant_id": 100})
    assert r.status_code == 503
    assert (await gw.http.get("/readyz")).status_code == 503
    stack.champion.ready = True
    await wait_for(lambda: gw.core.router.champion.ready)
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 100})).status_code == 200


async def test_unanswered_probes_take_a_slot_out_only_after_the_threshold(start_gateway, stack):
    gw = await start_gateway(slot_probe_interval_s=0.05, slot_probe_failures=3)
    router = gw.core.router
    champion = router.champion
    stack.champion.ready_delay_s = 2.0  # every probe times out (the probe waits at most 1 s)
    await wait_for(lambda: champion.unanswered_probes >= 1, timeout_s=10)
    assert champion.ready  # one lost probe under load does not turn traffic away
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 100})).status_code == 200
    await wait_for(lambda: champion.unanswered_probes >= 3, timeout_s=15)
    await wait_for(lambda: not champion.ready, timeout_s=5)
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 100})).status_code == 503
    stack.champion.ready_delay_s = 0.0
    await wait_for(lambda: champion.ready, timeout_s=10)
    assert champion.unanswered_probes == 0
    # A refused connection (nothing listens) is an answer: out at the next probe.
    await stack.champion.stop()
    await wait_for(lambda: not champion.ready, timeout_s=5)
    assert champion.unanswered_probes == 0


async def test_a_slot_mid_swap_stays_in_routing(start_gateway, stack):
    gw = await start_gateway(slot_probe_interval_s=0.05)
    champion = gw.core.router.champion
    stack.champion.swapping = True  # 503 "serving": true: processes on two versions, each scores
    await asyncio.sleep(0.5)  # several probe rounds
    assert champion.ready
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 100})).status_code == 200
    stack.champion.ready = False  # a plain 503 (draining, no version) takes it out
    await wait_for(lambda: not champion.ready, timeout_s=5)
    stack.champion.ready, stack.champion.swapping = True, False
    await wait_for(lambda: champion.ready, timeout_s=5)


async def test_champion_swap_under_load_fails_nothing(gw, stack):
    results: list[tuple[int, dict]] = []
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            applicant = 100 + (worker * 97 + i) % 2000
            i += 1
            if i % 2:
                r = await gw.http.post("/v1/predict", json={"applicant_id": applicant})
                results.append((r.status_code, r.json()))
            else:
                response = await gw.grpc.Predict(ipb.PredictRequest(applicant_id=applicant))
                results.append(
                    (
                        200,
                        {
                            "model_version": response.model_version,
                            "decision_threshold": response.decision_threshold,
                            "probability_of_default": response.probability_of_default,
                            "decision": serving_pb2.Decision.Name(response.decision),
                        },
                    )
                )

    workers = [asyncio.create_task(client(w)) for w in range(8)]
    await asyncio.sleep(0.4)
    # The registry moves the alias first; the slot's model server follows a moment later.
    stack.registry.set_alias("champion", 2)
    await asyncio.sleep(0.2)
    stack.champion.version = 2
    await asyncio.sleep(0.4)
    stop.set()
    await asyncio.gather(*workers)
    assert len(results) > 50
    failures = [r for r in results if r[0] != 200]
    assert failures == []
    versions = {body["model_version"] for _, body in results}
    assert versions == {1, 2}
    for _, body in results:  # the decision is at the threshold of the version that scored it
        threshold = {1: 0.5, 2: 0.3}[body["model_version"]]
        assert body["decision_threshold"] == threshold
        declined = body["probability_of_default"] >= threshold
        assert body["decision"] == ("DECISION_DECLINE" if declined else "DECISION_APPROVE")
    assert gw.core.router.champion.version == 2
    assert gw.core.router.champion.slot == CHAMPION


async def test_alias_stream_reconnects(gw, stack):
    await stack.registry.stop()
    await asyncio.sleep(0.3)
    # Same port again: the watcher reconnects with backoff and reads the new snapshot.
    import grpc
    from creditrisk.registry.v1 import registry_service_pb2_grpc as rgrpc
    from fakes import FakeRegistry

    registry = FakeRegistry()
    registry.aliases["champion"] = 2
    server = grpc.aio.server()
    rgrpc.add_ModelRegistryServiceServicer_to_server(registry, server)
    server.add_insecure_port(f"127.0.0.1:{stack.registry.port}")
    await server.start()
    try:
        await wait_for(lambda: gw.core.router.champion.version == 2, timeout_s=10)
    finally:
        await server.stop(0)
        stack.registry.server = server

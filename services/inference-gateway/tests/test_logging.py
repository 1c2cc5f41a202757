"""Prediction logging: drift-service down then up under load (count sent == count stored), the
buffer cap (503 + not ready), restart with a non-empty disk buffer, bounded memory."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import wait_for
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inference_gateway.logbuffer import DurableBuffer, PredictionLogger


async def _load(gw, n: int, start: int = 100) -> list[str]:
    ids: list[str] = []

    async def one(i: int) -> None:
        r = await gw.http.post("/v1/predict", json={"applicant_id": start + i})
        assert r.status_code == 200, r.text
        ids.append(r.json()["event_id"])

    for chunk in range(0, n, 25):
        await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 25, n))))
    return ids


async def test_drift_down_then_up_nothing_lost(gw, stack):
    ids = await _load(gw, 50)
    assert await gw.core.logger.flush()
    stack.drift.down = True
    ids += await _load(gw, 400, start=200)
    await wait_for(lambda: gw.core.logger.buffer.count > 0)
    # Memory stays bounded while down: events go to disk.
    assert len(gw.core.logger._memory) <= gw.core.logger.memory_events
    stack.drift.down = False
    ids += await _load(gw, 50, start=700)
    assert await gw.core.logger.flush(timeout_s=20)
    assert set(stack.drift.events) == set(ids)
    assert len(stack.drift.events) == len(ids) == 500
    assert gw.core.logger.buffer.count == 0
    assert gw.core.logger.buffer.bytes == 0


async def test_buffer_cap_answers_503_and_not_ready(start_gateway, stack):
    gw = await start_gateway(buffer_max_bytes=4000)
    stack.drift.down = True
    served = 0
    for i in range(200):
        r = await gw.http.post("/v1/predict", json={"applicant_id": 100 + i})
        if r.status_code == 503:
            break
        assert r.status_code == 200
        served += 1
        await asyncio.sleep(0.01)
        await wait_for(lambda: not gw.core.logger._memory or gw.core.logger.full, timeout_s=2)
    assert gw.core.logger.full
    assert served > 0
    assert r.json()["error"]["status"] == "UNAVAILABLE"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=100))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["prediction_log_buffer_below_cap"] is False
    health = health_pb2_grpc.HealthStub(gw.channel)
    await wait_for(lambda: not gw.gateway.runner.ready)
    status = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    # The drift-service returns: the backlog drains, the gateway is ready again, nothing was lost.
    stack.drift.down = False
    assert await gw.core.logger.flush(timeout_s=10)
    assert len(stack.drift.events) == served
    await wait_for(lambda: gw.gateway.runner.ready)
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 100})).status_code == 200


async def test_restart_delivers_the_disk_buffer(start_gateway, stack):
    first = await start_gateway()
    stack.drift.down = True
    ids = await _load(first, 60)
    await first.close()
    await first.gateway.stop()  # drain: memory goes to disk
    assert stack.drift.events == {}
    buffer = DurableBuffer(first.gateway.settings.buffer_path)
    assert buffer.count == 60
    buffer.close()
    stack.drift.down = False
    second = await start_gateway()  # same buffer path
    await wait_for(lambda: len(stack.drift.events) == 60, timeout_s=10)
    assert set(stack.drift.events) == set(ids)
    # Rows are deleted only after the acknowledgement: wait for the delete, not just the ack.
    await wait_for(lambda: second.core.logger.buffer.count == 0)


async def test_logger_memory_bounded_and_at_least_once(tmp_path):
    stored: dict[str, int] = {}
    state = {"down": True}

    async def send(events: list[dpb.PredictionEvent]) -> None:
        if state["down"]:
            raise ConnectionError("down")
        for e in events:
            stored[e.event_id] = stored.get(e.event_id, 0) + 1

    logger = PredictionLogger(
        send,
        DurableBuffer(tmp_path / "b.sqlite3"),
        batch_size=50,
        flush_interval_s=0.01,
        memory_events=100,
        retry_interval_s=0.05,
        max_bytes=10**9,
    )
    logger.start()
    peak = 0
    for i in range(3000):
        logger.submit(dpb.PredictionEvent(event_id=f"e{i}", applicant_id=i))
        peak = max(peak, len(logger._memory))
        if i % 50 == 0:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    assert peak <= 200  # bounded: spilled to disk while down
    state["down"] = False
    assert await logger.flush(timeout_s=20)
    assert len(stored) == 3000
    await logger.close()

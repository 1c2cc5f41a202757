"""The gateway's own credential refused by each dependency it calls (fakes that refuse): the
registry-gateway (alias stream and version reads), the drift-service (prediction-log shipping)
and the model-server slots. Each refusal is the gateway's configuration: REST 503 / gRPC
UNAVAILABLE naming the setting that was sent and where the dependency reads its keys, never a 500
or an opaque 502; the prediction log keeps every event and logs / counts the refusal once per
change of state."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc
import pytest
from conftest import Running, wait_for
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from prometheus_client import REGISTRY

REFUSALS = "inference_gateway_credential_refusals_total"
REFUSED = "inference_gateway_credential_refused"


def _count(dependency: str, code: str) -> float:
    return REGISTRY.get_sample_value(REFUSALS, {"dependency": dependency, "code": code}) or 0.0


def _refused(dependency: str) -> float | None:
    return REGISTRY.get_sample_value(REFUSED, {"dependency": dependency})


async def _both_transports_refuse(gw: Running, *expected: str) -> None:
    """A prediction answers 503 over REST and UNAVAILABLE over gRPC, each message holding every
    ``expected`` text."""
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 503, r.text
    message = r.json()["error"]["message"]
    for text in expected:
        assert text in message, message
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.grpc.Predict(ipb.PredictRequest(applicant_id=1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == message


# ------------------------------------------------------------------ registry-gateway


async def test_registry_refusing_the_own_credential_is_503_naming_it_until_the_file_is_fixed(
    start_gateway, stack, tmp_path, caplog
):
    """No ``INFERENCE_GATEWAY_REGISTRY_TOKEN``: the own credential (a file) goes to the registry.
    The alias stream is refused, so the champion has no version: the answer names the file's
    setting, the registry's key file and the role. A corrected file is read at the next
    reconnect (no restart) and the gateway serves."""
    secret = tmp_path / "credential"
    secret.write_text("rotated-on-one-side-only\n")
    stack.registry.token = "gateway-own-credential"
    before = _count("registry-gateway", "UNAUTHENTICATED")
    caplog.set_level(logging.INFO, logger="inference_gateway.credential")
    gw = await start_gateway(
        wait=False, registry_token="", credential=None, credential_file=secret, registry_reconnect_max_s=0.2
    )
    await wait_for(lambda: len(stack.registry.authorizations) >= 3)  # reconnected, refused each time
    assert set(stack.registry.authorizations) == {"Bearer rotated-on-one-side-only"}
    await _both_transports_refuse(
        gw,
        "registry-gateway refused the gateway's own credential (UNAUTHENTICATED)",
        "INFERENCE_GATEWAY_CREDENTIAL_FILE",
        "REGISTRY_GATEWAY_AUTH_API_KEYS_FILE",
        "role read_registry",
    )
    assert "rotated-on-one-side-only" not in caplog.text
    # once per change of state, not per reconnect
    assert _count("registry-gateway", "UNAUTHENTICATED") == before + 1
    assert _refused("registry-gateway") == 1.0
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and "registry-gateway" in r.getMessage()
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    _replace(secret, "gateway-own-credential\n")
    await wait_for(lambda: gw.core.champion_ready())
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 200, r.text
    assert _refused("registry-gateway") == 0.0
    assert "registry-gateway accepts the gateway's own credential again" in caplog.text


async def test_registry_refusing_version_reads_names_the_deprecated_token_when_it_is_sent(
    start_gateway, stack
):
    """The alias stream works but every version read (signature, threshold, lineage) is refused
    PERMISSION_DENIED; the deprecated ``INFERENCE_GATEWAY_REGISTRY_TOKEN`` is set (conftest), so
    it is the setting named."""
    stack.registry.refusing = grpc.StatusCode.PERMISSION_DENIED
    stack.registry.refusing_methods = {"GetModelVersion"}
    gw = await start_gateway(wait=False)
    await wait_for(lambda: gw.core.router.champion.version == 1)
    await wait_for(lambda: gw.gateway.registry.refusals.error is not None)
    await _both_transports_refuse(
        gw,
        "registry-gateway refused the gateway's own credential (PERMISSION_DENIED)",
        "check INFERENCE_GATEWAY_REGISTRY_TOKEN",
        "role read_registry",
    )
    stack.registry.refusing = None
    await wait_for(lambda: gw.core.champion_ready())
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200


# ------------------------------------------------------------------ drift-service


async def test_drift_refusing_the_credential_keeps_every_event_and_reports_once(gw, stack, caplog):
    """The prediction log's delivery refused: predictions still answer, no event is lost (they
    wait in the durable buffer), the refusal is logged and counted once however many attempts and
    events, and every event is delivered once the drift-service accepts the credential again."""
    caplog.set_level(logging.INFO, logger="inference_gateway.credential")
    before = _count("drift-service", "PERMISSION_DENIED")
    stack.drift.refusing = grpc.StatusCode.PERMISSION_DENIED
    ids = []
    for i in range(30):
        r = await gw.http.post("/v1/predict", json={"applicant_id": 100 + i})
        assert r.status_code == 200, r.text
        ids.append(r.json()["event_id"])
        if i % 10 == 9:
            await asyncio.sleep(0.3)  # several delivery attempts (retry every 0.1 s)
    await wait_for(lambda: gw.core.logger.buffer.count == 30)
    calls = stack.drift.calls
    await wait_for(lambda: stack.drift.calls >= calls + 3)  # retried, still refused
    assert stack.drift.events == {}
    assert gw.core.logger.pending == 30
    assert _count("drift-service", "PERMISSION_DENIED") == before + 1
    assert _refused("drift-service") == 1.0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "drift-service refused the gateway's own credential (PERMISSION_DENIED): check "
        "INFERENCE_GATEWAY_CREDENTIAL_FILE / INFERENCE_GATEWAY_CREDENTIAL and the drift-service's "
        "DRIFT_SERVICE_AUTH_API_KEYS_FILE (role log_predictions)"
    ]
    # another code is another state: counted once more
    stack.drift.refusing = grpc.StatusCode.UNAUTHENTICATED
    unauthenticated = _count("drift-service", "UNAUTHENTICATED")
    await wait_for(lambda: _count("drift-service", "UNAUTHENTICATED") == unauthenticated + 1)

    stack.drift.refusing = None
    assert await gw.core.logger.flush(timeout_s=10)
    assert set(stack.drift.events) == set(ids)
    assert gw.core.logger.buffer.count == 0
    assert _refused("drift-service") == 0.0
    assert "drift-service accepts the gateway's own credential again" in caplog.text


# ------------------------------------------------------------------ model-server slots


@pytest.mark.parametrize(("status", "code"), [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
async def test_slot_refusing_the_credential_is_503_naming_both_settings(start_gateway, stack, status, code):
    stack.champion.required_authorization = "Bearer another-credential"
    stack.champion.refusal_status = status
    gw = await start_gateway()
    await _both_transports_refuse(
        gw,
        f"model server {stack.champion.url} refused the gateway's own credential ({code})",
        "INFERENCE_GATEWAY_CREDENTIAL_FILE",
        "the slot's MODEL_SERVER_AUTH_API_KEYS_FILE (role predict)",
    )
    assert stack.champion.authorizations[-1] == "Bearer gateway-own-credential"
    stack.champion.required_authorization = None
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200


def _replace(path: Path, text: str) -> None:
    """An atomic replace (a new inode), as a mounted secret is rotated."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)

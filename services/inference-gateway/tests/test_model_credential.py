"""The gateway presents its own credential to the model-server slots (issue 18): every scoring
request carries ``authorization: Bearer <INFERENCE_GATEWAY_CREDENTIAL[_FILE]>`` on both protocols,
a rotated credential file is used from the next request, and a slot that refuses the credential
fails the prediction (503, never a score from elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OWN = "Bearer gateway-own-credential"  # conftest's Stack.settings: credential="gateway-own-credential"


@pytest.mark.parametrize("protocol", ["seldon", "v2"])
async def test_scoring_requests_carry_the_gateways_credential(start_gateway, stack, protocol):
    gw = await start_gateway(model_protocol=protocol)
    before = len(stack.champion.authorizations)
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 200, r.text
    sent = stack.champion.authorizations[before:]
    assert sent == [OWN]
    # the caller's own credential (the test's admin key) is not passed on to the slot
    assert gw.http.headers["authorization"] not in sent


async def test_a_slot_that_checks_the_credential_scores(start_gateway, stack):
    stack.champion.required_authorization = OWN
    gw = await start_gateway()
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == 1


async def test_a_refused_credential_fails_the_prediction(start_gateway, stack):
    stack.champion.required_authorization = "Bearer another-credential"
    gw = await start_gateway()
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    # the gateway's configuration: 503 naming the settings (test_own_credential.py), not a 502
    assert r.status_code == 503, r.text
    assert stack.champion.authorizations[-1] == OWN
    assert "gateway-own-credential" not in r.text  # the setting's name, never its value


async def test_a_rotated_credential_file_is_sent_from_the_next_request(start_gateway, stack, tmp_path):
    secret = tmp_path / "credential"
    secret.write_text("first-credential\n")
    gw = await start_gateway(credential=None, credential_file=secret)
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
    assert stack.champion.authorizations[-1] == "Bearer first-credential"
    _replace(secret, "second-credential\n")
    assert (await gw.http.post("/v1/predict", json={"applicant_id": 1})).status_code == 200
    assert stack.champion.authorizations[-1] == "Bearer second-credential"


def _replace(path: Path, text: str) -> None:
    """An atomic replace (a new inode), as a mounted secret is rotated."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)

"""The slot serves only approved versions: an in-process slot on its own alias (``sigtest``) of the
session's registry refuses an unsigned move, a forged one, a bypass copying the champion's tags, a
downgrade (also after a restart) and a revoked version, and keeps serving the last approved one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from creditrisk_model_artifacts.signing import (
    REVOCATIONS_TAG,
    SigningKey,
    approval_tag,
    sign_revocations,
)
from mlflow import MlflowClient
from model_server.slot import NoModel, Slot
from model_server.testing import fixtures as fx

MODEL = "credit-risk"


@pytest.fixture
def alias() -> str:
    return f"sigtest{uuid.uuid4().hex[:6]}"


def _slot(stack: Any, alias: str, state: Path) -> Slot:
    return Slot(stack.settings(alias, refused_retry_s=3600, approval_state_file=state), role="test")


def _refused(slot: Slot, version: str) -> str:
    return slot.state()["refused"][version]


def test_refuses_unsigned_forged_bypass_and_downgrade(stack: Any, alias: str, tmp_path: Path) -> None:
    url, v1, v2 = stack.tracking_uri, stack.versions["lr"], stack.versions["hgb"]
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    state = tmp_path / "approvals.json"
    slot = _slot(stack, alias, state)
    fx.set_alias(url, MODEL, alias, v1)
    assert slot.poll_once() == "swapped"
    assert slot.model().version == v1

    # 1. an unsigned alias move (anyone with MLflow write access)
    fx.set_alias(url, MODEL, alias, v2, key=None)
    assert slot.poll_once() == "refused"
    assert "unsigned" in _refused(slot, v2)
    assert slot.model().version == v1

    # 2. a move signed with another key
    fx.set_alias(url, MODEL, alias, v2, key=SigningKey.generate())
    assert slot.poll_once() == "refused"  # the approval tag changed: checked again at once
    assert "unknown_key" in _refused(slot, v2)
    assert slot.model().version == v1

    # 3. the bypass: a new version copying v1's source, run, digest tags and approval
    mv1 = client.get_model_version(MODEL, v1)
    model_id = str(mv1.source).removeprefix("models:/")
    copy = client.create_model_version(
        MODEL, source=mv1.source, run_id=mv1.run_id, tags=dict(mv1.tags), model_id=model_id
    )
    client.set_registered_model_alias(MODEL, alias, str(copy.version))
    assert slot.poll_once() == "refused"
    assert f"version '{v1}', not '{copy.version}'" in _refused(slot, str(copy.version))
    assert slot.model().version == v1

    # 4. an approved move: served
    fx.set_alias(url, MODEL, alias, v2)
    assert slot.poll_once() == "swapped"
    assert slot.model().version == v2

    # 5. a downgrade: the alias put back on v1, whose (valid) approval is older
    client.set_registered_model_alias(MODEL, alias, v1)
    assert slot.poll_once() == "refused"
    assert "downgrade" in _refused(slot, v1)
    assert slot.model().version == v2
    assert slot.refusal_counts.counts == {"unsigned": 1, "unknown_key": 1, "mismatch": 1, "downgrade": 1}
    metrics = {m["tags"]["reason"]: m["value"] for m in slot.refusal_counts.take()}
    assert metrics == {"unsigned": 1, "unknown_key": 1, "mismatch": 1, "downgrade": 1}
    assert slot.refusal_counts.take() == []  # counted once

    # 6. a restart cannot be downgraded: the served sequence is persisted
    restarted = _slot(stack, alias, state)
    assert restarted.poll_once() == "refused"
    assert "downgrade" in _refused(restarted, v1)
    with pytest.raises(NoModel):
        restarted.model()
    client.set_registered_model_alias(MODEL, alias, v2)  # back where the gateway put it
    assert restarted.poll_once() == "swapped"
    assert restarted.model().version == v2


def test_tampered_artifacts_refused_against_the_signed_digests(
    stack: Any, alias: str, tmp_path: Path
) -> None:
    url = stack.tracking_uri
    slot = _slot(stack, alias, tmp_path / "approvals.json")
    fx.set_alias(url, MODEL, alias, stack.versions["lr"])
    assert slot.poll_once() == "swapped"
    # signed over a recorded digest that the files do not match: nothing is loaded
    fx.set_alias(url, MODEL, alias, stack.versions["tampered"])
    assert slot.poll_once() == "refused"
    assert "sha256 mismatch for fast_scorer/model.onnx" in _refused(slot, stack.versions["tampered"])
    assert slot.model().version == stack.versions["lr"]


def test_revoked_version_stops_serving_and_stays_refused(stack: Any, alias: str, tmp_path: Path) -> None:
    url = stack.tracking_uri
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    # a version of its own (the session's runtimes never serve it)
    own = fx.register_version(
        url, MODEL, client.get_model_version(MODEL, stack.versions["lr"]).run_id, tmp_path / "reg"
    ).version
    slot = _slot(stack, alias, tmp_path / "approvals.json")
    fx.set_alias(url, MODEL, alias, own)
    assert slot.poll_once() == "swapped"
    before = client.get_registered_model(MODEL).tags.get(REVOCATIONS_TAG)
    try:
        # a forged revocation list is ignored
        client.set_registered_model_tag(
            MODEL, REVOCATIONS_TAG, sign_revocations(SigningKey.generate(), MODEL, [own], fx.next_sequence())
        )
        assert slot.poll_once() == "same"
        assert slot.model().version == own
        # the registry's revocation: the slot stops serving it, and refuses it from then on
        revoked = sign_revocations(fx.SIGNING_KEY, MODEL, [own], fx.next_sequence())
        client.set_registered_model_tag(MODEL, REVOCATIONS_TAG, revoked)
        assert slot.poll_once() == "refused"
        with pytest.raises(NoModel):
            slot.model()
        assert "revoked" in _refused(slot, own)
        # removing the list undoes nothing: the revocation is persisted
        client.delete_registered_model_tag(MODEL, REVOCATIONS_TAG)
        fx.set_alias(url, MODEL, alias, own)  # even with a newer approval
        assert slot.poll_once() == "refused"
        with pytest.raises(NoModel):
            slot.model()
    finally:
        if before is None:
            client.delete_registered_model_tag(MODEL, REVOCATIONS_TAG)
        else:
            client.set_registered_model_tag(MODEL, REVOCATIONS_TAG, before)
        client.delete_registered_model_alias(MODEL, alias)


def test_approval_tag_is_per_alias(stack: Any, alias: str, tmp_path: Path) -> None:
    """An approval for ``champion`` does not approve the same version for another alias."""
    url = stack.tracking_uri
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    slot = _slot(stack, alias, tmp_path / "approvals.json")
    fx.set_alias(url, MODEL, alias, stack.versions["lr"])
    assert slot.poll_once() == "swapped"
    champion_tag = client.get_model_version(MODEL, stack.versions["hgb"]).tags.get(approval_tag("champion"))
    client.set_model_version_tag(MODEL, stack.versions["hgb"], approval_tag(alias), champion_tag or "{}")
    client.set_registered_model_alias(MODEL, alias, stack.versions["hgb"])
    assert slot.poll_once() == "refused"
    assert slot.model().version == stack.versions["lr"]

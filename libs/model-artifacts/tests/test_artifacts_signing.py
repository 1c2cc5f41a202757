"""Signed approvals and revocation lists: sign/verify, rotation overlap, wrong key, tampering,
older sequence, revoked."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from creditrisk_model_artifacts.signing import (
    ApprovalRefused,
    SigningKey,
    TrustedKeys,
    load_signing_key,
    load_trusted_keys,
    main,
    public_pem,
    sign_approval,
    sign_revocations,
    verify_approval,
    verify_approved_digests,
    verify_revocations,
    write_key_pair,
)

DIGESTS = {"model/MLmodel": "a" * 64, "fast_scorer/model.onnx": "b" * 64}
WHERE = {"model": "credit-risk", "version": "3", "alias": "champion"}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def trusted(key: SigningKey) -> TrustedKeys:
    return TrustedKeys([key.public_key])


def _reason(exc: pytest.ExceptionInfo[ApprovalRefused]) -> str:
    return exc.value.reason


def test_sign_and_verify(key: SigningKey, trusted: TrustedKeys) -> None:
    value = sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 7)
    approval = verify_approval(value, trusted, **WHERE)
    assert (approval.model, approval.version, approval.alias, approval.sequence) == (
        "credit-risk",
        "3",
        "champion",
        7,
    )
    assert approval.digests == DIGESTS
    assert approval.key_id == key.key_id
    verify_approved_digests(approval, DIGESTS)


def test_unsigned_and_malformed(trusted: TrustedKeys) -> None:
    for value, reason in [
        (None, "unsigned"),
        ("", "unsigned"),
        ("{not json", "malformed"),
        ("{}", "malformed"),
    ]:
        with pytest.raises(ApprovalRefused) as exc:
            verify_approval(value, trusted, **WHERE)
        assert _reason(exc) == reason


def test_wrong_key_refused(key: SigningKey, trusted: TrustedKeys) -> None:
    other = SigningKey.generate()
    with pytest.raises(ApprovalRefused) as exc:
        verify_approval(sign_approval(other, "credit-risk", 3, "champion", DIGESTS, 7), trusted, **WHERE)
    assert _reason(exc) == "unknown_key"
    # a forger who copies the trusted key id still cannot make the signature verify
    forged = json.loads(sign_approval(other, "credit-risk", 3, "champion", DIGESTS, 7))
    forged["key_id"] = key.key_id
    with pytest.raises(ApprovalRefused) as exc:
        verify_approval(json.dumps(forged), trusted, **WHERE)
    assert _reason(exc) == "bad_signature"


def _tamper(value: str, **changes: object) -> str:
    outer = json.loads(value)
    payload = json.loads(base64.b64decode(outer["payload"]))
    payload.update(changes)
    outer["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(outer)


def test_tampered_payload_refused(key: SigningKey, trusted: TrustedKeys) -> None:
    value = sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 7)
    for changes in (
        {"digests": {**DIGESTS, "model/MLmodel": "c" * 64}},
        {"version": "4"},
        {"sequence": 99},
    ):
        with pytest.raises(ApprovalRefused) as exc:
            verify_approval(_tamper(value, **changes), trusted, **WHERE)
        assert _reason(exc) == "bad_signature"


def test_tampered_digest_of_downloaded_files(key: SigningKey, trusted: TrustedKeys) -> None:
    approval = verify_approval(sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 7), trusted, **WHERE)
    with pytest.raises(ApprovalRefused, match=r"sha256 mismatch for fast_scorer/model\.onnx") as exc:
        verify_approved_digests(approval, {**DIGESTS, "fast_scorer/model.onnx": "d" * 64})
    assert _reason(exc) == "digests"
    with pytest.raises(ApprovalRefused, match=r"no digest tag for model/extra\.pkl"):
        verify_approved_digests(approval, {**DIGESTS, "model/extra.pkl": "e" * 64})


def test_copied_to_another_version_or_alias_refused(key: SigningKey, trusted: TrustedKeys) -> None:
    value = sign_approval(key, "credit-risk", 3, "challenger", DIGESTS, 7)
    with pytest.raises(ApprovalRefused, match="alias 'challenger', not 'champion'") as exc:
        verify_approval(value, trusted, **WHERE)
    assert _reason(exc) == "mismatch"
    with pytest.raises(ApprovalRefused, match="version '3', not '5'"):
        verify_approval(value, trusted, model="credit-risk", version="5", alias="challenger")
    with pytest.raises(ApprovalRefused, match="model 'credit-risk', not 'other'"):
        verify_approval(value, trusted, model="other", version="3", alias="challenger")


def test_sequence_rules(key: SigningKey, trusted: TrustedKeys) -> None:
    v3 = sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 7)
    # the same approval again (a restart, a re-read): accepted
    assert verify_approval(v3, trusted, **WHERE, served=("3", 7)).sequence == 7
    # an older, validly signed approval: a downgrade
    with pytest.raises(ApprovalRefused) as exc:
        verify_approval(v3, trusted, **WHERE, served=("4", 9))
    assert _reason(exc) == "downgrade"
    # the same sequence for another version: refused too
    with pytest.raises(ApprovalRefused, match="not newer"):
        verify_approval(v3, trusted, **WHERE, served=("4", 7))
    # a newer move back to version 3: accepted
    newer = sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 10)
    assert verify_approval(newer, trusted, **WHERE, served=("4", 9)).sequence == 10


def test_revoked(key: SigningKey, trusted: TrustedKeys) -> None:
    value = sign_approval(key, "credit-risk", 3, "champion", DIGESTS, 7)
    revocations = verify_revocations(
        sign_revocations(key, "credit-risk", [3, 1], 8), trusted, model="credit-risk"
    )
    assert revocations.versions == {"1", "3"}
    assert revocations.sequence == 8
    with pytest.raises(ApprovalRefused) as exc:
        verify_approval(value, trusted, **WHERE, revoked=revocations.versions)
    assert _reason(exc) == "revoked"
    # a revocation list is not an approval, and the other way round
    with pytest.raises(ApprovalRefused, match="not an approval"):
        verify_approval(sign_revocations(key, "credit-risk", [3], 8), trusted, **WHERE)
    with pytest.raises(ApprovalRefused, match="not a revocation list"):
        verify_revocations(value, trusted, model="credit-risk")
    with pytest.raises(ApprovalRefused) as exc:
        verify_revocations(
            sign_revocations(SigningKey.generate(), "credit-risk", [], 9), trusted, model="credit-risk"
        )
    assert _reason(exc) == "unknown_key"


def test_rotation_overlap(tmp_path: Path) -> None:
    private, public = tmp_path / "signing.pem", tmp_path / "trusted.pem"
    old = write_key_pair(private, public)
    assert write_key_pair(private, public).key_id == old.key_id  # kept, not appended twice
    assert load_trusted_keys(public).key_ids == [old.key_id]
    signed_old = sign_approval(old, "credit-risk", 3, "champion", DIGESTS, 7)
    new = write_key_pair(private, public, keep=False)  # rotation: the new key beside the old one
    assert load_signing_key(private).key_id == new.key_id != old.key_id
    overlap = load_trusted_keys(public)
    assert sorted(overlap.key_ids) == sorted([old.key_id, new.key_id])
    signed_new = sign_approval(new, "credit-risk", 3, "champion", DIGESTS, 8)
    assert verify_approval(signed_old, overlap, **WHERE).key_id == old.key_id
    assert verify_approval(signed_new, overlap, **WHERE).key_id == new.key_id
    # the overlap ends: only the new key is trusted
    public.write_bytes(public_pem(new.public_key))
    after = load_trusted_keys(public)
    assert verify_approval(signed_new, after, **WHERE).sequence == 8
    with pytest.raises(ApprovalRefused, match="not trusted"):
        verify_approval(signed_old, after, **WHERE)
    assert os.stat(private).st_mode & 0o777 == 0o600


def test_bad_key_files_named_not_shown(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match=r"bad\.pem: not an unencrypted PEM private key") as exc:
        load_signing_key(bad)
    assert "c2VjcmV0" not in str(exc.value)
    pub = tmp_path / "pub.pem"
    pub.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match=r"pub\.pem: public key block 1 is not valid PEM"):
        load_trusted_keys(pub)
    assert len(TrustedKeys.from_pem(b"no keys here")) == 0
    assert "private_key" not in repr(SigningKey.generate())


def test_keygen_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", str(tmp_path / "k.pem"), str(tmp_path / "pub.pem")]) == 0
    kid = capsys.readouterr().out.strip()
    assert load_trusted_keys(tmp_path / "pub.pem").key_ids == [kid]
    assert "PRIVATE" not in kid

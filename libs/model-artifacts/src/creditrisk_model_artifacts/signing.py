"""Signed alias approvals and revocation lists: the registry-gateway signs, the model-server verifies.

Anyone who can write to the MLflow registry can create a version and move an alias; nobody but the
registry-gateway holds its Ed25519 private key. So the gateway signs every alias move it makes, and
a model-server serves a version only with a valid approval for exactly that move.

* **Approval** (version tag ``creditrisk.approval.<alias>``): the signed bytes are the canonical
  JSON (keys sorted, no spaces, ASCII) of ``{"type": "creditrisk.approval.v1", "model", "version",
  "alias", "digests": {key: sha256 hex}, "sequence", "issued_at"}``. ``digests`` are the version's
  artifact digests as the registration checks recorded them (:mod:`.digests`); ``sequence`` is the
  gateway's alias-move sequence number (strictly increasing across its whole audit trail, so per
  model and alias too).
* **Revocation list** (registered-model tag ``creditrisk.revocations``): the canonical JSON of
  ``{"type": "creditrisk.revocations.v1", "model", "versions": [sorted version strings],
  "sequence", "issued_at"}``; each new list holds every earlier revocation (a revocation is final).
* **Tag value**: JSON ``{"key_id", "payload": base64(signed bytes), "signature": base64(64 bytes)}``
  (standard base64). The signed bytes are verified as they are, then parsed: nothing is
  re-serialized before the check.
* **Keys**: Ed25519 (RFC 8032) through ``cryptography``; private key PEM (PKCS#8, unencrypted),
  public keys PEM (SubjectPublicKeyInfo). A key id is the first 16 hex digits of the sha256 of the
  raw 32-byte public key, so a trusted-keys file is just PEM blocks: during a rotation it holds the
  old and the new public key together (the overlap), then the old one is removed.

A verifier keeps, per slot, the sequence of the approval it serves: an approval whose sequence is
lower (a downgrade to an old, validly signed approval) is refused, and one for another version must
be strictly higher. Every refusal is an :class:`ApprovalRefused` with a short ``reason`` code (for a
metric label) and a message naming what is wrong, never a key.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .digests import DigestMismatch, verify_digests

APPROVAL_TAG_PREFIX = "creditrisk.approval."
"""Version tag prefix of a signed approval: ``creditrisk.approval.champion``."""
REVOCATIONS_TAG = "creditrisk.revocations"
"""Registered-model tag holding the signed revocation list."""
APPROVAL_TYPE = "creditrisk.approval.v1"
REVOCATIONS_TYPE = "creditrisk.revocations.v1"
_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)

# refusal reasons (metric labels)
UNSIGNED = "unsigned"
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
MISMATCH = "mismatch"
DOWNGRADE = "downgrade"
REVOKED = "revoked"
DIGESTS = "digests"


class ApprovalRefused(ValueError):
    """An approval or a revocation list that cannot be trusted.

    Attributes:
        reason: a short code (``unsigned``, ``malformed``, ``unknown_key``, ``bad_signature``,
            ``mismatch``, ``downgrade``, ``revoked``, ``digests``).
        detail: what is wrong, in words (never a key).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical_json(value: Any) -> bytes:
    """The signed form of a payload: JSON, keys sorted, no spaces, ASCII only (UTF-8 bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key and its key id (:func:`key_id`); ``repr`` never shows the key."""

    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: str

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        private = Ed25519PrivateKey.generate()
        return cls(private, key_id(private.public_key()))

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        """Load an unencrypted PKCS#8 PEM private key.

        Raises:
            ValueError: not PEM, encrypted, or not an Ed25519 key (the key itself is not shown).
        """
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return cls(private, key_id(private.public_key()))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (write it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign_payload(self, payload: Mapping[str, Any]) -> str:
        """The tag value signing ``payload`` (see the module docstring)."""
        data = canonical_json(dict(payload))
        return json.dumps(
            {
                "key_id": self.key_id,
                "payload": base64.b64encode(data).decode(),
                "signature": base64.b64encode(self.private_key.sign(data)).decode(),
            },
            sort_keys=True,
        )


def load_signing_key(path: Path) -> SigningKey:
    """The private key in the PEM file ``path``.

    Raises:
        OSError: unreadable file.
        ValueError: not an unencrypted Ed25519 PEM private key (the path is named, never the key).
    """
    try:
        return SigningKey.from_pem(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class TrustedKeys:
    """Public keys by key id (several during a rotation's overlap).

    Args:
        keys: the trusted public keys.
    """

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {key_id(k): k for k in keys}

    @classmethod
    def from_pem(cls, data: bytes) -> TrustedKeys:
        """Every ``PUBLIC KEY`` PEM block in ``data`` (text around them is ignored).

        Raises:
            ValueError: a block that is not an Ed25519 public key (its position is named).
        """
        keys = []
        for i, block in enumerate(_PEM_PUBLIC.findall(data), start=1):
            try:
                key = serialization.load_pem_public_key(block)
            except ValueError as exc:
                raise ValueError(f"public key block {i} is not valid PEM") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"public key block {i} is not an Ed25519 key")
            keys.append(key)
        return cls(keys)

    @property
    def key_ids(self) -> list[str]:
        """The trusted key ids, sorted."""
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, value: str | None) -> tuple[str, dict[str, Any]]:
        """Check a signed tag value; returns ``(key id, payload)``.

        Raises:
            ApprovalRefused: absent (``unsigned``), not the expected JSON/base64 (``malformed``), a key
                id not trusted (``unknown_key``), or a signature that does not verify
                (``bad_signature``).
        """
        if not value:
            raise ApprovalRefused(UNSIGNED, "no signed approval")
        try:
            outer = json.loads(value)
            kid = str(outer["key_id"])
            data = base64.b64decode(outer["payload"], validate=True)
            signature = base64.b64decode(outer["signature"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ApprovalRefused(MALFORMED, f"not a signed value ({type(exc).__name__})") from None
        key = self._keys.get(kid)
        if key is None:
            raise ApprovalRefused(UNKNOWN_KEY, f"signed by key {kid[:32]!r}, which is not trusted")
        try:
            key.verify(signature, data)
        except InvalidSignature:
            raise ApprovalRefused(BAD_SIGNATURE, f"the signature does not verify with key {kid}") from None
        try:
            payload = json.loads(data)
        except ValueError:
            raise ApprovalRefused(MALFORMED, "the signed payload is not JSON") from None
        if not isinstance(payload, dict):
            raise ApprovalRefused(MALFORMED, "the signed payload is not a JSON object")
        return kid, payload


def load_trusted_keys(path: Path) -> TrustedKeys:
    """The public keys in the PEM file ``path`` (see :meth:`TrustedKeys.from_pem`).

    Raises:
        OSError: unreadable file.
        ValueError: a block that is not an Ed25519 public key.
    """
    try:
        return TrustedKeys.from_pem(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Approval:
    """A verified approval: ``model@alias`` -> ``version`` with its artifact digests."""

    model: str
    version: str
    alias: str
    digests: dict[str, str]
    sequence: int
    key_id: str
    issued_at: str


def approval_tag(alias: str) -> str:
    """The version tag of the approval for ``alias``."""
    return f"{APPROVAL_TAG_PREFIX}{alias}"


def sign_approval(
    key: SigningKey, model: str, version: int | str, alias: str, digests: Mapping[str, str], sequence: int
) -> str:
    """The tag value approving ``model@alias`` -> ``version`` at ``sequence``.

    Raises:
        ValueError: no digests, or a sequence < 1.
    """
    if not digests:
        raise ValueError("an approval needs the version's artifact digests")
    if sequence < 1:
        raise ValueError("the sequence starts at 1")
    payload = {
        "type": APPROVAL_TYPE,
        "model": model,
        "version": str(version),
        "alias": alias,
        "digests": {k: str(v).lower() for k, v in digests.items()},
        "sequence": int(sequence),
        "issued_at": _now(),
    }
    return key.sign_payload(payload)


def verify_approval(
    value: str | None,
    trusted: TrustedKeys,
    *,
    model: str,
    version: int | str,
    alias: str,
    served: tuple[str, int] | None = None,
    revoked: Iterable[str] = (),
) -> Approval:
    """Check the approval ``value`` (a version's ``creditrisk.approval.<alias>`` tag) before any
    artifact is downloaded.

    Args:
        trusted: the trusted public keys.
        model / version / alias: what the registry says (the alias read and the version's number).
        served: ``(version, sequence)`` the slot serves or served last (persisted across restarts);
            None before the first approval.
        revoked: version numbers revoked by a verified revocation list.

    Raises:
        ApprovalRefused: see :meth:`TrustedKeys.verify`; ``malformed`` for a payload of another type
            or shape; ``mismatch`` when model, version or alias differ; ``revoked``; ``downgrade``
            when the sequence is below the served one, or equal for another version.
    """
    kid, payload = trusted.verify(value)
    try:
        if payload.get("type") != APPROVAL_TYPE:
            raise ValueError("not an approval")
        approval = Approval(
            model=str(payload["model"]),
            version=str(payload["version"]),
            alias=str(payload["alias"]),
            digests={str(k): str(v) for k, v in dict(payload["digests"]).items()},
            sequence=int(payload["sequence"]),
            key_id=kid,
            issued_at=str(payload.get("issued_at", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ApprovalRefused(MALFORMED, f"the signed payload is not an approval ({exc})") from None
    wanted = {"model": model, "version": str(version), "alias": alias}
    for name, expected in wanted.items():
        got = getattr(approval, name)
        if got != expected:
            raise ApprovalRefused(MISMATCH, f"the approval is for {name} {got!r}, not {expected!r}")
    if approval.version in set(revoked):
        raise ApprovalRefused(REVOKED, f"version {approval.version} of {model} is revoked")
    if served is not None:
        served_version, served_seq = served
        if approval.sequence < served_seq or (
            approval.sequence == served_seq and approval.version != served_version
        ):
            raise ApprovalRefused(
                DOWNGRADE,
                f"approval sequence {approval.sequence} is not newer than the served one "
                f"({served_seq}, version {served_version})",
            )
    return approval


def verify_approved_digests(approval: Approval, actual: Mapping[str, str]) -> None:
    """Check downloaded files (``actual``, from :func:`.digests.sha256_tree`) against the signed digests.

    Raises:
        ApprovalRefused: ``digests``, naming the first mismatch (see :func:`.digests.verify_digests`).
    """
    try:
        verify_digests(approval.digests, actual)
    except DigestMismatch as exc:
        raise ApprovalRefused(DIGESTS, f"against the signed digests: {exc.reason}") from None


@dataclass(frozen=True)
class Revocations:
    """A verified revocation list of one model."""

    model: str
    versions: frozenset[str]
    sequence: int
    key_id: str


def sign_revocations(key: SigningKey, model: str, versions: Iterable[int | str], sequence: int) -> str:
    """The tag value revoking ``versions`` of ``model`` (every version revoked so far) at ``sequence``."""
    if sequence < 1:
        raise ValueError("the sequence starts at 1")
    payload = {
        "type": REVOCATIONS_TYPE,
        "model": model,
        "versions": sorted({str(v) for v in versions}, key=lambda v: (len(v), v)),
        "sequence": int(sequence),
        "issued_at": _now(),
    }
    return key.sign_payload(payload)


def verify_revocations(value: str | None, trusted: TrustedKeys, *, model: str) -> Revocations:
    """Check a revocation list (the registered model's ``creditrisk.revocations`` tag).

    The caller keeps the union of every list it verified (a list with a lower sequence than one
    already seen adds nothing and removes nothing).

    Raises:
        ApprovalRefused: as :meth:`TrustedKeys.verify`; ``malformed``; ``mismatch`` for another model.
    """
    kid, payload = trusted.verify(value)
    try:
        if payload.get("type") != REVOCATIONS_TYPE:
            raise ValueError("not a revocation list")
        out = Revocations(
            model=str(payload["model"]),
            versions=frozenset(str(v) for v in payload["versions"]),
            sequence=int(payload["sequence"]),
            key_id=kid,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ApprovalRefused(MALFORMED, f"the signed payload is not a revocation list ({exc})") from None
    if out.model != model:
        raise ApprovalRefused(MISMATCH, f"the revocation list is for model {out.model!r}, not {model!r}")
    return out


def write_key_pair(private_path: Path, public_path: Path, *, keep: bool = True) -> SigningKey:
    """Create an Ed25519 key pair: the private key (mode 0600) at ``private_path`` and its public key
    appended to ``public_path`` (a trusted-keys file: earlier keys stay trusted, the overlap of a
    rotation). With ``keep`` and an existing ``private_path``, that key is loaded and nothing is
    written (a local stack's key made once per data folder)."""
    private_path, public_path = Path(private_path), Path(public_path)
    if keep and private_path.exists():
        key = load_signing_key(private_path)
        if not public_path.exists() or key.key_id not in load_trusted_keys(public_path).key_ids:
            with public_path.open("ab") as fh:
                fh.write(public_pem(key.public_key))
        return key
    key = SigningKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_path.with_name(f".{private_path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_pem())
    os.replace(tmp, private_path)
    with public_path.open("ab") as fh:
        fh.write(public_pem(key.public_key))
    return key


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m creditrisk_model_artifacts.signing keygen PRIVATE PUBLIC [--rotate]``: make a key
    pair (kept when PRIVATE exists unless ``--rotate``); prints the key id, never the key."""
    parser = argparse.ArgumentParser(prog="python -m creditrisk_model_artifacts.signing")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="make an Ed25519 signing key and append its public key")
    keygen.add_argument("private", type=Path)
    keygen.add_argument("public", type=Path)
    keygen.add_argument("--rotate", action="store_true", help="a new key even if PRIVATE exists")
    args = parser.parse_args(argv)
    key = write_key_pair(args.private, args.public, keep=not args.rotate)
    print(key.key_id)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

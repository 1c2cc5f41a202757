"""The slot's approval check: serve only what the registry-gateway signed, never a downgrade.

Anyone who can write to MLflow can create a version and move the alias; only the registry-gateway
holds the signing key. Before a byte of a new version is downloaded, :meth:`Approvals.check`
verifies the version's ``creditrisk.approval.<alias>`` tag (:mod:`creditrisk_model_artifacts.signing`):
a trusted key's signature, the model name, version and alias read from the registry, a version not
revoked, and a sequence not older than the one served (strictly newer for another version). After
the download, the files are checked against the *signed* digests (not the version's tags, which
anyone may rewrite).

* **Trusted keys**: PEM public keys in ``trusted_keys_file``, re-read when the file changes (a
  rotation: old and new key together, then the old one removed). A missing or unreadable file
  trusts no key (every version refused, a WARNING once per change).
* **Persisted state** (``approval_state_file``, JSON, shared by the slot's serving processes under
  an ``flock``): the served ``(version, sequence)`` and the revoked versions with the newest
  revocation list's sequence. A restart, or a new serving process, starts from it, so it cannot be
  downgraded. A fresh data folder has no floor: the newest valid approval the alias shows wins.
* **Revocations**: the registered model's ``creditrisk.revocations`` tag, signed; read each poll;
  its versions join the persisted set (which never shrinks: removing the tag undoes nothing).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from creditrisk_model_artifacts.signing import (
    REVOCATIONS_TAG,
    Approval,
    ApprovalRefused,
    TrustedKeys,
    approval_tag,
    load_trusted_keys,
    verify_approval,
    verify_revocations,
)

LOGGER = logging.getLogger("model_server.approvals")


class Approvals:
    """One slot's trusted keys, served sequence and revocations (see the module docstring).

    Args:
        model / alias: the slot.
        trusted_keys_file: PEM public keys of the registry-gateway.
        state_file: the persisted state (created on first write).
    """

    def __init__(self, model: str, alias: str, trusted_keys_file: Path, state_file: Path) -> None:
        self.model = model
        self.alias = alias
        self.trusted_keys_file = Path(trusted_keys_file)
        self.state_file = Path(state_file)
        self._keys = TrustedKeys()
        self._keys_stamp: tuple[float, int] | None = None
        self._bad_revocations: str | None = None

    # --- trusted keys --------------------------------------------------------------------------

    def trusted(self) -> TrustedKeys:
        """The trusted keys, re-read when the file's mtime or size changed."""
        try:
            st = self.trusted_keys_file.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._keys_stamp:
            self._keys_stamp = stamp
            try:
                self._keys = load_trusted_keys(self.trusted_keys_file)
                LOGGER.info(
                    "trusted registry keys: %s",
                    ", ".join(self._keys.key_ids) or "none",
                    extra={"alias": self.alias, "key_ids": self._keys.key_ids},
                )
            except (OSError, ValueError) as exc:
                self._keys = TrustedKeys()
                LOGGER.warning(
                    "no trusted registry key (every version refused): %s",
                    exc if isinstance(exc, ValueError) else f"cannot read {self.trusted_keys_file}",
                    extra={"alias": self.alias},
                )
        return self._keys

    # --- persisted state -----------------------------------------------------------------------

    @contextmanager
    def _locked_state(self) -> Iterator[dict[str, Any]]:
        """The persisted state under an exclusive lock; written back (atomically) on exit."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.state_file.with_name(f".{self.state_file.name}.lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, self.state_file)

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def served(self) -> tuple[str, int] | None:
        """The persisted ``(version, sequence)`` last served by this slot (None: never)."""
        entry = self._read().get("served", {}).get(self.alias)
        if not entry:
            return None
        return str(entry["version"]), int(entry["sequence"])

    def record_served(self, approval: Approval) -> None:
        """Persist that ``approval`` is served (never lowers the stored sequence)."""
        with self._locked_state() as state:
            served = state.setdefault("served", {})
            entry = served.get(self.alias)
            if entry is None or int(entry["sequence"]) <= approval.sequence:
                served[self.alias] = {"version": approval.version, "sequence": approval.sequence}

    def revoked(self) -> frozenset[str]:
        """The persisted revoked versions."""
        return frozenset(str(v) for v in self._read().get("revoked", []))

    # --- checks --------------------------------------------------------------------------------

    def refresh_revocations(self, client: Any) -> frozenset[str]:
        """Read and verify the model's revocation list, add it to the persisted set; the set.

        An absent tag changes nothing; an invalid one is logged (once per value) and ignored.
        """
        try:
            tags = dict(client.get_registered_model(self.model).tags or {})
        except Exception:  # the alias read reports registry failures; keep what is persisted
            return self.revoked()
        value = tags.get(REVOCATIONS_TAG)
        if not value:
            return self.revoked()
        try:
            listed = verify_revocations(value, self.trusted(), model=self.model)
        except ApprovalRefused as exc:
            if value != self._bad_revocations:
                self._bad_revocations = value
                LOGGER.warning(
                    "ignoring the revocation list of %s: %s",
                    self.model,
                    exc,
                    extra={"model": self.model, "alias": self.alias, "reason": exc.reason},
                )
            return self.revoked()
        with self._locked_state() as state:
            known = {str(v) for v in state.get("revoked", [])}
            if not listed.versions <= known:
                state["revoked"] = sorted(known | listed.versions, key=lambda v: (len(v), v))
                state["revocations_sequence"] = max(
                    int(state.get("revocations_sequence", 0)), listed.sequence
                )
            return frozenset(state.get("revoked", []))

    def check(self, mv: Any, current: tuple[str, int] | None) -> Approval:
        """Verify the approval of model version ``mv`` (as the alias read returned it) before any
        download.

        Args:
            current: ``(version, sequence)`` this process serves (None: nothing yet); the persisted
                one is used when it is newer.

        Raises:
            ApprovalRefused: see :func:`creditrisk_model_artifacts.signing.verify_approval`.
        """
        floor = self.served()
        if current is not None and (floor is None or current[1] > floor[1]):
            floor = current
        return verify_approval(
            dict(mv.tags or {}).get(approval_tag(self.alias)),
            self.trusted(),
            model=self.model,
            version=str(mv.version),
            alias=self.alias,
            served=floor,
            revoked=self.revoked(),
        )


class RefusalCounts:
    """Refused versions by reason (``model_server_refused_versions_total{alias,reason}``).

    MLServer increments its Prometheus counter through :attr:`on_refusal`; seldon-core hands
    :meth:`take` (the counts since the last call, as custom COUNTER metrics) to its metrics store
    with the next answered request.

    Args:
        alias: the slot's alias (a metric label).
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.counts: dict[str, int] = {}
        self._reported: dict[str, int] = {}
        self.on_refusal: Callable[[str], None] | None = None

    def add(self, reason: str) -> None:
        """Count one refusal."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.on_refusal is not None:
            try:
                self.on_refusal(reason)
            except Exception:
                LOGGER.exception("refusal metric failed")

    def take(self) -> list[dict[str, Any]]:
        """Seldon custom COUNTER metrics of the refusals since the last call."""
        out = []
        for reason, count in list(self.counts.items()):
            delta = count - self._reported.get(reason, 0)
            if delta > 0:
                self._reported[reason] = count
                out.append(
                    {
                        "type": "COUNTER",
                        "key": "model_server_refused_versions_total",
                        "value": delta,
                        "tags": {"alias": self.alias, "reason": reason},
                    }
                )
        return out

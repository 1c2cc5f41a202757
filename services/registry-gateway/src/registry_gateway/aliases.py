"""Aliases: SetAlias, DeleteAlias, PromoteModelVersion (the gate, then the move), RollbackChampion
and WatchAliases.

Every move runs inside the audit store's write lock (process lock + database lock) with its audit
record in the same transaction, so an alias never moves twice at once and each change has a
registry-wide sequence number. Watchers get a snapshot, then each change from the audit trail in
sequence order: a write in this process wakes them at once; other gateway processes' writes are
seen within the poll interval.

Signed approvals: with a signing key, every move to a version also writes the version tag
``creditrisk.approval.<alias>``, an Ed25519 signature over the model name, the version, the alias,
the version's artifact digests (recorded by the registration checks) and the move's ``alias_seq``
(:mod:`creditrisk_model_artifacts.signing`). The audit record is appended first (it assigns the
sequence), then the tag, then the alias, all inside the write lock: a failing MLflow write rolls
the record back, and a model-server that sees the alias move finds the approval already there.
Revocation (:meth:`Aliases.revoke`) rewrites the model's signed revocation list
(``creditrisk.revocations``) from the audit trail's REVOKE records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from creditrisk_kit import FailedPrecondition, InvalidArgument, PreconditionViolation
from creditrisk_kit.auth import Role
from creditrisk_model_artifacts import digests_from_tags
from creditrisk_model_artifacts.signing import (
    REVOCATIONS_TAG,
    SigningKey,
    approval_tag,
    sign_approval,
    sign_revocations,
)
from sqlalchemy.engine import Connection

from registry_gateway import audit as au
from registry_gateway.auth import Caller
from registry_gateway.domain import AliasBinding, AliasSnapshot, GateDecision, ModelVersionInfo
from registry_gateway.errors import GateRefused, alias_not_found
from registry_gateway.evaluation import GateEvaluator
from registry_gateway.registry import CHAMPION, ModelRegistry, check_alias, check_name


class Aliases:
    """Alias moves with their audit records, the gated promotion, rollback and the change stream.

    Args:
        registry: the MLflow registry.
        trail: the audit trail (its store's lock serializes the moves).
        gate: the gate run before a promotion.
        watch_poll_interval_s: how often watchers look for other gateway processes' changes.
        signing_key: signs every move to a version (None: moves are not signed).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        trail: au.AuditTrail,
        gate: GateEvaluator,
        watch_poll_interval_s: float,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.registry = registry
        self.signing_key = signing_key
        self.trail = trail
        self.gate = gate
        self.watch_poll_interval_s = watch_poll_interval_s
        self._changed = asyncio.Event()
        self._closed = False

    def notify(self) -> None:
        """Wake the watchers (an alias moved in this process, or closing)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """End the watchers."""
        self._closed = True
        self.notify()

    def move(
        self,
        caller: Caller,
        action: int,
        name: str,
        alias: str,
        version: int | None,
        reason: str,
        figures: dict[str, float] | None = None,
        expect: tuple[int | None] | None = None,
    ) -> au.AuditRecord:
        """Move (or delete, ``version`` None) an alias under the write lock, with its audit record
        and, for a move to a version, its signed approval (see the module docstring).

        Raises:
            FailedPrecondition: the alias moved meanwhile (``expect``), or signing is on and the
                version has no recorded artifact digests (not registered through the gateway).
        """
        with self.trail.store.locked() as conn:
            before = self.registry.alias_holder(name, alias)
            if expect is not None and before != expect[0]:
                raise FailedPrecondition(
                    f"alias {name}@{alias} moved while the gate ran (now {before}); evaluate again",
                    [PreconditionViolation("ALIAS_MOVED", f"{name}@{alias}", "retry the promotion")],
                )
            if version is None and before is None:
                raise alias_not_found(name, alias)
            record = self.trail.append(
                conn,
                caller,
                action,
                name,
                alias=alias,
                from_version=before,
                to_version=version,
                reason=reason,
                figures=figures or {},
            )
            if version is None:
                self.registry.client.delete_registered_model_alias(name, alias)
            else:
                self._approve(conn, name, alias, version, record.alias_seq or record.seq)
                self.registry.client.set_registered_model_alias(name, alias, str(version))
            return record

    def _approve(self, conn: Connection, name: str, alias: str, version: int, sequence: int) -> None:
        """Sign the move and write the approval tag on the version (nothing without a key).

        The digests signed are the ones the gateway kept when it registered the version, never
        MLflow's tags (any MLflow writer can change those); a version the gateway never registered
        (no REGISTER record) is refused. A version registered before the gateway kept digests
        (migration 0002) is signed with its digest tags, as before.
        """
        if self.signing_key is None:
            return
        registered, digests = self.trail.store.registered(conn, name, version)
        if not registered:
            raise FailedPrecondition(
                f"model version {name}/{version} was not registered through the gateway "
                "(no REGISTER audit record); an alias moves only to versions it registered",
                [PreconditionViolation("NOT_REGISTERED", f"{name}/{version}", "RegisterModelVersion")],
            )
        if digests is None:
            digests = digests_from_tags(dict(self.registry.model_version(name, version).tags or {}))
        if not digests:
            raise FailedPrecondition(
                f"model version {name}/{version} has no recorded artifact digests; "
                "register it through the gateway",
                [PreconditionViolation("NO_DIGESTS", f"{name}/{version}", "register the run again")],
            )
        value = sign_approval(self.signing_key, name, version, alias, digests, sequence)
        self.registry.client.set_model_version_tag(name, str(version), approval_tag(alias), value)

    def revoke_now(self, caller: Caller, name: str, version: int, reason: str) -> au.AuditRecord:
        """Revoke ``name``/``version`` (blocking; see :meth:`revoke`)."""
        with self.trail.store.locked() as conn:
            self.registry.model_version(name, version)
            record = self.trail.append(conn, caller, au.REVOKE, name, to_version=version, reason=reason)
            revoked = self.trail.store.revoked_versions(name, conn) | {version}
            if self.signing_key is None:
                raise FailedPrecondition(
                    "revocation needs the gateway's signing key (REGISTRY_GATEWAY_SIGNING_KEY_FILE)",
                    [PreconditionViolation("NO_SIGNING_KEY", name, "configure a signing key")],
                )
            value = sign_revocations(self.signing_key, name, revoked, record.seq)
            self.registry.client.set_registered_model_tag(name, REVOCATIONS_TAG, value)
            return record

    async def revoke(self, caller: Caller, name: str, version: int, reason: str) -> au.AuditRecord:
        """Revoke an approved version (admin, reason required): a REVOKE audit record, then the
        model's signed revocation list (every version revoked so far, sequence = the record's
        ``seq``) in the registered-model tag ``creditrisk.revocations``. A model-server stops
        serving a revoked version and refuses it from then on; the alias is left where it is.

        Raises:
            PermissionDenied: not an admin. InvalidArgument: no reason, version < 1.
            NotFound: no such model or version. FailedPrecondition: no signing key.
        """
        caller.require(Role.ADMIN, "RevokeModelVersion")
        name = check_name(name, "name")
        if version < 1:
            raise InvalidArgument("version", "required, >= 1")
        if not reason.strip():
            raise InvalidArgument("reason", "required")
        return await self.registry.run(self.revoke_now, caller, name, version, reason)

    async def set_alias(
        self, caller: Caller, name: str, alias: str, version: int, reason: str
    ) -> au.AuditRecord:
        """SetAlias: any alias but champion."""
        caller.require(Role.PROMOTE, "SetAlias")
        name = check_name(name, "name")
        alias = check_alias(alias, "alias")
        if alias == CHAMPION:
            raise FailedPrecondition(
                "the champion alias moves only by PromoteModelVersion or RollbackChampion",
                [PreconditionViolation("CHAMPION_ALIAS", f"{name}@{CHAMPION}", "use PromoteModelVersion")],
            )
        if version < 1:
            raise InvalidArgument("version", "required, >= 1")

        def write() -> au.AuditRecord:
            self.registry.ready_version(name, version)
            return self.move(caller, au.SET_ALIAS, name, alias, version, reason)

        record = await self.registry.run(write)
        self.notify()
        return record

    async def delete_alias(self, caller: Caller, name: str, alias: str, reason: str) -> au.AuditRecord:
        """DeleteAlias (admin, reason required)."""
        caller.require(Role.ADMIN, "DeleteAlias")
        name = check_name(name, "name")
        if not alias:
            raise InvalidArgument("alias", "required")
        if not reason.strip():
            raise InvalidArgument("reason", "required")

        def write() -> au.AuditRecord:
            self.registry.registered_model(name)
            return self.move(caller, au.DELETE_ALIAS, name, alias, None, reason)

        record = await self.registry.run(write)
        self.notify()
        return record

    async def promote(
        self, caller: Caller, name: str, version: int, alias: str, force: bool, reason: str
    ) -> tuple[GateDecision, au.AuditRecord, ModelVersionInfo]:
        """PromoteModelVersion: the gate, then the alias move (or a REFUSE record and GateRefused)."""
        caller.require(Role.PROMOTE, "PromoteModelVersion")
        name = check_name(name, "name")
        if version < 1:
            raise InvalidArgument("version", "required, >= 1")
        alias = check_alias(alias or CHAMPION, "alias")
        if force:
            caller.require(Role.ADMIN, "PromoteModelVersion with force")
            if not reason.strip():
                raise InvalidArgument("reason", "required with force")
        decision, holder = await self.gate.decide(name, version, alias)
        outcome = decision.outcome
        figures = outcome.figures()
        if not outcome.passed and not force:
            await self.registry.run(
                lambda: self.trail.append_now(
                    caller,
                    au.REFUSE,
                    name,
                    alias=alias,
                    from_version=holder,
                    to_version=version,
                    figures=figures,
                    reason=outcome.summary(),
                )
            )
            raise GateRefused(decision)
        action = au.PROMOTE if outcome.passed else au.FORCE_PROMOTE
        reason = reason if reason else outcome.summary()
        record = await self.registry.run(
            self.move, caller, action, name, alias, version, reason, figures, (holder,)
        )
        self.notify()
        mv = await self.registry.run(
            lambda: self.registry.version_info(self.registry.model_version(name, version))
        )
        return decision, record, mv

    async def rollback(
        self, caller: Caller, name: str, reason: str, to_version: int | None = None
    ) -> tuple[au.AuditRecord, ModelVersionInfo]:
        """RollbackChampion: back to the previous champion from the audit trail (or an explicit version)."""
        caller.require(Role.ADMIN, "RollbackChampion")
        name = check_name(name, "name")
        if not reason.strip():
            raise InvalidArgument("reason", "required")

        def write() -> au.AuditRecord:
            current = self.registry.alias_holder(name, CHAMPION)
            if to_version is not None:
                target: int | None = to_version
                self.registry.ready_version(name, to_version)
            else:
                history = self.trail.store.alias_history(name, CHAMPION)
                last = next((r for r in reversed(history) if r.to_version == current), None)
                target = last.from_version if last is not None else None
                if target is not None:
                    self.registry.ready_version(name, target)
            if current is None or target is None or target == current:
                raise FailedPrecondition(
                    f"{name} has no previous champion to roll back to",
                    [
                        PreconditionViolation(
                            "NO_PREVIOUS_CHAMPION", f"{name}@{CHAMPION}", "promote a version"
                        )
                    ],
                )
            return self.move(caller, au.ROLLBACK, name, CHAMPION, target, reason, expect=(current,))

        record = await self.registry.run(write)
        self.notify()
        mv = await self.registry.run(
            lambda: self.registry.version_info(self.registry.model_version(name, record.to_version or 0))
        )
        return record, mv

    async def watch(
        self, caller: Caller, model_names: Sequence[str], alias_filter: Sequence[str]
    ) -> AsyncIterator[AliasSnapshot | au.AuditRecord]:
        """WatchAliases: a snapshot, then each alias change in sequence order."""
        caller.require(Role.READ_REGISTRY, "WatchAliases")
        names = set(model_names)
        aliases = set(alias_filter)
        for n in names:
            await self.registry.run(self.registry.registered_model, n)

        def snapshot() -> tuple[int, list[AliasBinding]]:
            while True:
                before = self.trail.store.last_alias_seq()
                bindings = []
                models = (
                    [self.registry.registered_model(n) for n in sorted(names)]
                    if names
                    else list(
                        self.registry.client.search_registered_models(max_results=1000, order_by=["name ASC"])
                    )
                )
                for rm in models:
                    for alias, version in sorted((rm.aliases or {}).items()):
                        if not aliases or alias in aliases:
                            bindings.append(
                                AliasBinding(model_name=rm.name, alias=alias, version=int(version))
                            )
                if self.trail.store.last_alias_seq() == before:
                    return before, bindings

        seq, bindings = await self.registry.run(snapshot)
        yield AliasSnapshot(bindings=bindings, sequence=seq)
        while not self._closed:
            changed = self._changed
            records = await self.registry.run(self.trail.store.alias_changes_after, seq)
            for record in records:
                seq = record.alias_seq or seq
                if (not names or record.model_name in names) and (not aliases or record.alias in aliases):
                    yield record
            if not records:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=self.watch_poll_interval_s)

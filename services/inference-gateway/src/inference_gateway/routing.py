"""Routing between the champion and challenger slots.

* The **champion** slot answers every request not routed to a canary.
* A **challenger** in ``shadow`` mode is scored on every request (in the background) and logged,
  never returned and never awaited by the answer.
* A **challenger** in ``canary`` mode answers a configured share of applicants, sticky per
  applicant: applicant ``a`` goes to the canary when ``bucket(a) < canary_share``, where
  ``bucket(a)`` is the first 8 bytes of ``sha256(str(a))`` as a fraction of 2^64 (stable across
  processes and restarts, unlike Python's ``hash``).
* A slot that is **not ready** (its model server answers its readiness route with anything but
  200, or left ``probe_failures`` consecutive probes unanswered; no version is known from the alias
  stream; or the version's signature could not be read) gets no traffic:
  a canary's applicants go to the champion, a shadow is skipped. With the champion not ready the
  gateway is not ready and answers UNAVAILABLE.

The registry's ``WatchAliases`` stream sets each slot's version; the slot's model server follows
the same alias on its own, so for a moment after a swap the two can disagree: the answer's version
and threshold are the ones the model server names in its response, never the routing table's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

from creditrisk.common.v1 import serving_pb2
from creditrisk_kit import Unavailable

from inference_gateway.credential import CredentialRefused
from inference_gateway.model_client import ModelServerClient
from inference_gateway.registry import ModelVersionInfo, RegistryClient

_LOGGER = logging.getLogger(__name__)

CHAMPION, CHALLENGER = serving_pb2.SERVING_SLOT_CHAMPION, serving_pb2.SERVING_SLOT_CHALLENGER
MODE_CHAMPION, MODE_SHADOW, MODE_CANARY = (
    serving_pb2.SERVING_MODE_CHAMPION,
    serving_pb2.SERVING_MODE_SHADOW,
    serving_pb2.SERVING_MODE_CANARY,
)


def bucket(applicant_id: int) -> float:
    """The applicant's stable position in [0, 1) (see the module docstring)."""
    digest = hashlib.sha256(str(applicant_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Slot:
    """One model-server slot as the gateway sees it."""

    slot: int
    alias: str
    mode: int
    client: ModelServerClient
    version: int | None = None
    info: ModelVersionInfo | None = None
    info_version: int | None = None
    since: dt.datetime | None = None
    server_ready: bool = False
    unanswered_probes: int = 0

    @property
    def ready(self) -> bool:
        """Can take traffic: its server is ready and its version's signature is known."""
        return self.server_ready and self.version is not None and self.info is not None


@dataclass(frozen=True)
class Route:
    """Where one request goes: the slot that answers, and a shadow slot (or None)."""

    answer: Slot
    shadow: Slot | None


class Router:
    """Routing table kept current by the alias stream and readiness probes.

    Args:
        model_name: the registered model served.
        champion: the champion slot's client.
        challenger: the challenger slot's client, or None.
        challenger_mode: ``off``, ``shadow`` or ``canary``.
        canary_share: share of applicants for the canary, in [0, 1].
        registry: for version signatures and the alias stream.
        probe_interval_s: seconds between readiness probes.
        probe_failures: consecutive unanswered probes that take a ready slot out.
    """

    def __init__(
        self,
        model_name: str,
        champion: ModelServerClient,
        challenger: ModelServerClient | None,
        *,
        challenger_mode: str,
        canary_share: float,
        registry: RegistryClient,
        probe_interval_s: float,
        probe_failures: int = 3,
    ) -> None:
        self.model_name = model_name
        self.champion = Slot(CHAMPION, "champion", MODE_CHAMPION, champion)
        self.challenger: Slot | None = None
        if challenger is not None and challenger_mode != "off":
            mode = MODE_SHADOW if challenger_mode == "shadow" else MODE_CANARY
            self.challenger = Slot(CHALLENGER, "challenger", mode, challenger)
        self.canary_share = canary_share
        self.registry = registry
        self.probe_interval_s = probe_interval_s
        self.probe_failures = probe_failures
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def slots(self) -> list[Slot]:
        return [s for s in (self.champion, self.challenger) if s is not None]

    def route(self, applicant_id: int) -> Route:
        """The slots for one applicant.

        Raises:
            Unavailable: the champion slot is not ready; a
                :class:`~inference_gateway.credential.CredentialRefused` naming the setting when it
                has no version to route to because the registry-gateway refuses the gateway's
                credential.
        """
        challenger = self.challenger if self.challenger is not None and self.challenger.ready else None
        if challenger is not None and challenger.mode == MODE_CANARY:
            if bucket(applicant_id) < self.canary_share:
                return Route(challenger, None)
            challenger = None
        if not self.champion.ready:
            refused = self.registry.refusals.error
            if refused is not None and self.champion.info is None:
                raise refused.again()
            raise Unavailable("the champion model server slot is not ready")
        return Route(self.champion, challenger)

    async def on_alias(self, alias: str, version: int | None) -> None:
        """Alias stream listener: point the slot following ``alias`` at ``version``."""
        for slot in self.slots:
            if slot.alias != alias or slot.version == version:
                continue
            _LOGGER.info("alias %s of %s -> version %s", alias, self.model_name, version)
            slot.version = version
            slot.since = dt.datetime.now(dt.UTC) if version is not None else None
            if version is None:
                slot.info = None  # alias deleted: nothing to route to
            # Otherwise the previous version's signature stays until the new one is read, so the
            # slot never looks unready during a swap (the answer names the version that scored).
            await self._load_info(slot)

    async def _load_info(self, slot: Slot) -> None:
        version = slot.version
        if version is None:
            return
        try:
            info = await self.registry.version(self.model_name, version)
        except CredentialRefused:
            return  # logged and counted once by the registry client's RefusalRecord
        except Unavailable as exc:
            _LOGGER.warning("cannot read version %s of %s yet: %s", version, self.model_name, exc)
            return
        if slot.version == version:
            slot.info = info
            slot.info_version = version

    async def probe(self) -> None:
        """One round of readiness probes (and signature reads still missing)."""

        async def one(slot: Slot) -> None:
            answer = await slot.client.ready()
            if answer is None:  # unanswered: out only after probe_failures in a row
                slot.unanswered_probes += 1
                ready = slot.server_ready and slot.unanswered_probes < self.probe_failures
            else:
                slot.unanswered_probes = 0
                ready = answer
            if ready != slot.server_ready:
                _LOGGER.info("slot %s model server %s", slot.alias, "ready" if ready else "NOT ready")
            slot.server_ready = ready
            if slot.version is not None and slot.info_version != slot.version:
                await self._load_info(slot)

        await asyncio.gather(*(one(s) for s in self.slots))

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # pragma: no cover - the loop must survive
                _LOGGER.exception("slot probe failed")
            await asyncio.sleep(self.probe_interval_s)

    def start(self) -> None:
        """Follow the aliases and probe the slots in the background."""
        aliases = [s.alias for s in self.slots]
        self._tasks = [
            asyncio.create_task(
                self.registry.watch(self.model_name, aliases, self.on_alias), name="alias-watch"
            ),
            asyncio.create_task(self._probe_loop(), name="slot-probes"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for slot in self.slots:
            await slot.client.close()

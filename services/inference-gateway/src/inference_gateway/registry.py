"""The registry-gateway as the gateway uses it: model versions (signature, required inputs,
threshold, lineage) cached per version, and the alias stream that keeps routing current.

Auth: every call carries ``authorization: Bearer <token>`` (``read_registry`` is enough): the
gateway's own credential, read at each call (a rotated file is used from the next call), or the
deprecated ``INFERENCE_GATEWAY_REGISTRY_TOKEN``. A refusal (UNAUTHENTICATED / PERMISSION_DENIED)
of a version read or of the alias stream is :class:`~inference_gateway.credential.CredentialRefused`
naming the setting that was sent, recorded once per change of state (:attr:`RegistryClient.refusals`);
the router answers it while the champion has no version to route to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from creditrisk_clients import DownstreamErrors
from creditrisk_clients.base import TokenProvider
from creditrisk_clients.registry import RegistryClient as RegistryGatewayClient
from creditrisk_kit import Unavailable
from creditrisk_kit.tls import ClientTls

from inference_gateway.credential import (
    OWN_SETTING,
    REFUSAL_CODES,
    CredentialRefused,
    RefusalRecord,
    refusal_handlers,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersionInfo:
    """What the gateway needs to know about one model version.

    Attributes:
        name / version: the registered model and version number.
        inputs: signature input names, in the model's order, with their ValueType.
        required: inputs that must have a value (signature ``required`` flags plus the names in the
            version's ``required_inputs_tag`` tag).
        threshold: the stored decision threshold, or None for old versions.
        feature_service_version: the feature service version of its lineage ("" if unknown).
    """

    name: str
    version: int
    inputs: dict[str, int]
    required: frozenset[str]
    threshold: float | None
    feature_service_version: str


AliasListener = Callable[[str, int | None], Awaitable[None]]


class RegistryClient:
    """GetModelVersion (cached per version: a version is immutable) and WatchAliases."""

    def __init__(
        self,
        target: str,
        token: TokenProvider,
        *,
        deadline_s: float,
        max_message_bytes: int,
        required_inputs_tag: str,
        reconnect_max_s: float = 5.0,
        tls: ClientTls | None = None,
        setting: str = OWN_SETTING,
    ) -> None:
        self._registry = RegistryGatewayClient.connect(
            target, token=token, max_message_bytes=max_message_bytes, default_timeout_s=deadline_s, tls=tls
        )
        self.setting = setting
        """The gateway's setting whose credential is sent (named when it is refused)."""
        self.refusals = RefusalRecord("registry-gateway")
        self._refusal = refusal_handlers(
            "registry-gateway",
            accepts="the registry-gateway's REGISTRY_GATEWAY_AUTH_API_KEYS_FILE",
            role="read_registry",
            setting=setting,
        )
        self._deadline_s = deadline_s
        self._tag = required_inputs_tag
        self._reconnect_max_s = reconnect_max_s
        self._cache: dict[tuple[str, int], ModelVersionInfo] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[ModelVersionInfo]] = {}
        self.connected = asyncio.Event()

    async def version(self, name: str, version: int) -> ModelVersionInfo:
        """One model version (cached for the process lifetime).

        Raises:
            Unavailable: the registry cannot be reached.
        """
        key = (name, version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ModelVersionInfo] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            info = await self._fetch(name, version)
            self._cache[key] = info
            future.set_result(info)
            return info
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._pending.pop(key, None)

    async def _fetch(self, name: str, version: int) -> ModelVersionInfo:
        errors = _version_errors(name, version).with_handlers(self._refusal)
        try:
            mv = await self._registry.get_model_version(
                name, version, timeout_s=self._deadline_s, errors=errors
            )
        except CredentialRefused as exc:
            self.refusals.refusal(exc)
            raise
        self.refusals.accepted()
        inputs = {c.name: c.value_type for c in mv.signature.inputs}
        required = {c.name for c in mv.signature.inputs if c.required}
        extra = mv.tags.get(self._tag, "") if self._tag else ""
        required |= {n.strip() for n in extra.split(",") if n.strip()}
        return ModelVersionInfo(
            name=mv.name or name,
            version=mv.version or version,
            inputs=inputs,
            required=frozenset(required),
            threshold=mv.decision_threshold if mv.HasField("decision_threshold") else None,
            feature_service_version=mv.lineage.feature_service.version,
        )

    async def watch(self, model_name: str, aliases: list[str], on_change: AliasListener) -> None:
        """Follow the model's aliases for ever: snapshot, then changes; reconnect with backoff.

        ``on_change(alias, version)`` is called for every alias of the snapshot (None for a watched
        alias absent from it) and every change. Returns only when cancelled.
        """
        backoff = 0.1
        problem = _StreamProblem(model_name)
        while True:
            try:
                stream = self._registry.watch_aliases([model_name], aliases)
                async for message in stream:
                    backoff = 0.1
                    problem.clear()
                    self.refusals.accepted()
                    if message.HasField("snapshot"):
                        seen = {}
                        for binding in message.snapshot.aliases:
                            if binding.model_name == model_name:
                                seen[binding.alias] = binding.version
                        for alias in aliases:
                            await on_change(alias, seen.get(alias))
                        self.connected.set()
                    elif message.HasField("change"):
                        change = message.change
                        if change.model_name == model_name and change.alias in aliases:
                            to = change.to_version if change.HasField("to_version") else None
                            await on_change(change.alias, to)
                _LOGGER.warning("alias stream ended; reconnecting")
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in REFUSAL_CODES:  # logged and counted once per change of state
                    refused = self._refusal[exc.code()](exc)
                    assert isinstance(refused, CredentialRefused)
                    self.refusals.refusal(refused)
                else:
                    problem.report(exc.code())
            except Exception:
                _LOGGER.exception("alias stream handler failed; reconnecting")
            self.connected.clear()
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, self._reconnect_max_s)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._registry.close()


def _version_errors(name: str, version: int) -> DownstreamErrors:
    """Every failure of GetModelVersion is UNAVAILABLE here, naming the version and the code: the
    gateway cannot route without it, whatever the registry-gateway's reason (a refusal of the
    gateway's credential: the client's own handlers, naming the setting)."""

    def down(exc: grpc.RpcError) -> Exception:
        return Unavailable(f"registry-gateway: model version {name}/{version}: {exc.code().name}")

    return DownstreamErrors(
        "registry-gateway",
        on={grpc.StatusCode.UNAVAILABLE: down, grpc.StatusCode.DEADLINE_EXCEEDED: down},
        default=down,
    )


class _StreamProblem:
    """Logs the alias stream's failures once per state, not once per reconnect: NOT_FOUND (the
    model is not registered yet, the normal state before the first training run) once at INFO;
    another failure at WARNING when it starts or changes, again every :data:`REMIND_S` seconds while
    it lasts; an INFO line when the stream works again."""

    REMIND_S = 300.0

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.code: grpc.StatusCode | None = None
        self.count = 0
        self.logged_at = 0.0

    def report(self, code: grpc.StatusCode) -> None:
        now = time.monotonic()
        self.count = self.count + 1 if code == self.code else 1
        if code == self.code and (code == grpc.StatusCode.NOT_FOUND or now - self.logged_at < self.REMIND_S):
            return
        self.code, self.logged_at = code, now
        if code == grpc.StatusCode.NOT_FOUND:
            _LOGGER.info("waiting for model %s to be registered (alias stream: NOT_FOUND)", self.model_name)
        else:
            _LOGGER.warning(
                "alias stream of model %s failed (%s, %d time(s) in a row); reconnecting with backoff",
                self.model_name,
                code.name,
                self.count,
            )

    def clear(self) -> None:
        if self.code is not None:
            _LOGGER.info("alias stream of model %s connected", self.model_name)
        self.code, self.count = None, 0

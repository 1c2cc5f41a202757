"""Client of the registry-gateway (contract ``creditrisk.registry.v1.ModelRegistryService``), reads.

:class:`RegistryClient` carries the caller's bearer token (``authorization: Bearer <token>``; a
viewer's token is enough for these calls) on every call:

* ``GetModelVersion`` -> the ``ModelVersion`` message (by number or by alias), errors mapped by
  :class:`~creditrisk_clients.errors.DownstreamErrors` (default: UNAVAILABLE -> ``Unavailable``,
  DEADLINE_EXCEEDED -> ``DeadlineExceeded``, other codes as the caller's handlers say);
* ``WatchAliases`` -> the response stream as it comes (a snapshot, then changes). Its errors are
  the stream's own ``grpc.aio.AioRpcError``: a watcher decides on the code whether and when to
  reconnect, and a stream has no default deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import grpc.aio
from creditrisk.common.v1 import refs_pb2
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_kit.client import DEFAULT_TIMEOUT_S
from creditrisk_kit.settings import DEFAULT_MAX_MESSAGE_BYTES

from creditrisk_clients.base import ContractClient, open_channel
from creditrisk_clients.errors import DownstreamErrors

#: The default mapping of the registry-gateway's errors (see :mod:`creditrisk_clients.errors`).
REGISTRY_ERRORS = DownstreamErrors("the registry-gateway")


class RegistryClient(ContractClient):
    """Async reads of ``creditrisk.registry.v1.ModelRegistryService`` (see the module docstring).

    Args:
        channel: A ``grpc.aio`` channel to the registry-gateway (a kit ``aio_channel``).
        token: The caller's bearer token ("" sends no ``authorization`` header).
        errors: How the registry-gateway's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        token: str = "",
        errors: DownstreamErrors = REGISTRY_ERRORS,
        owns_channel: bool = False,
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = rpb_grpc.ModelRegistryServiceStub(channel)

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        token: str = "",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
        errors: DownstreamErrors = REGISTRY_ERRORS,
    ) -> RegistryClient:
        """A client over its own kit ``aio_channel`` to ``target`` (closed by :meth:`close`).

        Args:
            target: ``host:port`` or a gRPC target URI.
            max_message_bytes / default_timeout_s: As for :func:`creditrisk_clients.base.open_channel`.
            token / errors: As for the constructor.
        """
        channel = open_channel(
            target, max_message_bytes=max_message_bytes, default_timeout_s=default_timeout_s
        )
        return cls(channel, token=token, errors=errors, owns_channel=True)

    async def get_model_version(
        self,
        name: str,
        version: int = 0,
        *,
        alias: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> rpb.ModelVersion:
        """Model version ``version`` of ``name``, or the one ``alias`` points to.

        Args:
            name: The registered model.
            version: The version number (used when ``alias`` is empty).
            alias: An alias of the model, e.g. ``champion``.
            timeout_s: Deadline in seconds (None: the channel's default, if any).

        Raises:
            ValueError: Neither ``version`` (>= 1) nor ``alias`` given.
            As ``errors`` maps the registry-gateway's status (NOT_FOUND for an unknown version).
        """
        if alias:
            model = refs_pb2.ModelRef(name=name, alias=alias)
        elif version >= 1:
            model = refs_pb2.ModelRef(name=name, version=version)
        else:
            raise ValueError(f"a model version number >= 1 or an alias is needed, got {version!r}")
        try:
            response = await self._stub.GetModelVersion(
                rpb.GetModelVersionRequest(model=model), metadata=self._metadata, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)
        found: rpb.ModelVersion = response.model_version
        return found

    def watch_aliases(
        self, model_names: Sequence[str], aliases: Sequence[str] = ()
    ) -> AsyncIterator[rpb.WatchAliasesResponse]:
        """The ``WatchAliases`` stream of ``model_names`` (all their aliases when ``aliases`` is
        empty): a snapshot first, then one message per change; iterate it with ``async for``.

        Raises (while iterating):
            grpc.aio.AioRpcError: The stream failed (the caller decides on its code).
        """
        stream: AsyncIterator[rpb.WatchAliasesResponse] = self._stub.WatchAliases(
            rpb.WatchAliasesRequest(model_names=list(model_names), aliases=list(aliases)),
            metadata=self._metadata,
        )
        return stream

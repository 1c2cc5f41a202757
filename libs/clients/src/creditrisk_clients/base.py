"""What every client of :mod:`creditrisk_clients` shares: its channel, its error mapping, closing."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Self

import grpc.aio
from creditrisk_kit.client import DEFAULT_TIMEOUT_S, aio_channel
from creditrisk_kit.settings import DEFAULT_MAX_MESSAGE_BYTES
from creditrisk_kit.tls import ClientTls

from creditrisk_clients.errors import DownstreamErrors

TokenProvider = str | Callable[[], str]
"""A bearer credential, or a callable returning the current one ("" sends none)."""


def open_channel(
    target: str, *, max_message_bytes: int, default_timeout_s: float | None, tls: ClientTls | None = None
) -> grpc.aio.Channel:
    """A kit ``aio_channel`` to ``target`` (message limits, retries on UNAVAILABLE, and a default
    deadline of ``default_timeout_s`` seconds on unary calls; None: no default-deadline interceptor),
    over TLS when ``tls`` is given (``ClientTls.from_settings(settings)``; None: plaintext).

    Must be called inside a running event loop (``grpc.aio`` binds the channel to it).

    Raises:
        OSError: When a file of ``tls`` cannot be read.
    """
    return aio_channel(
        target, max_message_bytes=max_message_bytes, default_timeout_s=default_timeout_s, tls=tls
    )


class ContractClient:
    """A client of one contract over a ``grpc.aio`` channel.

    Args:
        channel: The channel (a kit ``aio_channel``).
        errors: How the service's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
        token: The caller's bearer credential (an API key or a JWT), sent as ``authorization:
            Bearer <token>`` on every call ("" sends no ``authorization`` header); or a provider
            called at each call (``creditrisk_kit.auth.CredentialSource``: a service's own
            credential, re-read when its file is rotated).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        errors: DownstreamErrors,
        owns_channel: bool,
        token: TokenProvider = "",
    ) -> None:
        self.channel = channel
        self.errors = errors
        self._owns_channel = owns_channel
        self._token: Callable[[], str] = (lambda: token) if isinstance(token, str) else token

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
        tls: ClientTls | None = None,
        **options: Any,
    ) -> Self:
        """A client over its own kit ``aio_channel`` to ``target`` (closed by :meth:`close`).

        Args:
            target: ``host:port`` or a gRPC target URI.
            max_message_bytes / default_timeout_s: As for :func:`open_channel` (``default_timeout_s``
                None: every call must pass ``timeout_s``).
            tls: As for :func:`open_channel` (None: plaintext).
            options: The client's constructor keywords (``token``, ``errors``, and its own).

        Raises:
            OSError: When a file of ``tls`` cannot be read.
            TypeError: An option the client's constructor does not take.
        """
        inspect.signature(cls).bind(None, owns_channel=True, **options)  # before a channel exists
        channel = open_channel(
            target, max_message_bytes=max_message_bytes, default_timeout_s=default_timeout_s, tls=tls
        )
        return cls(channel, owns_channel=True, **options)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the bearer credential, if any."""
        return bearer_metadata(self._token())

    async def unary[Req, Resp](
        self,
        rpc: Callable[..., Awaitable[Resp]],
        request: Req,
        *,
        timeout_s: float | None,
        errors: DownstreamErrors | None,
    ) -> Resp:
        """``await rpc(request)`` with this client's metadata and the deadline ``timeout_s`` seconds
        (None: the channel's default, if any); a failure is raised as ``errors`` (default: the
        client's) maps it."""
        try:
            return await rpc(request, metadata=self.metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            (errors or self.errors).raise_for(exc)

    async def close(self) -> None:
        """Close the channel when this client opened it."""
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> Self:
        """``async with Client.connect(target) as client:`` closes it on the way out."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """``(("authorization", "Bearer <token>"),)``, or no metadata for an empty token."""
    return (("authorization", f"Bearer {token}"),) if token else ()

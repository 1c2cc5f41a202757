"""What every client of :mod:`creditrisk_clients` shares: its channel, its error mapping, closing."""

from __future__ import annotations

import grpc.aio
from creditrisk_kit.client import aio_channel

from creditrisk_clients.errors import DownstreamErrors


def open_channel(target: str, *, max_message_bytes: int, default_timeout_s: float | None) -> grpc.aio.Channel:
    """A kit ``aio_channel`` to ``target`` (message limits, retries on UNAVAILABLE, and a default
    deadline of ``default_timeout_s`` seconds on unary calls; None: no default-deadline interceptor).

    Must be called inside a running event loop (``grpc.aio`` binds the channel to it).
    """
    return aio_channel(target, max_message_bytes=max_message_bytes, default_timeout_s=default_timeout_s)


class ContractClient:
    """A client of one contract over a ``grpc.aio`` channel.

    Args:
        channel: The channel (a kit ``aio_channel``).
        errors: How the service's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
    """

    def __init__(self, channel: grpc.aio.Channel, *, errors: DownstreamErrors, owns_channel: bool) -> None:
        self.channel = channel
        self.errors = errors
        self._owns_channel = owns_channel

    async def close(self) -> None:
        """Close the channel when this client opened it."""
        if self._owns_channel:
            await self.channel.close()

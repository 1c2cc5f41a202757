"""Slow and idle HTTP clients for the servers' slowloris tests: how long a server keeps them.

:func:`seconds_until_closed` opens a raw TCP connection, sends a prefix (nothing, a partial
request head), optionally trickles one more byte now and then, and measures when the server
closes the connection (end of stream, or a reset). Blocking: run it in a thread
(``asyncio.to_thread``) when the server is in the same event loop.
"""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass

PARTIAL_HEAD = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
"""A request head that never ends (no blank line): a header line left open."""


@dataclass(frozen=True)
class Cut:
    """How a slow connection ended.

    Attributes:
        after_s: Seconds from the connection to its end (``inf``: still open at ``limit_s``).
        answer: The bytes the server sent before closing (empty: closed without an answer).
    """

    after_s: float
    answer: bytes = b""

    @property
    def closed(self) -> bool:
        """True when the server ended the connection within the limit."""
        return math.isfinite(self.after_s)


def seconds_until_closed(
    host: str,
    port: int,
    prefix: bytes = b"",
    *,
    trickle_every_s: float | None = None,
    limit_s: float = 10.0,
) -> Cut:
    """Connect, send ``prefix``, then wait (trickling a byte every ``trickle_every_s``) until the
    server closes the connection or ``limit_s`` passes.

    Args:
        host, port: The server.
        prefix: Sent at once after connecting (``b""``: nothing, an idle connection).
        trickle_every_s: Send one header byte (``a``) this often; None: send nothing more.
        limit_s: Give up after this many seconds (the connection is then closed by us).

    Returns:
        The :class:`Cut`: when it was closed (``inf``: not within ``limit_s``) and what it answered.

    Raises:
        OSError: The connection cannot be made.
    """
    started = time.monotonic()
    answer = b""
    with socket.create_connection((host, port), timeout=limit_s) as connection:
        if prefix:
            connection.sendall(prefix)
        step = trickle_every_s if trickle_every_s is not None else 0.05
        while (elapsed := time.monotonic() - started) < limit_s:
            connection.settimeout(min(step, limit_s - elapsed))
            try:
                data = connection.recv(4096)
            except TimeoutError:
                if trickle_every_s is not None:
                    try:
                        connection.send(b"a")
                    except OSError:  # closed by the server between two bytes
                        return Cut(time.monotonic() - started, answer)
                continue
            except ConnectionError:
                return Cut(time.monotonic() - started, answer)
            if not data:
                return Cut(time.monotonic() - started, answer)
            answer += data
    return Cut(math.inf, answer)

"""Slow clients cost a bounded amount on the threaded stdlib HTTP servers (``/metrics``, reports).

A ``socketserver`` threaded server gives each connection a thread that blocks on the client's
next bytes; without a limit, a client that opens connections and sends a header byte now and
then ("slowloris") holds a thread per connection forever. Mix :class:`BoundedThreadingMixIn` into
the server class and :class:`BoundedRequestHandlerMixIn` into its handler (any
``http.server.BaseHTTPRequestHandler``, ``wsgiref``'s included), and each connection gets:

* **a request-head deadline**: the request line and headers must arrive within
  ``idle_timeout_s`` of the accept (TLS handshake included), however they are split, so a
  trickle of one byte at a time does not reset it;
* **an idle timeout**: every later read waits at most ``idle_timeout_s`` for data, and the answer
  goes out in 64 KiB pieces, each within ``idle_timeout_s`` (one ``sendall`` has one timeout for
  all its bytes, Python's rule since 3.5: a large report to a slow but steady reader would be cut),
  so only a client that stops reading is cut;
* **a bound on concurrent connections**: beyond ``max_connections`` open ones, a new connection
  is closed at once (before any read), so the threads are at most ``max_connections``; the
  refusals are logged at most once a minute, with their count.

A connection cut by the deadline or the timeout is closed without an answer (the client never
completed its request), logged at DEBUG only. Both servers speak HTTP/1.0 (one request per
connection), so the head deadline is per request.

The bounds come from the service's settings (``<PREFIX>_HTTP_IDLE_TIMEOUT_S``,
``<PREFIX>_HTTP_MAX_CONNECTIONS``, :class:`~creditrisk_kit.settings.ServiceSettings`).
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from typing import Any

from .log_throttle import LogThrottle

_LOGGER = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_S = 10.0
"""Seconds a connection gets for its request head, and for each later read or written piece (the
settings' default; rationale in :class:`~creditrisk_kit.settings.ServiceSettings`)."""
DEFAULT_MAX_CONNECTIONS = 32
"""Concurrent connections per server (the settings' default)."""


class _DeadlineReader(socket.SocketIO):
    """The handler's raw input: each read waits at most ``idle_s``, and none ends after
    ``deadline`` (monotonic seconds; None: no deadline)."""

    def __init__(self, sock: socket.socket, idle_s: float, deadline: float | None) -> None:
        super().__init__(sock, "rb")
        self.idle_s = idle_s
        self.deadline = deadline

    def readinto(self, buffer: Any) -> int | None:
        wait = self.idle_s
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request head not received in time")
            wait = min(wait, remaining)
        self._sock.settimeout(wait)  # type: ignore[attr-defined]
        return super().readinto(buffer)


WRITE_CHUNK_BYTES = 64 * 1024
"""The response goes out in pieces of this size, each within the idle timeout."""


class _ChunkedWriter(io.BufferedIOBase):
    """The handler's output: ``sendall`` per :data:`WRITE_CHUNK_BYTES` piece. One ``sendall`` has
    one timeout for all its bytes, so a large body (a report of megabytes) to a slow but steady
    reader would be cut after ``idle_s`` in total; per piece, only a reader that stops reading is."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with memoryview(data) as view, view.cast("B") as octets:
            for start in range(0, len(octets), WRITE_CHUNK_BYTES):
                self._sock.sendall(octets[start : start + WRITE_CHUNK_BYTES])
            return len(octets)

    def fileno(self) -> int:
        return self._sock.fileno()


class BoundedRequestHandlerMixIn:
    """Handler side of the bounds: the head deadline and the idle timeout (module docstring).

    Mix it in before a ``BaseHTTPRequestHandler`` subclass served by a
    :class:`BoundedThreadingMixIn` server (it reads ``server.idle_timeout_s``).
    """

    connection: socket.socket
    rfile: Any
    wfile: Any
    server: Any

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        idle_s = float(self.server.idle_timeout_s)
        self.connection.settimeout(idle_s)  # any use of the socket outside rfile: the writes
        self.rfile.close()  # the stdlib's reader; its reference on the socket goes with it
        self._reader = _DeadlineReader(self.connection, idle_s, time.monotonic() + idle_s)
        self.rfile = io.BufferedReader(self._reader)
        self.wfile.close()  # the stdlib's unbuffered writer: one sendall per write
        self.wfile = _ChunkedWriter(self.connection)

    def parse_request(self) -> bool:
        parsed: bool = super().parse_request()  # type: ignore[misc]
        self._reader.deadline = None  # the head is in: the idle timeout alone from here
        self.connection.settimeout(self._reader.idle_s)  # not the last read's remainder, for writes
        return parsed


class BoundedThreadingMixIn:
    """Server side of the bounds: the connection limit, and quiet ends of cut connections.

    Mix it in before the ``socketserver`` threaded server class (and before
    :class:`~creditrisk_kit.tls.TlsSocketServerMixin`); set :attr:`idle_timeout_s` and
    :attr:`max_connections` on the class or the instance before serving.
    """

    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    _open: int = 0
    _open_lock = threading.Lock()  # guards _open of every server: a counter update only
    _rejections = LogThrottle(burst=1, interval_s=60.0)

    @property
    def open_connections(self) -> int:
        """Connections being served now (at most :attr:`max_connections`)."""
        return self._open

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            admitted = self._open < self.max_connections
            if admitted:
                self._open += 1
        if not admitted:
            self._reject(request)
            return
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._release()

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _reject(self, request: Any) -> None:
        decision = self._rejections.admit(id(self))
        if decision.log:
            earlier = sum(count for _key, count in decision.summaries)
            _LOGGER.warning(
                "%s: a connection closed at once (%d more since the last such line): %d open, the limit "
                "(the http_max_connections setting)",
                type(self).__name__,
                earlier,
                self.max_connections,
                extra={"refused_connections": earlier + 1, "max_connections": self.max_connections},
            )
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exception(), TimeoutError | ConnectionError):
            _LOGGER.debug("connection from %s cut: %r", client_address, sys.exception())
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

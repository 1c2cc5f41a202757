"""An ASGI app served by uvicorn beside the gRPC server, in the same event loop (extra ``http``).

:class:`UvicornServer` is the kit's :data:`~creditrisk_kit.server.ExtraServer` for an HTTP API
(the inference-gateway's REST): give it to ``Service(http_server=...)`` and the
:class:`~creditrisk_kit.server.ServiceRunner` starts it right after the gRPC server and stops it
after the gRPC drain. uvicorn's own signal handling is off (the runner owns SIGTERM / SIGINT), its
loggers hand their records to the JSON root logger, the access log is off and the ASGI lifespan is
not run (the service's build function owns start-up). Imported on demand (needs ``uvicorn``), not
re-exported by :mod:`creditrisk_kit`.

TLS: give ``tls=ServerTls.from_settings(settings)`` (:mod:`creditrisk_kit.tls`); the server then
speaks HTTPS only (client certificates required with a client CA), and a task checks the files
every ``tls.reload_interval_s`` seconds and loads a changed certificate into the same
``ssl.SSLContext``, for the handshakes that follow.

Slow clients: uvicorn's ``timeout_keep_alive`` (5 s) runs only between two requests of a
connection, after a response; neither of its HTTP implementations (h11, httptools) limits the time
a client takes to send a request head, so a connection that sends nothing, or a header byte now and
then, stays open for good (measured with uvicorn 0.54 / 0.55). The kit adds that limit: a request
head must be complete within ``head_timeout_s`` (the service's ``http_idle_timeout_s``, default
10 s) of the connection, or of the previous response, else the connection is closed. It wraps
whichever protocol class uvicorn picked (a subclass of it), so the parser stays uvicorn's. Such a
connection costs no thread (one event loop), a socket and a few kilobytes until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from creditrisk_telemetry import uvicorn_log_config

from .threaded_http import DEFAULT_IDLE_TIMEOUT_S
from .tls import ReloadingSslContext, ServerTls

_LOGGER = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service runner owns SIGTERM / SIGINT."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield


def with_head_deadline(protocol: type[asyncio.Protocol], timeout_s: float) -> type[asyncio.Protocol]:
    """A subclass of a uvicorn HTTP protocol class (h11 or httptools) that closes a connection
    whose request head is not complete ``timeout_s`` seconds after the connection was made or the
    previous response was sent (module docstring).

    A request is "in" once uvicorn started its request-response cycle (h11: the head parsed;
    httptools: the headers complete). A connection handed over to another protocol (a WebSocket
    upgrade) is left alone.

    Raises:
        ValueError: ``timeout_s`` <= 0.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    base: Any = protocol

    class HeadDeadline(base):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_deadline(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self.transport.is_closing():
                return
            waiting_after = self.cycle  # None, or the cycle that just completed
            self._head_timer = self.loop.call_later(timeout_s, self._head_deadline_passed, waiting_after)

        def _head_deadline_passed(self, waiting_after: object) -> None:
            self._head_timer = None
            transport = self.transport
            still_waiting = self.cycle is waiting_after and not transport.is_closing()
            if still_waiting and transport.get_protocol() is self:
                _LOGGER.debug("request head not received within %s s: connection closed", timeout_s)
                transport.close()

    HeadDeadline.__name__ = HeadDeadline.__qualname__ = f"{protocol.__name__}WithHeadDeadline"
    return HeadDeadline


class UvicornServer:
    """Serve ``app`` with uvicorn while entered (``async with``).

    Args:
        app: The ASGI application.
        host: Interface to bind.
        port: TCP port; 0 picks a free one (read :attr:`port` after entering).
        grace_period_s: Seconds in-flight requests get to finish at exit (uvicorn's
            ``timeout_graceful_shutdown``, whole seconds, at least 1) before they are cancelled.
        name: Shown in the log line and the repr (``REST``).
        tls: Serve HTTPS with these files, reloaded on change; None: plain HTTP.
        head_timeout_s: Seconds a connection gets to send a complete request head (after it
            opened, or after the previous response), then it is closed (:func:`with_head_deadline`;
            the service's ``http_idle_timeout_s``).

    Raises:
        ValueError: ``head_timeout_s`` <= 0.
        RuntimeError: From ``__aenter__`` when uvicorn stops before it listens (e.g. the port is
            taken); entered twice.
        OSError: From ``__aenter__`` when the TLS files cannot be loaded (``ssl.SSLError``).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        grace_period_s: float,
        name: str = "HTTP",
        tls: ServerTls | None = None,
        head_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        if not head_timeout_s > 0:
            raise ValueError(f"head_timeout_s must be > 0, got {head_timeout_s}")
        self.head_timeout_s = head_timeout_s
        self.app = app
        self.tls = tls
        self.ssl: ReloadingSslContext | None = None
        """The server's context once entered with ``tls``."""
        self._watch: asyncio.Task[None] | None = None
        self.host = host
        self.name = name
        self._requested_port = port
        self._grace_period_s = grace_period_s
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None
        """The bound port once entered, else None."""

    def __repr__(self) -> str:
        return f"UvicornServer({self.name} on {self.host}:{self.port or self._requested_port})"

    async def __aenter__(self) -> UvicornServer:
        if self._server is not None:
            raise RuntimeError(f"{self!r} entered twice")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._requested_port,
            log_config=uvicorn_log_config(),
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(self._grace_period_s) or 1,
        )
        config.load()
        config.http_protocol_class = with_head_deadline(config.http_protocol_class, self.head_timeout_s)
        if self.tls is not None:
            self.ssl = self.tls.ssl_context()
            config.ssl = self.ssl.context  # loaded: serve() keeps it
        server = self._server = _Uvicorn(config)
        task = self._task = asyncio.create_task(self._serve(server), name=f"uvicorn-{self.name}")
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"{self!r} stopped at start")
            await asyncio.sleep(0.01)
        sockets = [sock for listener in server.servers for sock in listener.sockets]
        self.port = int(sockets[0].getsockname()[1])
        if self.ssl is not None:
            self._watch = asyncio.create_task(self.ssl.watch(), name=f"tls-reload-{self.name}")
        transport = "plaintext" if self.tls is None else "mutual TLS" if self.tls.mutual else "TLS"
        _LOGGER.info(
            "%s on %s:%d (%s)", self.name, self.host, self.port, transport, extra={"http_port": self.port}
        )
        return self

    async def _serve(self, server: _Uvicorn) -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            # uvicorn calls sys.exit when it cannot bind (after logging why); a SystemExit leaving
            # a task would end the whole event loop, skipping the drain and the shutdown hooks.
            raise RuntimeError(f"{self!r} could not start (uvicorn exit status {exc.code})") from None

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace period), close."""
        if self._server is None or self._task is None:
            return
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._server.should_exit = True
        try:
            await self._task
        except Exception:
            _LOGGER.exception("%r stopped with an error", self)

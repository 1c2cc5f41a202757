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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from creditrisk_telemetry import uvicorn_log_config

from .tls import ReloadingSslContext, ServerTls

_LOGGER = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service runner owns SIGTERM / SIGINT."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield


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

    Raises:
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
    ) -> None:
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

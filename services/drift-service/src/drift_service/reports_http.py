"""Serves the HTML drift reports (files under ``<data_dir>/reports``) over HTTP, or HTTPS.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: GET ``/reports/<report id>.html``; anything
else is 404. The URL of a report goes into ``DriftReport.html_report_url``. The socket is bound at
construction (so the URL is known before the core is built); ``async with`` the server (the kit's
extra-server protocol, how ``python -m drift_service`` runs it) serves from entry to exit.

With the service's ``tls_cert_file`` / ``tls_key_file`` it speaks HTTPS only (and requires client
certificates with ``tls_client_ca_file``), the certificate reloaded when the files change, checked
at each accepted connection (:class:`creditrisk_kit.tls.TlsSocketServerMixin`).
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import re
import threading
from pathlib import Path
from typing import Any

from creditrisk_kit.tls import ReloadingSslContext, TlsSocketServerMixin

_REPORT_PATH = re.compile(r"^/reports/([A-Za-z0-9_-]{1,64})\.html$")


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, *args: Any, directory: Path, **kwargs: Any) -> None:
        self.directory = directory
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        match = _REPORT_PATH.match(self.path.split("?", 1)[0])
        path = self.directory / f"{match.group(1)}.html" if match else None
        if path is None or not path.is_file():
            self.send_error(404, "no such report")
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr


class _Server(TlsSocketServerMixin, http.server.ThreadingHTTPServer):
    daemon_threads = True


class ReportServer:
    """The HTTP server of the reports.

    Args:
        directory: the folder holding ``<id>.html`` files.
        host: interface to bind.
        port: TCP port; 0 picks a free one.
        base_url: public base URL; default ``http://<host>:<bound port>`` (``https://`` with TLS).
        tls: serve HTTPS with this context; None: plain HTTP.
    """

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        base_url: str | None = None,
        tls: ReloadingSslContext | None = None,
    ):
        self.directory = directory
        self._server = _Server((host, port), functools.partial(_Handler, directory=directory))
        self._server.tls_context = tls
        self.port = int(self._server.server_address[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        scheme = "https" if tls is not None else "http"
        self.base_url = (base_url or f"{scheme}://{shown}:{self.port}").rstrip("/")
        self._thread = threading.Thread(target=self._server.serve_forever, name="report-http", daemon=True)

    def start(self) -> ReportServer:
        """Start serving in a daemon thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    async def __aenter__(self) -> ReportServer:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        # shutdown() waits for the serve loop's next poll (up to 0.5 s): off the event loop.
        await asyncio.to_thread(self.stop)

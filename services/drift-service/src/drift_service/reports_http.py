"""Serves the HTML drift reports (files under ``<data_dir>/reports``) over HTTP, or HTTPS.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: GET ``/reports/<report id>.html``; anything
else is 404. Every report needs a credential with the ``read_monitoring`` role (``authorization:
Bearer <API key or JWT>``), checked by the kit's :class:`~creditrisk_kit.auth.Authenticator` (the
service's ``auth_*`` settings, as its gRPC API): without or with an invalid one 401
(``WWW-Authenticate: Bearer``), without the role 403, the JSON body of the kit's HTTP refusals
(:func:`~creditrisk_kit.auth.http_refusal`) naming what is wrong, never the credential; checked
before the file is looked at, so a stranger cannot tell which reports exist. Each read (found or
not) is in the access log, subject and report id only (:mod:`drift_service.access`); each refusal
is counted and in the kit's refusal log (:meth:`~creditrisk_kit.auth.Authenticator.record_refusal`).
The URL of a report goes into ``DriftReport.html_report_url``. The socket is bound at
construction (so the URL is known before the core is built); ``async with`` the server (the
kit's extra-server protocol, how ``python -m drift_service`` runs it) serves from entry to exit.

With the service's ``tls_cert_file`` / ``tls_key_file`` it speaks HTTPS only (and requires client
certificates with ``tls_client_ca_file``), the certificate reloaded when the files change, checked
at each accepted connection (:class:`creditrisk_kit.tls.TlsSocketServerMixin`).

Slow clients cost a bounded amount (:mod:`creditrisk_kit.threaded_http`): a connection that has
not sent its request head within the service's ``http_idle_timeout_s`` (default 10 s), or then
stalls that long (sending, or reading the answer: it goes out 64 KiB at a time), is closed;
beyond ``http_max_connections`` (default 32) open connections a new one is closed at once.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import re
import threading
from pathlib import Path
from typing import Any

from creditrisk_kit import PermissionDenied, ServiceError, Unauthenticated
from creditrisk_kit.auth import Authenticator, Principal, Role, http_refusal
from creditrisk_kit.threaded_http import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    BoundedRequestHandlerMixIn,
    BoundedThreadingMixIn,
)
from creditrisk_kit.tls import ReloadingSslContext, TlsSocketServerMixin

from drift_service import access

_REPORT_PATH = re.compile(r"^/reports/([A-Za-z0-9_-]{1,64})\.html$")
#: The route as the access log and the refusals name it.
ROUTE = "GET /reports/{report_id}.html"
#: What reading a report needs.
REPORT_ROLE = Role.READ_MONITORING


class _Handler(BoundedRequestHandlerMixIn, http.server.BaseHTTPRequestHandler):
    def __init__(self, *args: Any, directory: Path, authenticator: Authenticator, **kwargs: Any) -> None:
        self.directory = directory
        self.authenticator = authenticator
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        match = _REPORT_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            self.send_error(404, "no such report")
            return
        report_id = match.group(1)
        principal: Principal | None = None
        try:
            principal = self.authenticator.authenticate(self.headers.get("authorization"), ROUTE)
            principal.require(REPORT_ROLE, ROUTE)
        except (Unauthenticated, PermissionDenied) as exc:
            self.authenticator.record_refusal(ROUTE, principal, exc)
            self._refuse(exc)
            return
        except ServiceError as exc:  # the JWKS URL cannot be fetched: 503
            self._refuse(exc)
            return
        path = self.directory / f"{report_id}.html"
        if not path.is_file():
            access.log_read(principal, ROUTE, [report_id], "NOT_FOUND")
            self.send_error(404, "no such report")
            return
        body = path.read_bytes()
        access.log_read(principal, ROUTE, [report_id])
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, exc: ServiceError) -> None:
        status, headers, body = http_refusal(exc)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr


class _Server(BoundedThreadingMixIn, TlsSocketServerMixin, http.server.ThreadingHTTPServer):
    daemon_threads = True


class ReportServer:
    """The HTTP server of the reports.

    Args:
        directory: the folder holding ``<id>.html`` files.
        host: interface to bind.
        port: TCP port; 0 picks a free one.
        base_url: public base URL; default ``http://<host>:<bound port>`` (``https://`` with TLS).
        tls: serve HTTPS with this context; None: plain HTTP.
        authenticator: checks each request's credential (the service's, from its ``auth_*``
            settings); required: ``Authenticator(disabled=True)`` serves everyone explicitly.
        idle_timeout_s: seconds a connection gets for its request head (TLS handshake included)
            and for each later read or 64 KiB of the answer, then it is closed (the service's
            ``http_idle_timeout_s``; :mod:`creditrisk_kit.threaded_http`).
        max_connections: connections served at once; a further one is closed at once (the
            service's ``http_max_connections``).

    Raises:
        OSError: the port cannot be bound.
        ValueError: ``idle_timeout_s`` <= 0 or ``max_connections`` < 1.
    """

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        base_url: str | None = None,
        tls: ReloadingSslContext | None = None,
        *,
        authenticator: Authenticator,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ):
        if not idle_timeout_s > 0 or max_connections < 1:
            raise ValueError(
                "idle_timeout_s must be > 0 and max_connections >= 1, "
                f"got {idle_timeout_s}, {max_connections}"
            )
        self.directory = directory
        self._server = _Server(
            (host, port), functools.partial(_Handler, directory=directory, authenticator=authenticator)
        )
        self._server.tls_context = tls
        self._server.idle_timeout_s = idle_timeout_s
        self._server.max_connections = max_connections
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

"""Transport security: TLS and mutual TLS for the kit's servers and clients, from the settings.

Settings (every service, ``<PREFIX>_TLS_...``; all unset by default = plaintext, as before):

* ``tls_cert_file`` + ``tls_key_file``: the server's certificate chain and private key (PEM).
  Both set = every server the kit runs for the service speaks TLS only: the gRPC port
  (:class:`~creditrisk_kit.server.ServiceRunner`), the HTTP servers (``creditrisk_kit.http``'s
  :class:`~creditrisk_kit.http.UvicornServer`, the ``/metrics`` server, and a threaded stdlib server
  mixing in :class:`TlsSocketServerMixin`). A plaintext client is refused at the handshake.
* ``tls_client_ca_file``: mutual TLS. Every client must present a certificate that verifies
  against these CA certificates (PEM bundle); one without a certificate, or with one from another
  CA, is refused at the handshake (gRPC: ``require_client_authentication``; HTTP:
  ``ssl.CERT_REQUIRED``). Needs ``tls_cert_file``.
* ``tls_ca_file``: outgoing calls (the clients the service opens to other services and model
  servers) use TLS and trust these CA certificates. Unset = outgoing calls are plaintext.
* ``tls_client_cert_file`` + ``tls_client_key_file``: the certificate the service presents to the
  servers it calls (mutual TLS); unset = the server certificate (``tls_cert_file``), which is
  fine when it carries the ``clientAuth`` extended key usage.
* ``tls_server_name``: the name gRPC checks in the servers' certificates instead of the target's
  host (``grpc.ssl_target_name_override``; for tests and IP-only targets). HTTP clients always
  check the URL's host.
* ``tls_reload_interval_s``: how often the HTTP servers check the files for a change (seconds).

Rotation without restart: the files are re-read when their ``(mtime, size, inode)`` changes, so
a certificate renewed in place (cert-manager, a Kubernetes Secret volume's symlink swap, an atomic
``mv``) is served to every new connection; established connections keep theirs. gRPC checks at
every new handshake (``grpc.dynamic_ssl_server_credentials``' certificate-configuration fetcher);
the HTTP servers load the new chain into the same ``ssl.SSLContext`` (``load_cert_chain``), which
applies to the handshakes that follow, checked every ``tls_reload_interval_s`` (uvicorn) or at
every accepted connection (threaded servers). A set of files that does not load (a key written
before its certificate) is logged, without the contents, and the previous certificate is kept
until a later check loads. Added client CAs take effect on HTTP servers at once; a CA removed
from the bundle stays trusted by the HTTP servers until a restart (OpenSSL can only add to a
context's trust store), while gRPC replaces its trust store.

Client side: the credentials are read when a channel or a client context is made; a rotated
client certificate is used by channels opened afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

_LOGGER = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL_S = 1.0
"""Seconds between two checks of the HTTP servers' certificate files (three ``stat`` calls)."""


class TlsSettings(Protocol):
    """The settings this module reads (:class:`~creditrisk_kit.settings.ServiceSettings` has them)."""

    tls_cert_file: Path | None
    tls_key_file: Path | None
    tls_client_ca_file: Path | None
    tls_ca_file: Path | None
    tls_client_cert_file: Path | None
    tls_client_key_file: Path | None
    tls_server_name: str | None
    tls_reload_interval_s: float


def check_tls_settings(settings: TlsSettings, env_name: Any) -> None:
    """Refuse an inconsistent TLS configuration (called by the settings' validator).

    Args:
        settings: The values.
        env_name: ``field name -> environment variable`` (names the variable in the message).

    Raises:
        ValueError: A certificate without its key or the reverse, or a client CA (mutual TLS)
            without a server certificate.
    """
    pairs = (("tls_cert_file", "tls_key_file"), ("tls_client_cert_file", "tls_client_key_file"))
    for cert, key in pairs:
        if (getattr(settings, cert) is None) != (getattr(settings, key) is None):
            raise ValueError(f"{env_name(cert)} and {env_name(key)} must be set together")
    if settings.tls_client_ca_file is not None and settings.tls_cert_file is None:
        raise ValueError(
            f"{env_name('tls_client_ca_file')} (mutual TLS) needs {env_name('tls_cert_file')} "
            f"and {env_name('tls_key_file')}"
        )


@dataclass
class _Watched:
    """Files whose ``(mtime_ns, size, inode)`` is compared with the last successful load."""

    paths: tuple[Path, ...]
    loaded: tuple[tuple[int, int, int], ...] = ()

    def signature(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(path) for path in self.paths]
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in stats)


@dataclass(frozen=True)
class ServerTls:
    """A server's TLS configuration: certificate chain, key, and (mutual TLS) the client CAs.

    Attributes:
        cert_file: Certificate chain, PEM (leaf first).
        key_file: Its private key, PEM, unencrypted.
        client_ca_file: CA certificates (PEM) that client certificates must verify against;
            None = no client certificate asked for.
        reload_interval_s: Seconds between two checks of the files by the uvicorn servers.
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> ServerTls | None:
        """The configuration of ``settings``; None when TLS is off (no ``tls_cert_file``)."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(
            Path(settings.tls_cert_file),
            Path(settings.tls_key_file),
            Path(settings.tls_client_ca_file) if settings.tls_client_ca_file else None,
            settings.tls_reload_interval_s,
        )

    @property
    def mutual(self) -> bool:
        """True when client certificates are required (mutual TLS)."""
        return self.client_ca_file is not None

    @property
    def files(self) -> tuple[Path, ...]:
        """The files watched for a change."""
        return (self.cert_file, self.key_file, *((self.client_ca_file,) if self.client_ca_file else ()))

    def _grpc_configuration(self) -> Any:
        # gRPC would only find a key that does not match its certificate at the next handshake,
        # and fail every handshake until the files change again: check the pair first.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert_file, self.key_file)
        return grpc.ssl_server_certificate_configuration(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=self.client_ca_file.read_bytes() if self.client_ca_file else None,
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that re-read the files at a new handshake after they changed.

        Raises:
            OSError: When a file cannot be read now, or the key does not match the certificate
                (``ssl.SSLError``).
            ValueError: When gRPC refuses the files (no PEM content).
        """
        watched = _Watched(self.files)
        watched.loaded = watched.signature()
        initial = self._grpc_configuration()

        def fetch() -> Any:
            # Called by gRPC before each new handshake; None keeps the current configuration.
            try:
                signature = watched.signature()
                if signature == watched.loaded:
                    return None
                configuration = self._grpc_configuration()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                _LOGGER.warning("TLS files not reloaded (%s); keeping the previous ones", type(exc).__name__)
                return None
            watched.loaded = signature
            _LOGGER.info("TLS certificate reloaded for gRPC", extra={"tls_cert_file": str(self.cert_file)})
            return configuration

        return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=self.mutual)

    def ssl_context(self) -> ReloadingSslContext:
        """A server ``ssl.SSLContext`` following the files (:class:`ReloadingSslContext`).

        Raises:
            OSError / ssl.SSLError: When the files cannot be read or do not match.
        """
        return ReloadingSslContext(self)


class ReloadingSslContext:
    """One server ``ssl.SSLContext`` whose certificate follows the files.

    :meth:`reload_if_changed` calls ``load_cert_chain`` (and ``load_verify_locations`` for the
    client CAs) again on the same context when a file changed: the handshakes that follow use the
    new certificate; established connections keep theirs.

    Args:
        tls: The files and whether client certificates are required.

    Raises:
        OSError / ssl.SSLError: When the files cannot be read or do not match (at construction).
    """

    def __init__(self, tls: ServerTls) -> None:
        self.tls = tls
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.mutual:
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._watched = _Watched(tls.files)
        self._lock = threading.Lock()
        signature = self._watched.signature()
        self._load()
        self._watched.loaded = signature

    def _load(self) -> None:
        # A pair that does not match would leave the context with the new certificate and the old
        # key (OpenSSL replaces the chain before it checks the key): check it on a scratch context.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self.context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        if self.tls.client_ca_file is not None:
            self.context.load_verify_locations(cafile=self.tls.client_ca_file)

    def reload_if_changed(self) -> bool:
        """Load the files again when one changed since the last successful load.

        A load that fails (a file missing, a key that does not match) is logged and leaves the
        previous certificate in use; the next call tries again. Thread-safe.

        Returns:
            True when a new certificate was loaded.
        """
        with self._lock:
            try:
                signature = self._watched.signature()
                if signature == self._watched.loaded:
                    return False
                self._load()
            except (OSError, ssl.SSLError) as exc:
                _LOGGER.warning("TLS files not reloaded (%s); keeping the previous ones", type(exc).__name__)
                return False
            self._watched.loaded = signature
        _LOGGER.info("TLS certificate reloaded", extra={"tls_cert_file": str(self.tls.cert_file)})
        return True

    async def watch(self) -> None:
        """Call :meth:`reload_if_changed` every ``tls.reload_interval_s`` seconds until cancelled.

        It runs in the event loop's thread, where the server's handshakes run, so no handshake
        starts while the chain is being replaced (``load_cert_chain`` sets the certificate, then
        the key). Three ``stat`` calls per check; a load takes well under a millisecond for the
        usual key sizes.
        """
        while True:
            await asyncio.sleep(self.tls.reload_interval_s)
            self.reload_if_changed()


class TlsSocketServerMixin:
    """TLS for a ``socketserver`` TCP server (stdlib ``http.server``, ``wsgiref``), reloaded per connection.

    Mix it in before the server class and set :attr:`tls_context` (None = plaintext). Each
    accepted connection first checks the files (:meth:`ReloadingSslContext.reload_if_changed`),
    then is wrapped, both in the accept thread (a wrapped connection holds its own copy of the
    certificate, so a later reload does not touch it); the handshake runs in the handler's thread
    on its first read, so a slow client does not hold the accept loop. A failed handshake
    (plaintext client, missing or untrusted client certificate) ends that connection only.
    """

    tls_context: ReloadingSslContext | None = None
    socket: socket.socket

    def get_request(self) -> tuple[Any, Any]:
        connection, address = self.socket.accept()
        if self.tls_context is None:
            return connection, address
        self.tls_context.reload_if_changed()
        return self.tls_context.context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):  # a refused handshake is not a server error
            _LOGGER.debug("TLS connection from %s failed", client_address, exc_info=True)
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


@dataclass(frozen=True)
class ClientTls:
    """What a client needs to call a TLS server: the CAs it trusts and (mutual TLS) its own certificate.

    Attributes:
        ca_file: CA certificates (PEM) the servers' certificates must verify against.
        cert_file: The client's certificate chain (PEM), for mutual TLS; None = none presented.
        key_file: Its private key (PEM).
        server_name: gRPC only: the name checked in the server's certificate instead of the
            target's host (tests; IP-only targets); None = the target's host. HTTP clients
            always check the URL's host.
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> ClientTls | None:
        """The outgoing-call configuration of ``settings``; None when ``tls_ca_file`` is unset.

        The client certificate is ``tls_client_cert_file`` / ``tls_client_key_file``, else the
        server's own (``tls_cert_file`` / ``tls_key_file``), else none.
        """
        if settings.tls_ca_file is None:
            return None
        cert, key = settings.tls_client_cert_file, settings.tls_client_key_file
        if cert is None:
            cert, key = settings.tls_cert_file, settings.tls_key_file
        return cls(
            Path(settings.tls_ca_file),
            Path(cert) if cert else None,
            Path(key) if key else None,
            settings.tls_server_name,
        )

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """``grpc.ssl_channel_credentials`` from the files, read now.

        Raises:
            OSError: When a file cannot be read.
        """
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def grpc_options(self) -> list[tuple[str, Any]]:
        """Channel arguments: ``grpc.ssl_target_name_override`` when :attr:`server_name` is set."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def ssl_context(self) -> ssl.SSLContext:
        """A client ``ssl.SSLContext`` for HTTP clients (aiohttp ``ssl=``, httpx ``verify=``):
        the server's chain and host name verified against :attr:`ca_file`, TLS 1.2 or later, the
        client certificate presented when set.

        Raises:
            OSError / ssl.SSLError: When a file cannot be read or the key does not match.
        """
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

"""The report server over HTTPS and mutual TLS, its certificate reloaded on change."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from creditrisk_kit.auth import Authenticator
from creditrisk_kit.tls import ClientTls, ReloadingSslContext, ServerTls
from creditrisk_testing.tls import CertificateAuthority, TlsFiles, write_tls_files
from cryptography import x509
from drift_service.reports_http import ReportServer


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def files(tmp_path: Path, ca: CertificateAuthority) -> TlsFiles:
    directory = tmp_path / "tls"
    directory.mkdir()
    return write_tls_files(directory, ca)


def _get(url: str, context: ssl.SSLContext | None) -> bytes:
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return bytes(response.read())


def _served_serial(port: int, context: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_reports_over_mutual_tls_with_rotation(
    tmp_path: Path, files: TlsFiles, ca: CertificateAuthority
) -> None:
    reports = tmp_path / "reports"
    tls = ReloadingSslContext(ServerTls(files.server_cert, files.server_key, files.ca))
    server = ReportServer(
        reports, "127.0.0.1", 0, tls=tls, authenticator=Authenticator(disabled=True)
    ).start()
    (reports / "r1.html").write_text("<!DOCTYPE html><p>drift</p>")
    try:
        assert server.base_url == f"https://127.0.0.1:{server.port}"
        url = f"https://localhost:{server.port}/reports/r1.html"
        with_certificate = ClientTls(files.ca, files.client_cert, files.client_key).ssl_context()
        assert b"drift" in _get(url, with_certificate)
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _get(url, ClientTls(files.ca).ssl_context())  # no client certificate
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            _get(f"http://127.0.0.1:{server.port}/reports/r1.html", None)  # plaintext
        renewed = ca.issue("localhost")
        files.replace_server(renewed)
        assert _served_serial(server.port, with_certificate) == renewed.serial_number
        assert b"drift" in _get(url, with_certificate)
    finally:
        server.stop()

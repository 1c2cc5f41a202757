"""The local stack's certificates (scripts/stack_certs.py): one CA per data folder, one
certificate per server, reused while current, re-issued when not; private keys never readable by
others."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import stack_certs  # noqa: E402


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_server_gets_a_certificate_for_loopback_from_the_folders_ca(tmp_path: Path) -> None:
    tls = stack_certs.write_certificates(tmp_path, label="test")
    ca = _cert(tls.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for server in stack_certs.SERVERS:
        leaf = _cert(tls.cert(server))
        leaf.verify_directly_issued_by(ca)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == ["localhost"]
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=398)
        assert stat.S_IMODE(tls.key(server).stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.directory.stat().st_mode) == 0o700


def test_a_second_run_keeps_every_file_and_repairs_only_what_is_wrong(tmp_path: Path) -> None:
    tls = stack_certs.write_certificates(tmp_path)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tls.directory.iterdir()}
    stack_certs.write_certificates(tmp_path)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tls.directory.iterdir()} == before
    # a key that no longer matches its certificate: that pair alone is re-issued, same CA
    tls.key("mlflow").write_bytes(tls.key("drift-service").read_bytes())
    stack_certs.write_certificates(tmp_path)
    after = {p.name: p.read_bytes() for p in tls.directory.iterdir()}
    assert after["mlflow.pem"] != before["mlflow.pem"][0]
    assert after["ca.pem"] == before["ca.pem"][0]
    assert after["drift-service.pem"] == before["drift-service.pem"][0]
    # a lost CA key: a new CA, and every certificate issued again by it
    tls.ca_key.unlink()
    stack_certs.write_certificates(tmp_path)
    ca = _cert(tls.ca_cert)
    assert tls.ca_cert.read_bytes() != before["ca.pem"][0]
    for server in stack_certs.SERVERS:
        _cert(tls.cert(server)).verify_directly_issued_by(ca)


def test_a_certificate_close_to_expiry_is_renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = stack_certs.write_certificates(tmp_path)
    first = tls.cert("inference-gateway").read_bytes()
    later = datetime.datetime.now(datetime.UTC) + stack_certs.LEAF_VALIDITY - datetime.timedelta(days=10)
    monkeypatch.setattr(stack_certs, "_now", lambda: later)
    stack_certs.write_certificates(tmp_path)
    assert tls.cert("inference-gateway").read_bytes() != first


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return None


def test_a_client_trusting_the_folders_ca_reaches_a_server_and_a_plaintext_one_does_not(
    tmp_path: Path,
) -> None:
    tls = stack_certs.write_certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert("inference-gateway"), tls.key("inference-gateway"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        verify = ssl.create_default_context(cafile=str(tls.ca_cert))
        assert httpx.get(f"https://127.0.0.1:{port}/", verify=verify, timeout=5).text == "ok"
        assert httpx.get(f"https://localhost:{port}/", verify=verify, timeout=5).text == "ok"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/", timeout=5)  # the system's CAs do not know it
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        server.shutdown()
        server.server_close()

"""Readiness over TLS: the probes of a stack whose servers speak TLS only (the platform's local
stack, issue 18) check the server's certificate against the stack's CA, and report, not pass, a
server they cannot trust."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from creditrisk_devstack import GrpcReadiness, HttpReadiness
from creditrisk_devstack.stackfile import StackFileError, load_stack
from creditrisk_testing.tls import TlsFiles, write_tls_files
from grpc_health.v1 import health, health_pb2_grpc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path)


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    folder = tmp_path / "other"
    folder.mkdir()
    return write_tls_files(folder).ca


@pytest.fixture
def grpc_tls_server(files: TlsFiles) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    credentials = grpc.ssl_server_credentials(
        [(files.server_key.read_bytes(), files.server_cert.read_bytes())]
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"localhost:{port}"
    server.stop(0)


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def https_server(files: TlsFiles) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def _check(readiness: GrpcReadiness | HttpReadiness) -> str | None:
    probe = readiness.open_probe()
    try:
        return probe.check(5.0)
    finally:
        probe.close()


def test_a_grpc_probe_trusting_the_stacks_ca_sees_serving(grpc_tls_server: str, files: TlsFiles) -> None:
    assert _check(GrpcReadiness(grpc_tls_server, ca_file=str(files.ca))) is None


def test_a_grpc_probe_does_not_pass_a_server_it_cannot_trust(grpc_tls_server: str, other_ca: Path) -> None:
    assert _check(GrpcReadiness(grpc_tls_server, ca_file=str(other_ca))) == (
        f"grpc health {grpc_tls_server} ['']: UNAVAILABLE"
    )
    # and a plaintext probe of a TLS-only server is not ready either
    assert "UNAVAILABLE" in (_check(GrpcReadiness(grpc_tls_server)) or "")


def test_an_https_probe_checks_the_certificate_against_its_ca(
    https_server: str, files: TlsFiles, other_ca: Path
) -> None:
    assert _check(HttpReadiness(https_server, ca_file=str(files.ca))) is None
    refused = _check(HttpReadiness(https_server, ca_file=str(other_ca))) or ""
    assert "CERTIFICATE_VERIFY_FAILED" in refused, refused
    assert "CERTIFICATE_VERIFY_FAILED" in (_check(HttpReadiness(https_server)) or "")  # system CAs


def test_a_missing_ca_file_fails_when_the_probe_opens_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError, match=r"nope\.pem"):
        GrpcReadiness("localhost:1", ca_file=str(missing)).open_probe()
    with pytest.raises(FileNotFoundError):
        HttpReadiness("https://localhost:1/", ca_file=str(missing)).open_probe()


def _stack(ready: str) -> str:
    return f'[[process]]\nname = "a"\nargv = ["true"]\nready = {ready}\n'


def test_the_stack_file_takes_a_ca_for_http_and_grpc_only(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(_stack('{ grpc = "127.0.0.1:1", ca = "${root}/ca.pem" }'))
    ready = load_stack(path).processes[0].ready
    assert isinstance(ready, GrpcReadiness)
    assert ready.ca_file == str(tmp_path / "ca.pem")
    assert "over TLS" in ready.describe()
    path.write_text(_stack('{ http = "https://127.0.0.1:1/", ca = "${root}/ca.pem" }'))
    assert load_stack(path).processes[0].ready == HttpReadiness(
        "https://127.0.0.1:1/", str(tmp_path / "ca.pem")
    )
    path.write_text(_stack('{ tcp = 5000, ca = "ca.pem" }'))
    with pytest.raises(StackFileError, match="ca \\(TLS\\) applies to http and grpc only"):
        load_stack(path)

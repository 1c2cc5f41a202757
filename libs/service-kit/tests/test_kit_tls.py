"""TLS and mutual TLS of the kit's servers (gRPC, uvicorn, /metrics) and clients, with rotation.

Certificates are made in the test (``creditrisk_testing.tls``); every server runs in process on
port 0. "Which certificate does a new connection see" is read with a raw ``ssl`` handshake (the
serial number of the peer certificate), so no connection is reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from creditrisk_kit import ServiceSettings
from creditrisk_kit.client import aio_channel
from creditrisk_kit.http import UvicornServer
from creditrisk_kit.metrics import start_metrics_server
from creditrisk_kit.tls import ClientTls, ReloadingSslContext, ServerTls
from creditrisk_testing.tls import CertificateAuthority, TlsFiles, write_atomically, write_tls_files
from cryptography import x509
from google.protobuf.wrappers_pb2 import StringValue
from kit_support import handlers, method, running, unary_unary
from pydantic import ValidationError

# How an HTTP client sees a refused handshake (TLS 1.3: the server's alert may arrive as the
# response is read, where httpx lets ssl.SSLError through).
REFUSED = (httpx.TransportError, ssl.SSLError)

# A connection per channel: no subchannel shared with another test's channel.
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def _echo(request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
    return StringValue(value=request.value)


ECHO = handlers(echo=unary_unary(_echo))


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("platform CA")


@pytest.fixture
def files(tmp_path: Path, ca: CertificateAuthority) -> TlsFiles:
    return write_tls_files(tmp_path, ca)


@pytest.fixture
def stranger(tmp_path: Path) -> TlsFiles:
    """Certificates from another CA (a client the server must not trust)."""
    directory = tmp_path / "stranger"
    directory.mkdir()
    return write_tls_files(directory, CertificateAuthority.create("stranger CA"))


def _tls(files: TlsFiles, mutual: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {"tls_cert_file": files.server_cert, "tls_key_file": files.server_key}
    if mutual:
        values["tls_client_ca_file"] = files.ca
    return values


def _client(files: TlsFiles, *, cert: TlsFiles | None = None, ca: Path | None = None) -> ClientTls:
    return ClientTls(
        ca or files.ca,
        cert.client_cert if cert else None,
        cert.client_key if cert else None,
        server_name="localhost",
    )


async def _echo_call(port: int, tls: ClientTls | None) -> str:
    channel = aio_channel(
        f"127.0.0.1:{port}", tls=tls, retry=None, options=_OWN_CONNECTION, default_timeout_s=5
    )
    try:
        response = await method(channel, "unary_unary", "echo")(StringValue(value="hello"))
        return str(response.value)
    finally:
        await channel.close()


def _served_serial(port: int, ca: Path, *, alpn: str | None = None) -> int:
    """Serial number of the certificate a new TLS connection to ``port`` is given."""
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def _eventually(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- settings ---------------------------------------------------------------------------------


def test_tls_is_off_and_loopback_by_default() -> None:
    settings = ServiceSettings()
    assert settings.host == "127.0.0.1"
    assert ServerTls.from_settings(settings) is None
    assert ClientTls.from_settings(settings) is None


def test_a_certificate_needs_its_key_and_mutual_tls_a_certificate(files: TlsFiles) -> None:
    with pytest.raises(ValidationError, match="SERVICE_TLS_CERT_FILE and SERVICE_TLS_KEY_FILE"):
        ServiceSettings(tls_cert_file=files.server_cert)
    mutual_without_cert = r"SERVICE_TLS_CLIENT_CA_FILE \(mutual TLS\) needs SERVICE_TLS_CERT_FILE"
    with pytest.raises(ValidationError, match=mutual_without_cert):
        ServiceSettings(tls_client_ca_file=files.ca)
    with pytest.raises(ValidationError, match="SERVICE_TLS_CLIENT_CERT_FILE and SERVICE_TLS_CLIENT_KEY_FILE"):
        ServiceSettings(tls_ca_file=files.ca, tls_client_key_file=files.client_key)


def test_a_missing_file_is_refused_at_start(tmp_path: Path, files: TlsFiles) -> None:
    with pytest.raises(ValidationError) as error:
        ServiceSettings(tls_cert_file=tmp_path / "absent.pem", tls_key_file=files.server_key)
    assert error.value.errors()[0]["loc"] == ("tls_cert_file",)


def test_outgoing_calls_present_the_server_certificate_unless_a_client_one_is_set(files: TlsFiles) -> None:
    settings = ServiceSettings(**_tls(files), tls_ca_file=files.ca)
    client = ClientTls.from_settings(settings)
    assert client == ClientTls(files.ca, files.server_cert, files.server_key, None)
    settings = ServiceSettings(
        **_tls(files), tls_ca_file=files.ca, tls_client_cert_file=files.client_cert,
        tls_client_key_file=files.client_key, tls_server_name="localhost",
    )  # fmt: skip
    assert ClientTls.from_settings(settings) == ClientTls(
        files.ca, files.client_cert, files.client_key, "localhost"
    )
    assert ServerTls.from_settings(settings) == ServerTls(files.server_cert, files.server_key, None, 1.0)


# --- gRPC -------------------------------------------------------------------------------------


async def test_grpc_server_with_tls_answers_tls_clients_and_refuses_plaintext(files: TlsFiles) -> None:
    async with running(ECHO, **_tls(files)) as runner:
        assert runner.port is not None
        assert await _echo_call(runner.port, _client(files)) == "hello"
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await _echo_call(runner.port, None)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_client_refuses_a_server_it_does_not_trust(files: TlsFiles, stranger: TlsFiles) -> None:
    async with running(ECHO, **_tls(files)) as runner:
        assert runner.port is not None
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await _echo_call(runner.port, _client(files, ca=stranger.ca))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_mutual_tls_requires_a_client_certificate_from_the_trusted_ca(
    files: TlsFiles, stranger: TlsFiles
) -> None:
    async with running(ECHO, **_tls(files, mutual=True)) as runner:
        assert runner.port is not None
        assert await _echo_call(runner.port, _client(files, cert=files)) == "hello"
        for refused in (_client(files), _client(files, cert=stranger)):  # no certificate; another CA
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await _echo_call(runner.port, refused)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_server_serves_a_rotated_certificate_without_restart(
    files: TlsFiles, ca: CertificateAuthority, tmp_path: Path
) -> None:
    async with running(ECHO, **_tls(files, mutual=True)) as runner:
        port = runner.port
        assert port is not None
        first = _serial(files.server_cert)
        assert await asyncio.to_thread(_served_serial, port, files.ca, alpn="h2") == first
        kept = aio_channel(f"127.0.0.1:{port}", tls=_client(files, cert=files), options=_OWN_CONNECTION)
        try:
            assert (await method(kept, "unary_unary", "echo")(StringValue(value="a"))).value == "a"
            renewed = ca.issue("localhost")
            files.replace_server(renewed)
            # The next handshake sees the new certificate; the open connection keeps working.
            assert await asyncio.to_thread(_served_serial, port, files.ca, alpn="h2") == renewed.serial_number
            assert await _echo_call(port, _client(files, cert=files)) == "hello"
            assert (await method(kept, "unary_unary", "echo")(StringValue(value="b"))).value == "b"
        finally:
            await kept.close()


async def test_grpc_server_rotates_to_another_ca_and_its_clients_follow(
    files: TlsFiles, stranger: TlsFiles
) -> None:
    async with running(ECHO, **_tls(files)) as runner:
        assert runner.port is not None
        assert await _echo_call(runner.port, _client(files)) == "hello"
        # The server's certificate is replaced by one of another CA: old-trust clients are
        # refused, new-trust clients answered, on new connections, without a restart.
        write_atomically(files.server_key, stranger.server_key.read_bytes())
        write_atomically(files.server_cert, stranger.server_cert.read_bytes())
        assert await _echo_call(runner.port, _client(stranger)) == "hello"
        with pytest.raises(grpc.aio.AioRpcError):
            await _echo_call(runner.port, _client(files))


async def test_grpc_server_keeps_its_certificate_while_the_new_files_do_not_load(
    files: TlsFiles, ca: CertificateAuthority
) -> None:
    async with running(ECHO, **_tls(files)) as runner:
        assert runner.port is not None
        first = _serial(files.server_cert)
        write_atomically(files.server_cert, b"not a certificate")
        assert await _echo_call(runner.port, _client(files)) == "hello"
        renewed = ca.issue("localhost")
        write_atomically(files.server_key, renewed.key_pem)  # the key before its certificate
        write_atomically(files.server_cert, ca.issue("localhost").cert_pem)  # another key's certificate
        assert await asyncio.to_thread(_served_serial, runner.port, files.ca, alpn="h2") == first
        write_atomically(files.server_cert, renewed.cert_pem)
        served = await asyncio.to_thread(_served_serial, runner.port, files.ca, alpn="h2")
        assert served == renewed.serial_number


async def test_runner_refuses_to_start_with_unreadable_certificate_files(
    files: TlsFiles, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="TLS certificate files"):
        async with running(ECHO, tls_cert_file=bad, tls_key_file=files.server_key, metrics_port=0):
            pass


# --- HTTP (uvicorn) ---------------------------------------------------------------------------


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["scheme"].encode()})


@contextlib.asynccontextmanager
async def _uvicorn(tls: ServerTls) -> AsyncIterator[UvicornServer]:
    async with UvicornServer(_ok_app, host="127.0.0.1", port=0, grace_period_s=1, tls=tls) as server:
        yield server


async def _get(url: str, verify: ssl.SSLContext | bool) -> httpx.Response:
    async with httpx.AsyncClient(verify=verify, timeout=5, trust_env=False) as client:
        return await client.get(url)


async def test_uvicorn_with_tls_answers_https_and_refuses_plaintext(files: TlsFiles) -> None:
    async with _uvicorn(ServerTls(files.server_cert, files.server_key)) as server:
        response = await _get(f"https://localhost:{server.port}/", _client(files).ssl_context())
        assert (response.status_code, response.text) == (200, "https")
        with pytest.raises(REFUSED):
            await _get(f"http://127.0.0.1:{server.port}/", False)


async def test_uvicorn_mutual_tls_requires_a_client_certificate_from_the_trusted_ca(
    files: TlsFiles, stranger: TlsFiles
) -> None:
    async with _uvicorn(ServerTls(files.server_cert, files.server_key, files.ca)) as server:
        url = f"https://localhost:{server.port}/"
        assert (await _get(url, _client(files, cert=files).ssl_context())).status_code == 200
        for refused in (_client(files), _client(files, cert=stranger)):
            with pytest.raises(REFUSED):
                await _get(url, refused.ssl_context())


async def test_uvicorn_serves_a_rotated_certificate_from_the_same_context(
    files: TlsFiles, ca: CertificateAuthority
) -> None:
    tls = ServerTls(files.server_cert, files.server_key, files.ca, reload_interval_s=0.05)
    async with _uvicorn(tls) as server:
        assert server.port is not None
        assert server.ssl is not None
        context = server.ssl.context
        port = server.port
        assert await asyncio.to_thread(_served_serial_mutual, port, files) == _serial(files.server_cert)
        renewed = ca.issue("localhost")
        files.replace_server(renewed)

        async def renewed_served() -> bool:
            return await asyncio.to_thread(_served_serial_mutual, port, files) == renewed.serial_number

        await _eventually(renewed_served)
        assert server.ssl.context is context  # load_cert_chain on the same SSLContext
        response = await _get(f"https://localhost:{port}/", _client(files, cert=files).ssl_context())
        assert response.status_code == 200


def _served_serial_mutual(port: int, files: TlsFiles) -> int:
    context = _client(files, cert=files).ssl_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_reload_keeps_the_certificate_until_a_matching_pair_is_written(
    files: TlsFiles, ca: CertificateAuthority
) -> None:
    context = ReloadingSslContext(ServerTls(files.server_cert, files.server_key))
    assert not context.reload_if_changed()
    renewed = ca.issue("localhost")
    write_atomically(files.server_cert, renewed.cert_pem)  # the certificate before its key
    assert not context.reload_if_changed()  # mismatch: logged, previous certificate kept
    write_atomically(files.server_key, renewed.key_pem)
    assert context.reload_if_changed()
    assert not context.reload_if_changed()


# --- /metrics ---------------------------------------------------------------------------------


async def test_metrics_server_with_mutual_tls_and_rotation_at_the_next_connection(
    files: TlsFiles, ca: CertificateAuthority
) -> None:
    tls = ReloadingSslContext(ServerTls(files.server_cert, files.server_key, files.ca))
    metrics = start_metrics_server(0, "127.0.0.1", tls=tls)
    try:
        url = f"https://localhost:{metrics.port}/metrics"
        response = await _get(url, _client(files, cert=files).ssl_context())
        assert response.status_code == 200
        assert "# TYPE" in response.text
        with pytest.raises(REFUSED):
            await _get(url, _client(files).ssl_context())  # no client certificate
        with pytest.raises(REFUSED):
            await _get(f"http://127.0.0.1:{metrics.port}/metrics", False)
        first = _serial(files.server_cert)
        renewed = ca.issue("localhost")
        write_atomically(files.server_cert, renewed.cert_pem)  # the certificate before its key
        # Checked at every accepted connection: the mismatched pair is not loaded, the previous
        # certificate still served; once the key is there, the very next connection sees it.
        assert await asyncio.to_thread(_served_serial_mutual, metrics.port, files) == first
        write_atomically(files.server_key, renewed.key_pem)
        assert await asyncio.to_thread(_served_serial_mutual, metrics.port, files) == renewed.serial_number
    finally:
        metrics.close()


async def test_runner_serves_metrics_over_the_same_mutual_tls(files: TlsFiles) -> None:
    async with running(ECHO, **_tls(files, mutual=True), metrics_port=0) as runner:
        assert runner.metrics is not None
        url = f"https://localhost:{runner.metrics.port}/metrics"
        assert (await _get(url, _client(files, cert=files).ssl_context())).status_code == 200
        with pytest.raises(REFUSED):
            await _get(url, _client(files).ssl_context())

"""Mutual TLS end to end in process: clients -> gateway (REST and gRPC) -> every backend.

One CA; every fake backend (feature store, registry, drift, both model servers) requires a client
certificate from it, and so does the gateway. The gateway is configured with the kit's
``tls_*`` settings only.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import ADMIN_KEY, Stack, wait_for
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as igrpc
from creditrisk_kit import aio_channel
from creditrisk_kit.auth import bearer_interceptors
from creditrisk_kit.tls import ClientTls
from creditrisk_testing.tls import CertificateAuthority, TlsFiles, write_tls_files
from inference_gateway.service import Gateway


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    directory = tmp_path / "tls"
    directory.mkdir()
    return write_tls_files(directory, CertificateAuthority.create())


@pytest.fixture
async def tls_stack(files: TlsFiles) -> AsyncIterator[Stack]:
    stack = Stack()
    credentials = grpc.ssl_server_credentials(
        [(files.server_key.read_bytes(), files.server_cert.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )
    for fake in (stack.features, stack.registry, stack.drift):
        fake.credentials = credentials
    for model_server in (stack.champion, stack.challenger):
        model_server.tls = {
            "ssl_certfile": str(files.server_cert),
            "ssl_keyfile": str(files.server_key),
            "ssl_ca_certs": str(files.ca),
            "ssl_cert_reqs": 2,  # ssl.CERT_REQUIRED
        }
    await stack.start()
    yield stack
    await stack.stop()


@pytest.fixture
async def gateway(tls_stack: Stack, files: TlsFiles, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = tls_stack.settings(
        tmp_path,
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
        tls_client_ca_file=files.ca,
        tls_ca_file=files.ca,
        challenger_mode="shadow",
    )
    gateway = Gateway(settings)
    await gateway.start()
    try:
        await wait_for(lambda: gateway.core.champion_ready())
        yield gateway
    finally:
        await gateway.stop()


def _client(files: TlsFiles, *, certificate: bool = True) -> ClientTls:
    return ClientTls(
        files.ca,
        files.client_cert if certificate else None,
        files.client_key if certificate else None,
        server_name="localhost",
    )


async def test_rest_and_grpc_over_mutual_tls_reach_every_backend_over_mutual_tls(
    gateway: Gateway, tls_stack: Stack, files: TlsFiles
) -> None:
    async with httpx.AsyncClient(
        verify=_client(files).ssl_context(), timeout=10, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ) as client:
        response = await client.post(
            f"https://localhost:{gateway.http_port}/v1/predict", json={"applicant_id": 1}
        )
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == 1  # the champion answered over TLS
    assert tls_stack.champion.records  # ... and really was called
    await wait_for(lambda: len(tls_stack.drift.events) >= 1)  # the prediction log went over TLS

    channel = aio_channel(
        f"127.0.0.1:{gateway.grpc_port}", tls=_client(files), interceptors=bearer_interceptors(ADMIN_KEY)
    )
    try:
        answer = await igrpc.InferenceServiceStub(channel).Predict(ipb.PredictRequest(applicant_id=3))
        assert answer.model_version == 1
    finally:
        await channel.close()


async def test_gateway_refuses_plaintext_and_clients_without_a_certificate(
    gateway: Gateway, files: TlsFiles
) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"http://127.0.0.1:{gateway.http_port}/v1/predict", json={"applicant_id": 1})
    no_certificate = _client(files, certificate=False).ssl_context()
    async with httpx.AsyncClient(verify=no_certificate, timeout=5) as client:
        # TLS 1.3: the refusal may arrive as the response is read, as a bare ssl.SSLError.
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            await client.post(f"https://localhost:{gateway.http_port}/v1/predict", json={"applicant_id": 1})
    for tls in (None, _client(files, certificate=False)):
        channel = aio_channel(f"127.0.0.1:{gateway.grpc_port}", tls=tls, retry=None)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await igrpc.InferenceServiceStub(channel).Predict(ipb.PredictRequest(applicant_id=3))
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await channel.close()

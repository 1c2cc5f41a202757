"""Mutual TLS on the slots (``MODEL_SERVER_TLS_*``, the kit's settings; docs/security.md,
"model-server"): a seldon-core slot and an MLServer slot started with a server certificate and a
client CA answer only TLS clients presenting a certificate of that CA (REST, seldon-core's gRPC and
metrics, MLServer's metrics), still with the credential check; seldon-core's REST port serves a
renewed certificate from the next connection."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from creditrisk_testing.tls import CertificateAuthority, TlsFiles, write_tls_files
from cryptography import x509
from google.protobuf import json_format
from model_server.__main__ import mlserver_command, seldon_command
from model_server.testing import fixtures as fx
from model_server.testing.clients import v2_json
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

pytestmark = pytest.mark.slow
MODEL = "credit-risk"
RECORD = {"duration_in_month": 6, "credit_amount": 1169, "purpose": "radio/television"}


@dataclass
class TlsSlots:
    files: TlsFiles
    ca: CertificateAuthority
    seldon: dict[str, int]
    mlserver: dict[str, int]

    def client(self, *, cert: bool = True) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.files.ca))
        if cert:
            context.load_cert_chain(self.files.client_cert, self.files.client_key)
        return httpx.Client(verify=context, timeout=30, headers=fx.auth_headers())


def _wait_https(slots: TlsSlots, url: str, proc: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with slots.client() as http:
        while True:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"slot exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{url} not ready"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def tls_slots(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSlots]:
    work = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.create()
    files = write_tls_files(work, ca)
    ports = [fx.free_port() for _ in range(6)]
    seldon = seldon_command(
        model=MODEL, alias="champion", http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]
    )
    mls = mlserver_command(
        model=MODEL,
        alias="challenger",
        directory=work / "mlserver",
        http_port=ports[3],
        grpc_port=ports[4],
        metrics_port=ports[5],
    )
    tls_env = {
        "MODEL_SERVER_TLS_CERT_FILE": str(files.server_cert),
        "MODEL_SERVER_TLS_KEY_FILE": str(files.server_key),
        "MODEL_SERVER_TLS_CLIENT_CA_FILE": str(files.ca),
    }
    procs = []
    try:
        for name, command in (("seldon", seldon), ("mlserver", mls)):
            env = fx.clean_env(
                **{**stack.slot_env, **command.env, **tls_env, "MODEL_SERVER_STATE_DIR": str(work / name)}
            )
            procs.append(fx.start_process(command.argv, env, work / f"{name}.log"))
        slots = TlsSlots(
            files,
            ca,
            {"http": ports[0], "grpc": ports[1], "metrics": ports[2]},
            {"http": ports[3], "grpc": ports[4], "metrics": ports[5]},
        )
        with ThreadPoolExecutor(2) as pool:
            waits = [
                pool.submit(_wait_https, slots, f"https://127.0.0.1:{ports[0]}/health/ready", procs[0]),
                pool.submit(_wait_https, slots, f"https://127.0.0.1:{ports[3]}/v2/health/ready", procs[1]),
            ]
            for wait in waits:
                wait.result()
        yield slots
    finally:
        for proc in procs:
            fx.stop_process(proc)


def test_rest_over_mutual_tls_scores_with_the_credential(tls_slots: TlsSlots, inproc_v1: Any) -> None:
    seldon = f"https://127.0.0.1:{tls_slots.seldon['http']}/api/v1.0/predictions"
    mlserver = f"https://127.0.0.1:{tls_slots.mlserver['http']}/v2/models/{MODEL}/infer"
    with tls_slots.client() as http:
        answer = http.post(seldon, json={"jsonData": RECORD})
        assert answer.status_code == 200, answer.text
        answer = http.post(mlserver, json=v2_json([RECORD], inproc_v1.signature))
        assert answer.status_code == 200, answer.text
        # TLS does not replace the credential check
        assert http.post(seldon, json={"jsonData": RECORD}, headers={"authorization": ""}).status_code == 401
        assert http.post(mlserver, json={}, headers={"authorization": ""}).status_code == 401


@pytest.mark.parametrize("listener", ["seldon-http", "seldon-metrics", "mlserver-http", "mlserver-metrics"])
def test_clients_without_a_certificate_or_tls_are_refused(tls_slots: TlsSlots, listener: str) -> None:
    runtime, name = listener.split("-")
    port = getattr(tls_slots, runtime)[name]
    path = "/metrics" if name == "metrics" else "/"
    with tls_slots.client() as http:  # the right client gets an answer (any status)
        assert http.get(f"https://127.0.0.1:{port}{path}").status_code < 500
    with tls_slots.client(cert=False) as http, pytest.raises(httpx.HTTPError):
        http.get(f"https://127.0.0.1:{port}{path}")
    with httpx.Client(timeout=10) as http, pytest.raises(httpx.HTTPError):
        http.get(f"http://127.0.0.1:{port}{path}")


def test_seldon_grpc_over_mutual_tls(tls_slots: TlsSlots) -> None:
    files = tls_slots.files
    credentials = grpc.ssl_channel_credentials(
        files.ca.read_bytes(), files.client_key.read_bytes(), files.client_cert.read_bytes()
    )
    request = json_format.ParseDict({"jsonData": RECORD}, prediction_pb2.SeldonMessage())
    target = f"localhost:{tls_slots.seldon['grpc']}"
    with grpc.secure_channel(target, credentials) as channel:
        stub = prediction_pb2_grpc.ModelStub(channel)
        answer = stub.Predict(request, timeout=30, metadata=list(fx.auth_headers().items()))
        with pytest.raises(grpc.RpcError) as unauthenticated:  # TLS does not replace the credential
            stub.Predict(request, timeout=30)
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert json_format.MessageToDict(answer)["meta"]["tags"]["model_name"] == MODEL
    no_cert = grpc.ssl_channel_credentials(files.ca.read_bytes())
    for channel in (grpc.secure_channel(target, no_cert), grpc.insecure_channel(target)):
        with channel, pytest.raises(grpc.RpcError) as refused:
            prediction_pb2_grpc.ModelStub(channel).Predict(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def _served_serial(slots: TlsSlots, port: int) -> int:
    context = ssl.create_default_context(cafile=str(slots.files.ca))
    context.load_cert_chain(slots.files.client_cert, slots.files.client_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_seldon_rest_serves_a_renewed_certificate_without_a_restart(tls_slots: TlsSlots) -> None:
    port = tls_slots.seldon["http"]
    before = _served_serial(tls_slots, port)
    assert before == x509.load_pem_x509_certificate(tls_slots.files.server_cert.read_bytes()).serial_number
    renewed = tls_slots.ca.issue("localhost")
    tls_slots.files.replace_server(renewed)
    deadline = time.monotonic() + 30
    while _served_serial(tls_slots, port) != renewed.serial_number:
        assert time.monotonic() < deadline, "the renewed certificate was not served"
        time.sleep(0.2)


def test_tls_files_must_exist(tmp_path: Path) -> None:
    """A certificate setting naming no file stops the slot at start (exit 2, the variable named)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "model_server", "seldon", "--print"],
        env=fx.clean_env(
            MODEL_SERVER_MODEL_NAME=MODEL,
            MODEL_SERVER_TRUSTED_KEYS_FILE=str(tmp_path / "keys.pem"),
            MODEL_SERVER_TLS_CERT_FILE=str(tmp_path / "missing.pem"),
            MODEL_SERVER_TLS_KEY_FILE=str(tmp_path / "missing-key.pem"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "MODEL_SERVER_TLS_CERT_FILE" in done.stderr

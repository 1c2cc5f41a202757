"""The pipeline's credential comes from the environment (CREDITRISK_CREDENTIAL_FILE or
CREDITRISK_CREDENTIAL), read when a component runs; never a parameter. (The run under kfp.local
with the key checked against its log: tests/test_pipelines_local.py.)"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_pipelines import components as c
from creditrisk_pipelines import ops
from creditrisk_pipelines.credential import (
    CREDENTIAL_ENV,
    CREDENTIAL_FILE_ENV,
    TLS_CA_FILE_ENV,
    CredentialError,
    pipeline_credential,
    pipeline_tls,
)
from creditrisk_pipelines.local import run

BOTH = f"{CREDENTIAL_FILE_ENV}.*{CREDENTIAL_ENV}"


def _key_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "pipeline.key"
    path.write_text(f"  {key}\n")
    return path


def test_neither_variable_set_names_both() -> None:
    with pytest.raises(CredentialError, match=f"credential is missing: {BOTH}"):
        pipeline_credential({})
    with pytest.raises(CredentialError, match=f"{CREDENTIAL_ENV} is empty"):
        pipeline_credential({CREDENTIAL_ENV: "  ", CREDENTIAL_FILE_ENV: ""})


def test_the_file_is_read_stripped_and_again_when_it_changes(tmp_path: Path) -> None:
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = _key_file(tmp_path, first)
    source = pipeline_credential({CREDENTIAL_FILE_ENV: str(path), CREDENTIAL_ENV: "ignored: the file wins"})
    assert source() == first
    path.write_text(second + "\n")  # a rotated Secret: the next call presents the new key
    assert source() == second
    assert first not in repr(source)
    assert second not in repr(source)


def test_the_value_itself(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(32)
    assert pipeline_credential({CREDENTIAL_ENV: f"{key}\n"})() == key


def test_a_missing_or_empty_file_is_named_without_a_value(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    wanted = rf"{CREDENTIAL_FILE_ENV}={missing}: cannot read \(FileNotFound"
    with pytest.raises(CredentialError, match=wanted):
        pipeline_credential({CREDENTIAL_FILE_ENV: str(missing)})
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(CredentialError, match=f"{CREDENTIAL_FILE_ENV}={empty}: the file is empty"):
        pipeline_credential({CREDENTIAL_FILE_ENV: str(empty)})


def test_a_component_reads_it_when_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read at call time (the module is imported long before): unset, the component fails naming
    both variables before any call; set afterwards, the same component runs."""
    monkeypatch.delenv(CREDENTIAL_FILE_ENV, raising=False)
    monkeypatch.delenv(CREDENTIAL_ENV, raising=False)
    arguments = {"inference_gateway": "127.0.0.1:1", "model_name": "credit-risk", "version": 0}
    with pytest.raises(CredentialError, match=BOTH):
        c.confirm_rollout.python_func(timeout_s=1.0, pipeline_job_id="job-1", **arguments)
    monkeypatch.setenv(CREDENTIAL_FILE_ENV, str(_key_file(tmp_path, secrets.token_urlsafe(32))))
    assert c.confirm_rollout.python_func(timeout_s=1.0, pipeline_job_id="job-1", **arguments) is False


class _Registry(rpb_grpc.ModelRegistryServiceServicer):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def GetModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))
        return rpb.GetModelVersionResponse(model_version=rpb.ModelVersion(name="credit-risk", version=3))


def test_the_clients_call_the_source_on_every_rpc(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = _Registry()
    target = serve(lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(fake, server))
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = _key_file(tmp_path, first)
    source = pipeline_credential({CREDENTIAL_FILE_ENV: str(path)})
    assert ops.promote(target, source, "credit-risk", 3).promoted  # already champion: a retry
    path.write_text(second)
    assert ops.promote(target, source, "credit-risk", 3).promoted
    assert fake.tokens == [f"Bearer {first}", f"Bearer {second}"]
    path.write_text("")
    with pytest.raises(ValueError, match="token is empty"):
        ops.promote(target, source, "credit-risk", 3)


@pytest.mark.parametrize("parameter", ["registry_token", "token"])
def test_the_local_runner_refuses_the_former_parameter(
    parameter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_urlsafe(32)
    monkeypatch.setenv(CREDENTIAL_ENV, key)
    wanted = f"{parameter} is no longer a pipeline parameter.*{BOTH}"
    with pytest.raises(CredentialError, match=wanted) as error:
        run("training", {"registry": "127.0.0.1:1", parameter: key}, tmp_path)
    assert key not in str(error.value)


def test_the_local_runner_checks_the_credential_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CREDENTIAL_FILE_ENV, raising=False)
    monkeypatch.delenv(CREDENTIAL_ENV, raising=False)
    with pytest.raises(CredentialError, match=BOTH):
        run("training", {"registry": "127.0.0.1:1"}, tmp_path / "kfp")
    assert not (tmp_path / "kfp").exists()  # no task ran


def test_tls_is_off_without_the_ca_variable_and_on_with_it(tmp_path: Path) -> None:
    assert pipeline_tls({}) is None
    assert pipeline_tls({TLS_CA_FILE_ENV: "  "}) is None
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    tls = pipeline_tls({TLS_CA_FILE_ENV: str(ca)})
    assert tls is not None
    assert tls.ca_file == ca
    assert tls.cert_file is None  # no client certificate: the bearer credential is the identity
    with pytest.raises(CredentialError, match=f"{TLS_CA_FILE_ENV}=.*missing.pem: cannot read"):
        pipeline_tls({TLS_CA_FILE_ENV: str(tmp_path / "missing.pem")})


def test_with_the_ca_variable_set_a_component_does_not_speak_plaintext(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plaintext server is not reached by a component told to use TLS (no silent downgrade)."""
    fake = _Registry()
    target = serve(lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(fake, server))
    source = pipeline_credential({CREDENTIAL_FILE_ENV: str(_key_file(tmp_path, secrets.token_urlsafe(32)))})
    assert ops.promote(target, source, "credit-risk", 3).promoted  # plaintext: reached
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"")  # any trust store: the handshake with a plaintext server fails first
    monkeypatch.setenv(TLS_CA_FILE_ENV, str(ca))
    with pytest.raises(ops.ServiceCallError, match="UNAVAILABLE"):
        ops.promote(target, source, "credit-risk", 3)
    assert len(fake.tokens) == 1

"""``python -m registry_gateway`` on the kit's service entry, as the stack starts it: with MLflow and
the feature-service down it serves but is not ready (NOT_SERVING), the audit store is migrated, and
SIGTERM drains and exits 0; a bad variable, or no credential source, exits 2 naming it, not its
value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from creditrisk_testing import entrypoints as ep
from registry_gateway.__main__ import SPEC
from registry_gateway.servicer import SERVICE_NAME
from registry_gateway.settings import Settings


def test_spec_names_the_service_and_its_settings() -> None:
    assert (SPEC.name, SPEC.settings) == ("registry-gateway", Settings)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_serves_not_ready_without_dependencies_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    ep.assert_serves_then_drains(
        "registry_gateway",
        "REGISTRY_GATEWAY_",
        not_ready=SERVICE_NAME,
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
        feature_service_address=ep.unreachable(),
        audit_db_url=f"sqlite:///{tmp_path / 'audit.db'}",
        cache_dir=str(tmp_path / "cache"),
        auth_api_keys=json.dumps({"test-key": {"subject": "test", "roles": ["admin"]}}),
    )
    assert (tmp_path / "audit.db").exists()  # migrated by the build


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_no_credential_source_exits_2_naming_the_settings(tmp_path: Path) -> None:
    ep.assert_no_credential_source_exits_2(
        "registry_gateway",
        "REGISTRY_GATEWAY_",
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
        feature_service_address=ep.unreachable(),
        audit_db_url=f"sqlite:///{tmp_path / 'audit.db'}",
    )


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_variable_exits_2_naming_it() -> None:
    ep.assert_bad_variable_exits_2(
        "registry_gateway", "REGISTRY_GATEWAY_", "mlflow_tracking_uri", "file:///x"
    )


def test_signing_key_settings(tmp_path: Path) -> None:
    """No key: unsigned moves; ``signing_key_create`` makes the pair once (private 0600, public
    appended to the trusted-keys file) and needs both paths."""
    from creditrisk_model_artifacts.signing import load_trusted_keys
    from pydantic import ValidationError

    assert Settings().signing_key() is None
    with pytest.raises(ValidationError, match="signing_key_create needs"):
        Settings(signing_key_create=True, signing_key_file=str(tmp_path / "k.pem"))
    made = Settings(
        signing_key_file=str(tmp_path / "k.pem"),
        signing_key_create=True,
        signing_public_key_file=str(tmp_path / "trusted.pem"),
    )
    key = made.signing_key()
    assert key is not None
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert made.signing_key().key_id == key.key_id  # kept, not made again
    assert load_trusted_keys(tmp_path / "trusted.pem").key_ids == [key.key_id]
    loaded = Settings(signing_key_file=str(tmp_path / "k.pem")).signing_key()
    assert loaded is not None
    assert loaded.key_id == key.key_id
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ValueError, match=r"bad\.pem: not an unencrypted PEM private key"):
        Settings(signing_key_file=str(tmp_path / "bad.pem")).signing_key()

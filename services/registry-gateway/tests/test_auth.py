"""The registry-gateway on the kit's authentication, in process and without MLflow: every RPC
(found through reflection) refused without a credential, with a wrong one and with every role but
its own (the kit's interceptor refuses before the servicer runs, so no core is needed); the legacy
``REGISTRY_GATEWAY_TOKENS`` mapped to kit roles; the audit trail's role."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from creditrisk_kit import Unauthenticated
from creditrisk_kit.auth import Authenticator, Principal, Role
from creditrisk_testing.refusal import REFUSAL_API_KEYS, check_servicer_refusals
from registry_gateway.auth import POLICY, SERVICE_NAME, audit_role, legacy_keys, tokens_as_keys
from registry_gateway.servicer import RegistryServicer, register
from registry_gateway.settings import Settings, TokenEntry

TOKENS = {
    "viewer-token": TokenEntry(subject="dashboard", role="viewer"),
    "promoter-token": TokenEntry(subject="pipeline", role="promoter"),
    "admin-token": TokenEntry(subject="alice", role="admin"),
}


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "tokens": TOKENS}
    values.update(overrides)
    return Settings(**values)


async def test_every_method_refused_three_ways() -> None:
    settings = _settings(auth_api_keys=json.dumps(REFUSAL_API_KEYS))
    report = await check_servicer_refusals(
        settings,
        [SERVICE_NAME],
        register(RegistryServicer(core=None)),  # type: ignore[arg-type]
        POLICY,
        Authenticator.from_settings(settings, extra_keys=tokens_as_keys(settings.tokens)),
    )
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == 12
    assert report.counts() == {
        "no credential": (12, 12),
        "wrong credential": (12, 12),
        "lower role": (12, 12),
    }


def test_legacy_tokens_map_to_kit_roles() -> None:
    auth = Authenticator.from_settings(_settings(), extra_keys=tokens_as_keys(TOKENS))
    assert auth.authenticate("Bearer viewer-token").roles == {Role.READ_REGISTRY}
    assert auth.authenticate("Bearer promoter-token").roles == {
        Role.READ_REGISTRY,
        Role.REGISTER,
        Role.PROMOTE,
    }
    assert auth.authenticate("Bearer admin-token").roles == {Role.ADMIN}


@pytest.mark.parametrize(
    ("roles", "recorded"),
    [({Role.READ_REGISTRY}, 1), ({Role.REGISTER, Role.PROMOTE}, 2), ({Role.ADMIN}, 3), (set(), 1)],
)
def test_audit_role_of_a_principal(roles: set[Role], recorded: int) -> None:
    assert audit_role(Principal("who", frozenset(roles))) == recorded


def test_tokens_alone_are_a_credential_source() -> None:
    assert not Authenticator.from_settings(_settings(), extra_keys=tokens_as_keys(TOKENS)).disabled


def test_legacy_tokens_still_work_with_a_deprecation_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="registry_gateway.auth")
    auth = Authenticator.from_settings(_settings(), extra_keys=legacy_keys(_settings()))
    assert auth.authenticate("Bearer promoter-token").roles == {
        Role.READ_REGISTRY,
        Role.REGISTER,
        Role.PROMOTE,
    }
    (warning,) = [r for r in caplog.records if r.name == "registry_gateway.auth"]
    assert "REGISTRY_GATEWAY_TOKENS is deprecated" in warning.getMessage()
    assert "REGISTRY_GATEWAY_AUTH_API_KEYS_FILE" in warning.getMessage()
    assert not any(token in warning.getMessage() for token in TOKENS)
    caplog.clear()
    assert legacy_keys(_settings(tokens={})) == {}
    assert caplog.records == []  # no legacy tokens, no warning


def test_the_stacks_keys_file_with_kit_roles_is_re_read_on_change(tmp_path: Path) -> None:
    """What deploy/stack/local.toml gives the gateway: ``REGISTRY_GATEWAY_AUTH_API_KEYS_FILE``
    (no legacy tokens); a rotated file is read again without a restart."""
    keys = tmp_path / "api-keys.json"
    keys.write_text(json.dumps({"old-key": {"subject": "demo-pipeline", "roles": ["register", "promote"]}}))
    auth = Authenticator.from_settings(
        _settings(tokens={}, auth_api_keys_file=keys), legacy_keys(_settings(tokens={}))
    )
    assert auth.authenticate("Bearer old-key").subject == "demo-pipeline"
    keys.write_text(json.dumps({"new-key!": {"subject": "demo-pipeline", "roles": ["read_registry"]}}))
    assert auth.authenticate("Bearer new-key!").roles == {Role.READ_REGISTRY}
    with pytest.raises(Unauthenticated):
        auth.authenticate("Bearer old-key")

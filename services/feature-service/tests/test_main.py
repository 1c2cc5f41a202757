"""``python -m feature_service`` on the kit's service entry, as the stack starts it (embedded
profile in a fresh folder): it serves, and SIGTERM drains and exits 0; a bad variable, or no
credential source, exits 2 naming it, not its value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from creditrisk_testing import entrypoints as ep
from feature_service.__main__ import SPEC
from feature_service.settings import FeatureServiceSettings


def test_spec_names_the_service_and_its_settings() -> None:
    assert (SPEC.name, SPEC.settings) == ("feature-service", FeatureServiceSettings)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    ep.assert_serves_then_drains(
        "feature_service",
        "FEATURE_SERVICE_",
        profile="embedded",
        data_dir=str(tmp_path / "store"),
        auth_api_keys=json.dumps({"test-key": {"subject": "test", "roles": ["admin"]}}),
    )


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_no_credential_source_exits_2_naming_the_settings(tmp_path: Path) -> None:
    ep.assert_no_credential_source_exits_2(
        "feature_service", "FEATURE_SERVICE_", profile="embedded", data_dir=str(tmp_path / "store")
    )


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_variable_exits_2_naming_it() -> None:
    ep.assert_bad_variable_exits_2("feature_service", "FEATURE_SERVICE_", "port", "port-70000")

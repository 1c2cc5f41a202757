"""``python -m training_service`` on the kit's service entry, as the stack starts it: the process
serves while its dependencies are down (readiness NOT_SERVING) and SIGTERM ends it with status 0; a
bad variable, or no credential source, ends it with status 2, naming the variable and not its
value."""

from __future__ import annotations

import json

import pytest
from creditrisk_testing import entrypoints as ep
from training_service.__main__ import SPEC
from training_service.servicer import SERVICE_NAME
from training_service.settings import TrainingServiceSettings


def test_spec_names_the_service_and_its_settings() -> None:
    assert (SPEC.name, SPEC.settings) == ("training-service", TrainingServiceSettings)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_serves_not_ready_without_dependencies_and_exits_0_on_sigterm() -> None:
    ep.assert_serves_then_drains(
        "training_service",
        "TRAINING_SERVICE_",
        not_ready=SERVICE_NAME,
        feature_service_address=ep.unreachable(),
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
        auth_api_keys=json.dumps({"test-key": {"subject": "test", "roles": ["train"]}}),
        credential="test-key",
    )


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_no_credential_source_exits_2_naming_the_settings() -> None:
    ep.assert_no_credential_source_exits_2(
        "training_service",
        "TRAINING_SERVICE_",
        feature_service_address=ep.unreachable(),
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
    )


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_variable_exits_2_naming_it() -> None:
    ep.assert_bad_variable_exits_2("training_service", "TRAINING_SERVICE_", "mlflow_tracking_uri", "ftp://x")

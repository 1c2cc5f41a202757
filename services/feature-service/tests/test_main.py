"""``python -m feature_service`` on the kit's service entry, as the stack starts it (embedded
profile in a fresh folder): it serves (liveness SERVING), SIGTERM drains and exits 0; a bad variable
exits 2 naming it, not its value."""

from __future__ import annotations

from pathlib import Path

from creditrisk_kit import LIVENESS_SERVICE
from creditrisk_testing.entrypoints import (
    SERVING,
    ServiceProcess,
    free_port,
    run_to_exit,
    service_environment,
    wait_for_health,
)
from feature_service.__main__ import SPEC
from feature_service.settings import FeatureServiceSettings

PREFIX = "FEATURE_SERVICE_"


def test_spec_names_the_service_and_its_settings() -> None:
    assert SPEC.name == "feature-service"
    assert SPEC.settings is FeatureServiceSettings


def test_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = service_environment(
        PREFIX,
        FEATURE_SERVICE_HOST="127.0.0.1",
        FEATURE_SERVICE_PORT=str(port),
        FEATURE_SERVICE_PROFILE="embedded",
        FEATURE_SERVICE_DATA_DIR=str(tmp_path / "feature-store"),
        FEATURE_SERVICE_HEALTH_CHECK_INTERVAL_S="0.2",
        FEATURE_SERVICE_GRACE_PERIOD_S="1",
    )
    with ServiceProcess("feature_service", env) as service:
        wait_for_health(f"127.0.0.1:{port}", LIVENESS_SERVICE, SERVING, 120)
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr


def test_bad_variable_exits_2_naming_it() -> None:
    done = run_to_exit("feature_service", service_environment(PREFIX, FEATURE_SERVICE_PORT="port-70000"))
    assert done.returncode == 2
    assert "FEATURE_SERVICE_PORT" in done.stderr
    assert "port-70000" not in done.stderr

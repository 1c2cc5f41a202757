"""``python -m registry_gateway`` on the kit's service entry, as the stack starts it: with MLflow and
the feature-service down it serves (liveness SERVING) but is not ready (NOT_SERVING); SIGTERM drains
and exits 0; a bad variable exits 2 naming it, not its value."""

from __future__ import annotations

from pathlib import Path

from creditrisk_kit import LIVENESS_SERVICE
from creditrisk_testing.entrypoints import (
    NOT_SERVING,
    SERVING,
    ServiceProcess,
    free_port,
    run_to_exit,
    service_environment,
    wait_for_health,
)
from registry_gateway.__main__ import SPEC
from registry_gateway.servicer import SERVICE_NAME
from registry_gateway.settings import Settings

PREFIX = "REGISTRY_GATEWAY_"


def test_spec_names_the_service_and_its_settings() -> None:
    assert SPEC.name == "registry-gateway"
    assert SPEC.settings is Settings


def test_serves_not_ready_without_dependencies_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = service_environment(
        PREFIX,
        REGISTRY_GATEWAY_HOST="127.0.0.1",
        REGISTRY_GATEWAY_PORT=str(port),
        REGISTRY_GATEWAY_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
        REGISTRY_GATEWAY_FEATURE_SERVICE_ADDRESS=f"127.0.0.1:{free_port()}",
        REGISTRY_GATEWAY_AUDIT_DB_URL=f"sqlite:///{tmp_path / 'audit.db'}",
        REGISTRY_GATEWAY_CACHE_DIR=str(tmp_path / "cache"),
        REGISTRY_GATEWAY_HEALTH_CHECK_INTERVAL_S="0.2",
        REGISTRY_GATEWAY_GRACE_PERIOD_S="1",
    )
    target = f"127.0.0.1:{port}"
    with ServiceProcess("registry_gateway", env) as service:
        wait_for_health(target, LIVENESS_SERVICE, SERVING, 120)
        wait_for_health(target, SERVICE_NAME, NOT_SERVING, 10)
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr
    assert (tmp_path / "audit.db").exists()  # migrated by the build


def test_bad_variable_exits_2_naming_it() -> None:
    done = run_to_exit(
        "registry_gateway", service_environment(PREFIX, REGISTRY_GATEWAY_MLFLOW_TRACKING_URI="file:///secret")
    )
    assert done.returncode == 2
    assert "REGISTRY_GATEWAY_MLFLOW_TRACKING_URI" in done.stderr
    assert "file:///secret" not in done.stderr

"""``python -m training_service`` on the kit's service entry, as the stack starts it: the process
serves (liveness SERVING) while its dependencies are down (readiness NOT_SERVING), and SIGTERM ends
it with status 0; a bad variable ends it with status 2, naming the variable and not its value."""

from __future__ import annotations

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
from training_service.__main__ import SPEC
from training_service.servicer import SERVICE_NAME
from training_service.settings import TrainingServiceSettings

PREFIX = "TRAINING_SERVICE_"


def test_spec_names_the_service_and_its_settings() -> None:
    assert SPEC.name == "training-service"
    assert SPEC.settings is TrainingServiceSettings


def test_serves_not_ready_without_dependencies_and_exits_0_on_sigterm() -> None:
    target = f"127.0.0.1:{free_port()}"
    env = service_environment(
        PREFIX,
        TRAINING_SERVICE_HOST="127.0.0.1",
        TRAINING_SERVICE_PORT=target.rsplit(":", 1)[1],
        TRAINING_SERVICE_FEATURE_SERVICE_ADDRESS=f"127.0.0.1:{free_port()}",
        TRAINING_SERVICE_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
        TRAINING_SERVICE_HEALTH_CHECK_INTERVAL_S="0.2",
        TRAINING_SERVICE_GRACE_PERIOD_S="2",
    )
    with ServiceProcess("training_service", env) as service:
        wait_for_health(target, LIVENESS_SERVICE, SERVING, 120)
        wait_for_health(target, SERVICE_NAME, NOT_SERVING, 10)
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr


def test_bad_variable_exits_2_naming_it() -> None:
    done = run_to_exit(
        "training_service", service_environment(PREFIX, TRAINING_SERVICE_MLFLOW_TRACKING_URI="ftp://nowhere")
    )
    assert done.returncode == 2
    assert "TRAINING_SERVICE_MLFLOW_TRACKING_URI" in done.stderr
    assert "ftp://nowhere" not in done.stderr

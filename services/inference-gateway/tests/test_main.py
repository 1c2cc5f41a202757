"""``python -m inference_gateway`` on the kit's service entry, as the stack starts it: gRPC and the
REST server (the kit's extra HTTP server) both serve while the backends are down (liveness
SERVING, ``/livez`` 200, readiness NOT_SERVING and ``/readyz`` 503); SIGTERM drains both and exits
0, after which REST refuses connections; a bad variable exits 2 naming it, not its value."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
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
from inference_gateway.__main__ import SPEC
from inference_gateway.servicer import SERVICE_NAME
from inference_gateway.settings import GatewaySettings

PREFIX = "INFERENCE_GATEWAY_"


def test_spec_names_the_service_and_its_settings() -> None:
    assert SPEC.name == "inference-gateway"
    assert SPEC.settings is GatewaySettings


def test_grpc_and_rest_serve_then_drain_on_sigterm(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()

    def down() -> str:
        return f"127.0.0.1:{free_port()}"

    env = service_environment(
        PREFIX,
        INFERENCE_GATEWAY_HOST="127.0.0.1",
        INFERENCE_GATEWAY_PORT=str(grpc_port),
        INFERENCE_GATEWAY_HTTP_HOST="127.0.0.1",
        INFERENCE_GATEWAY_HTTP_PORT=str(http_port),
        INFERENCE_GATEWAY_FEATURE_SERVICE_TARGET=down(),
        INFERENCE_GATEWAY_REGISTRY_TARGET=down(),
        INFERENCE_GATEWAY_DRIFT_SERVICE_TARGET=down(),
        INFERENCE_GATEWAY_CHAMPION_URL=f"http://{down()}",
        INFERENCE_GATEWAY_BUFFER_PATH=str(tmp_path / "buffer.sqlite3"),
        INFERENCE_GATEWAY_HEALTH_CHECK_INTERVAL_S="0.2",
        INFERENCE_GATEWAY_GRACE_PERIOD_S="1",
    )
    target = f"127.0.0.1:{grpc_port}"
    rest = f"http://127.0.0.1:{http_port}"
    with ServiceProcess("inference_gateway", env) as service:
        wait_for_health(target, LIVENESS_SERVICE, SERVING, 120)
        wait_for_health(target, SERVICE_NAME, NOT_SERVING, 10)
        assert httpx.get(f"{rest}/livez", timeout=5).status_code == 200
        ready = httpx.get(f"{rest}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{rest}/livez", timeout=5)


def test_bad_variable_exits_2_naming_it() -> None:
    done = run_to_exit("inference_gateway", service_environment(PREFIX, INFERENCE_GATEWAY_CANARY_SHARE="7.5"))
    assert done.returncode == 2
    assert "INFERENCE_GATEWAY_CANARY_SHARE" in done.stderr
    assert "7.5" not in done.stderr

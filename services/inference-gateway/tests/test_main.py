"""``python -m inference_gateway`` on the kit's service entry, as the stack starts it: gRPC and the
REST server (the kit's extra HTTP server) both serve while the backends are down (``/livez`` 200,
readiness NOT_SERVING and ``/readyz`` 503); SIGTERM drains both and exits 0, after which REST
refuses connections; a bad variable exits 2 naming it, not its value."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from creditrisk_kit import LIVENESS_SERVICE
from creditrisk_testing import entrypoints as ep
from inference_gateway.__main__ import SPEC
from inference_gateway.servicer import SERVICE_NAME
from inference_gateway.settings import GatewaySettings


def test_spec_names_the_service_and_its_settings() -> None:
    assert (SPEC.name, SPEC.settings) == ("inference-gateway", GatewaySettings)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_grpc_and_rest_serve_then_drain_on_sigterm(tmp_path: Path) -> None:
    grpc_port, http_port = ep.free_port(), ep.free_port()
    env = ep.service_environment(
        "INFERENCE_GATEWAY_",
        port=grpc_port,
        http_host="127.0.0.1",
        http_port=str(http_port),
        feature_service_target=ep.unreachable(),
        registry_target=ep.unreachable(),
        drift_service_target=ep.unreachable(),
        champion_url=f"http://{ep.unreachable()}",
        buffer_path=str(tmp_path / "buffer.sqlite3"),
        auth_api_keys='{"main-test-key": {"subject": "test", "roles": ["predict"]}}',
    )
    target = f"127.0.0.1:{grpc_port}"
    rest = f"http://127.0.0.1:{http_port}"
    with ep.ServiceProcess("inference_gateway", env) as service:
        ep.wait_for_health(target, LIVENESS_SERVICE, ep.SERVING, 120)
        ep.wait_for_health(target, SERVICE_NAME, ep.NOT_SERVING, 10)
        assert httpx.get(f"{rest}/livez", timeout=5).status_code == 200
        ready = httpx.get(f"{rest}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        status, stderr = service.terminate()
    assert status == 0, stderr
    assert "drained" in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{rest}/livez", timeout=5)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_variable_exits_2_naming_it() -> None:
    ep.assert_bad_variable_exits_2("inference_gateway", "INFERENCE_GATEWAY_", "canary_share", "7.5")

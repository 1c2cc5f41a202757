"""Who may call a slot (issue 18; docs/security.md, "model-server"): the kit's credential check on
both runtimes' REST servers, every route taken from the runtime's own app (not listed here), each
called without a credential, with a wrong one and with a lower role on the running slots; the
probes public; every listener of both slots' process trees on loopback (``MODEL_SERVER_HOST``)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from typing import Any

import httpx
import psutil
import pytest
from creditrisk_kit.auth import PUBLIC
from creditrisk_kit.auth.http import check_routes
from mlserver.rest.app import create_app
from mlserver.settings import Settings as MLServerSettings
from model_server import access
from model_server.seldon_model import CreditRiskModel
from model_server.testing import fixtures as fx
from seldon_core.wrapper import get_rest_microservice

MODEL = "credit-risk"
NO_CREDENTIAL: dict[str, str] = {}
WRONG = {"authorization": f"Bearer {secrets.token_urlsafe(18)}"}
SELDON_BODY = {"jsonData": {"duration_in_month": 6, "credit_amount": 1169, "purpose": "radio/television"}}


def _seldon_routes() -> list[tuple[str, str, str]]:
    """(method, path, endpoint) of every route of seldon-core's Flask app with our user model."""
    app = get_rest_microservice(CreditRiskModel(), None)
    routes = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path, rule.endpoint))
    return routes


def _mlserver_routes() -> list[tuple[str, str, str]]:
    """(method, path, template) of every route of MLServer's REST app (its own factory)."""
    app = create_app(MLServerSettings(metrics_endpoint=None), data_plane=None, model_repository_handlers=None)
    routes = []
    for route in app.routes:
        path = route.path.replace("{model_name}", MODEL).replace("{model_version}", "1")
        for method in sorted((getattr(route, "methods", None) or set()) - {"HEAD"}):
            routes.append((method, path, route.path))
    return routes


def _seldon_requirement(endpoint: str) -> Any:
    return access.SELDON_POLICY.get(endpoint)


def _mlserver_requirement(method: str, template: str) -> Any:
    if template in access.MLSERVER_PUBLIC_PATHS:
        return PUBLIC
    return access.MLSERVER_POLICY.get(f"{method} {template}", access.MLSERVER_POLICY.get(template))


def test_every_route_of_both_runtimes_has_a_policy() -> None:
    """Default deny is checked at start for MLServer (check_routes); a seldon-core route without
    an entry is refused to everyone; both policies name every route the runtimes have."""
    missing = [endpoint for _m, _p, endpoint in _seldon_routes() if endpoint not in access.SELDON_POLICY]
    assert missing == []
    app = create_app(MLServerSettings(metrics_endpoint=None), data_plane=None, model_repository_handlers=None)
    check_routes(app, access.MLSERVER_POLICY, access.MLSERVER_PUBLIC_PATHS)
    assert {"/api/v1.0/predictions", "/predict"} <= {p for _m, p, _e in _seldon_routes()}
    assert f"/v2/models/{MODEL}/infer" in {p for _m, p, _t in _mlserver_routes()}


def _refusals(url: str, routes: list[tuple[str, str, Any]]) -> dict[str, int]:
    counts = {"routes": 0, "no_credential": 0, "wrong": 0, "lower": 0}
    # a new connection per call: a refused call leaves its body unread, and a kept-alive connection
    # to seldon-core's gunicorn then hung now and then (two full runs out of four, ReadTimeout)
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, timeout=30, limits=limits, headers={"connection": "close"}) as http:
        for method, path, requirement in routes:
            if requirement == PUBLIC:
                continue
            counts["routes"] += 1
            for name, headers, status in (
                ("no_credential", NO_CREDENTIAL, 401),
                ("wrong", WRONG, 401),
                ("lower", fx.auth_headers("lower"), 403),
            ):
                answer = http.request(method, path, headers=headers, json={})
                assert answer.status_code == status, (method, path, name, answer.text)
                error = answer.json()["error"]
                assert error["status"] == ("UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED")
                assert fx.API_KEYS["lower"] not in answer.text
                assert WRONG["authorization"][7:] not in answer.text
                if status == 401:
                    assert answer.headers["www-authenticate"].startswith("Bearer")
                counts[name] += 1
    return counts


def test_seldon_refuses_every_protected_route(stack: Any) -> None:
    routes = [(m, p, _seldon_requirement(e)) for m, p, e in _seldon_routes()]
    counts = _refusals(stack.seldon_http, routes)
    protected = counts["routes"]
    assert protected >= 14  # predictions (3), feedback (3), transform / route / aggregate, metadata ...
    assert counts == {"routes": protected, "no_credential": protected, "wrong": protected, "lower": protected}


def test_seldon_feedback_needs_admin_on_rest_as_on_grpc(stack: Any) -> None:
    """Feedback moves seldon-core's reward metric and nothing of the platform sends it: the
    predict key (the gateway's) is refused on every feedback route; admin passes the check."""
    feedback = [path for method, path, _ in _seldon_routes() if method == "POST" and "feedback" in path]
    assert feedback, "seldon-core's feedback routes"
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per call, as _refusals
    with httpx.Client(
        base_url=stack.seldon_http, timeout=30, limits=limits, headers={"connection": "close"}
    ) as http:
        for path in feedback:
            refused = http.post(path, json={}, headers=fx.auth_headers("predict"))
            assert refused.status_code == 403, (path, refused.text)
            assert "admin" in refused.json()["error"]["message"]
            admitted = http.post(path, json={}, headers=fx.auth_headers("admin"))
            assert admitted.status_code not in (401, 403), (path, admitted.text)


def test_mlserver_refuses_every_protected_route(stack: Any) -> None:
    routes = [(m, p, _mlserver_requirement(m, t)) for m, p, t in _mlserver_routes()]
    counts = _refusals(stack.mlserver_http, routes)
    protected = counts["routes"]
    # infer / generate / streams (8), metadata (2), model docs (4), /v2, repository (3)
    assert protected >= 15
    assert counts == {"routes": protected, "no_credential": protected, "wrong": protected, "lower": protected}
    # the repository API (load / unload a model) needs admin, not predict
    unload = httpx.post(
        f"{stack.mlserver_http}/v2/repository/models/{MODEL}/unload", headers=fx.auth_headers(), timeout=30
    )
    assert unload.status_code == 403, unload.text
    assert "admin" in unload.json()["error"]["message"]


def test_the_predict_role_scores_on_both_runtimes(stack: Any, inproc_v1: Any) -> None:
    from model_server.testing.clients import v2_json

    seldon = httpx.post(
        f"{stack.seldon_http}/api/v1.0/predictions", json=SELDON_BODY, headers=fx.auth_headers(), timeout=30
    )
    assert seldon.status_code == 200, seldon.text
    assert seldon.json()["meta"]["tags"]["model_version"] == stack.versions["lr"]
    admin = httpx.post(
        f"{stack.seldon_http}/api/v1.0/predictions",
        json=SELDON_BODY,
        headers=fx.auth_headers("admin"),
        timeout=30,
    )
    assert admin.status_code == 200, admin.text  # admin implies predict
    v2 = httpx.post(
        f"{stack.mlserver_http}/v2/models/{MODEL}/infer",
        json=v2_json([stack.records[0]], inproc_v1.signature),
        headers=fx.auth_headers(),
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == stack.versions["lr"]


@pytest.mark.parametrize(
    ("runtime", "path"),
    [
        ("seldon", "/health/ready"),
        ("seldon", "/health/ping"),
        ("seldon", "/health/status"),
        ("mlserver", "/v2/health/live"),
        ("mlserver", "/v2/health/ready"),
        ("mlserver", f"/v2/models/{MODEL}/ready"),
    ],
)
def test_probes_are_public(stack: Any, runtime: str, path: str) -> None:
    url = stack.seldon_http if runtime == "seldon" else stack.mlserver_http
    answer = httpx.get(f"{url}{path}", timeout=30)
    assert answer.status_code == 200, answer.text


def _listeners(pid: int) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket of ``pid``'s process tree."""
    root = psutil.Process(pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [(c.laddr.ip, c.laddr.port, proc.pid) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


@pytest.mark.parametrize("runtime", ["seldon", "mlserver"])
def test_every_listener_of_a_slot_is_on_loopback(stack: Any, runtime: str) -> None:
    pid = stack.seldon_pid if runtime == "seldon" else stack.mlserver_pid
    listeners = _listeners(pid)
    ports = {int(url.rsplit(":", 1)[1]) for url in _urls(stack, runtime)}
    assert ports <= {port for _a, port, _p in listeners}, (ports, listeners)  # REST, gRPC and metrics
    # every one on loopback (gRPC's listener shows as the IPv4-mapped ::ffff:127.0.0.1)
    assert [entry for entry in listeners if not _loopback(entry[0])] == []


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def _urls(stack: Any, runtime: str) -> list[str]:
    if runtime == "seldon":
        return [stack.seldon_http, stack.seldon_grpc, stack.seldon_metrics]
    return [stack.mlserver_http, stack.mlserver_grpc, stack.mlserver_metrics]

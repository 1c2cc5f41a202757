"""Who may call a slot: the kit's credential check (:mod:`creditrisk_kit.auth`) on both runtimes'
REST servers, through each runtime's own extension point (docs/security.md, "model-server").

* **seldon-core** (Flask app): :func:`check_seldon_request`, registered as a ``before_app_request``
  hook of the blueprint seldon-core registers from the user model
  (``CreditRiskModel.model_error_handler``), runs before every route; the route is found by its
  Flask endpoint in :data:`SELDON_POLICY`.
* **MLServer** (FastAPI app): the kit's ASGI :class:`~creditrisk_kit.auth.http.AuthMiddleware`
  with :data:`MLSERVER_POLICY`, added by :mod:`model_server.launch` before the server starts,
  and :func:`~creditrisk_kit.auth.http.check_routes` at start (default deny).

Roles: scoring and the model's metadata need ``predict``; MLServer's repository API (load, unload,
index) needs ``admin``; the probes (``/health/ready``, ``/health/ping``, ``/health/status``,
``/v2/health/*``, ``/v2/models/<m>/ready``) and the API descriptions are public. A route without
an entry is refused to everyone (403 after authentication). Refusals are the kit's: 401 with
``WWW-Authenticate: Bearer`` (no, malformed or unknown credential, invalid JWT) or 403 (role
missing), a JSON body ``{"error": {"code", "status", "message"}}`` naming what is wrong, never the
credential.

The gRPC ports of both runtimes check the same credential with interceptors
(:mod:`model_server.grpc_access`). Not covered by a credential: the metrics ports (Prometheus
scrapes them). They bind ``MODEL_SERVER_HOST`` like the REST port (loopback by default).
"""

from __future__ import annotations

import threading
from typing import Any

from creditrisk_kit import ServiceSettings
from creditrisk_kit.auth import PUBLIC, Authenticator, Requirement, Role, http_refusal
from creditrisk_kit.auth.http import DEFAULT_PUBLIC_PATHS
from creditrisk_kit.errors import PermissionDenied, ServiceError, Unauthenticated
from pydantic_settings import SettingsConfigDict


class AccessSettings(ServiceSettings):
    """The kit's settings under ``MODEL_SERVER_`` (of which the credential check reads
    ``auth_*``): the same variables as :class:`model_server.settings.Settings`, without the slot's
    required ones, so a Flask app built in a test process checks credentials the same way."""

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVER_", extra="ignore")


SELDON_POLICY: dict[str, Requirement] = {
    # seldon-core's routes (seldon_core.wrapper.get_rest_microservice), by Flask endpoint
    "Predict": Role.PREDICT,
    # feedback moves seldon-core's reward metric; nothing of the platform sends it (as on gRPC)
    "SendFeedback": Role.ADMIN,
    "TransformInput": Role.PREDICT,
    "TransformOutput": Role.PREDICT,
    "Route": Role.PREDICT,
    "Aggregate": Role.PREDICT,
    "Metadata": Role.PREDICT,
    "HealthPing": PUBLIC,
    "HealthStatus": PUBLIC,
    "openAPI": PUBLIC,
    "static": PUBLIC,  # seldon-core's packaged static files (its API description)
    # ours (model_server.seldon_model.model_error_handler)
    "model_server._ready": PUBLIC,
}
"""Flask endpoint -> what it needs, for the seldon-core runtime."""

_MODEL = "/v2/models/{model_name}"
_VERSION = "/v2/models/{model_name}/versions/{model_version}"
MLSERVER_PUBLIC_PATHS = DEFAULT_PUBLIC_PATHS | {
    f"{_MODEL}/ready",
    f"{_VERSION}/ready",
    "/v2/docs",
    "/v2/docs/dataplane.json",
}
"""MLServer routes anyone may call: the kit's probes and API documents, the model's readiness and
the server's data-plane description."""

MLSERVER_POLICY: dict[str, Requirement] = {
    **{
        f"POST {base}/{verb}": Role.PREDICT
        for base in (_MODEL, _VERSION)
        for verb in ("infer", "generate", "infer_stream", "generate_stream")
    },
    f"GET {_MODEL}": Role.PREDICT,
    f"GET {_VERSION}": Role.PREDICT,
    f"GET {_MODEL}/docs": Role.PREDICT,
    f"GET {_MODEL}/docs/dataplane.json": Role.PREDICT,
    f"GET {_VERSION}/docs": Role.PREDICT,
    f"GET {_VERSION}/docs/dataplane.json": Role.PREDICT,
    "GET /v2": Role.PREDICT,
    "POST /v2/repository/index": Role.ADMIN,
    "POST /v2/repository/models/{model_name}/load": Role.ADMIN,
    "POST /v2/repository/models/{model_name}/unload": Role.ADMIN,
}
"""``[METHOD ]/route template`` -> what it needs, for MLServer's REST app (1.7)."""

_LOCK = threading.Lock()
_AUTHENTICATOR: Authenticator | None = None


def authenticator(settings: ServiceSettings | None = None) -> Authenticator:
    """This process's authenticator, made once from ``settings`` (a serving process passes the
    slot's at load; default: the environment's ``MODEL_SERVER_AUTH_*``, :class:`AccessSettings`,
    which the launcher validated before the runtime started).

    Raises:
        pydantic.ValidationError: a ``MODEL_SERVER_*`` variable is invalid (the launcher exits 2
            on it before any runtime starts).
        AuthConfigurationError: No credential source and not ``MODEL_SERVER_AUTH_DISABLED``, or
            a key / JWKS file that cannot be read (the launcher checks this before it starts the
            runtime, and exits with status 2).
    """
    global _AUTHENTICATOR
    with _LOCK:
        if _AUTHENTICATOR is None:
            _AUTHENTICATOR = Authenticator.from_settings(settings or AccessSettings())
        return _AUTHENTICATOR


def check_seldon_request() -> Any:
    """Flask ``before_app_request`` hook of the seldon-core runtime: None lets the request through,
    a response refuses it (see the module docstring)."""
    from flask import Response
    from flask import request as flask_request

    if flask_request.url_rule is None:  # no route: seldon-core's 404 / 405
        return None
    endpoint = flask_request.endpoint or ""
    requirement = SELDON_POLICY.get(endpoint)
    if requirement == PUBLIC:
        return None
    action = f"{flask_request.method} {flask_request.url_rule.rule}"
    checker = authenticator()
    principal = None
    try:
        principal = checker.authenticate(flask_request.headers.get("authorization"), action)
        if not isinstance(requirement, Role):
            raise PermissionDenied(f"{action} has no access policy (default deny)")
        principal.require(requirement, action)
    except (Unauthenticated, PermissionDenied) as exc:
        checker.record_refusal(action, principal, exc)  # counted and logged, as on gRPC
        status, headers, body = http_refusal(exc)
        return Response(body, status=status, headers=[h for h in headers if h[0] != "content-length"])
    except ServiceError as exc:
        status, headers, body = http_refusal(exc)  # the kit's refusal, as every HTTP server's
        return Response(body, status=status, headers=[h for h in headers if h[0] != "content-length"])
    return None

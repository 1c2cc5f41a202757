"""HTTP (ASGI) side: :class:`AuthMiddleware`, the same :class:`Authenticator` and the same roles
for a Starlette / FastAPI app (needs ``starlette``, the kit's ``http`` extra).

Usage::

    app.add_middleware(
        AuthMiddleware,
        authenticator=Authenticator.from_settings(settings),
        policy={"POST /v1/predict": Role.PREDICT, "/v1/models/{name}": Role.READ_REGISTRY},
    )
    check_routes(app, policy)        # at start: every route has an entry (default deny)

* A policy key is a route's path template (as declared, ``/v1/models/{name}``), optionally
  preceded by an HTTP method (``POST /v1/predict``, which wins over the bare path; HEAD follows
  GET).
* :data:`DEFAULT_PUBLIC_PATHS` (health, readiness, liveness, the OpenAPI document and the docs
  pages) need nothing; give ``public_paths=`` to change the set.
* A request matching no route passes through (the app answers 404). A route without an entry is
  refused to everyone, after authentication (401 without a valid credential, else 403).
* A refusal is JSON ``{"error": {"code": 16|7, "status": "UNAUTHENTICATED"|"PERMISSION_DENIED",
  "message": ...}}`` with status 401 (and ``WWW-Authenticate: Bearer``) or 403; the message says
  what is wrong, never the credential. JWKS unavailable: 503.
* While the app handles the request, :func:`~creditrisk_kit.auth.current_principal` is the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import Match

from ..errors import ServiceError
from .authenticator import Authenticator, http_refusal
from .principal import PUBLIC, Requirement, reset_current_principal, set_current_principal

DEFAULT_PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/healthz",
        "/livez",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)
"""Paths (route templates) public by default: probes, the OpenAPI document and its viewers."""


def _routes(app: Any) -> list[Any]:
    router = getattr(app, "router", app)
    return list(getattr(router, "routes", []) or [])


def check_routes(
    app: Any, policy: Mapping[str, Requirement], public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS
) -> None:
    """Check that every route of ``app`` has a policy entry (or is public).

    Raises:
        ValueError: naming the routes without an entry.
    """
    public = set(public_paths)
    missing = []
    for route in _routes(app):
        path = getattr(route, "path", None)
        if path is None or path in public or path in policy:
            continue
        methods = sorted(set(getattr(route, "methods", None) or []) - {"HEAD"})  # HEAD follows GET
        if not methods or any(f"{method} {path}" not in policy for method in methods):
            missing.append(f"{'|'.join(methods) or '*'} {path}")
    if missing:
        raise ValueError(f"no access policy for route(s) {', '.join(missing)} (default deny)")


class AuthMiddleware:
    """Pure ASGI middleware (see the module docstring).

    Args:
        app: The wrapped ASGI app.
        authenticator: Credentials -> principals.
        policy: ``{"[METHOD ]/path/template": Role | PUBLIC}``.
        public_paths: Route templates needing nothing.
    """

    def __init__(
        self,
        app: Any,
        *,
        authenticator: Authenticator,
        policy: Mapping[str, Requirement],
        public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = dict(policy)
        self.public = frozenset(public_paths)

    def _template(self, scope: dict[str, Any]) -> str | None:
        for route in _routes(scope.get("app", self.app)):
            match, _child = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", "")) or None
        return None

    def _requirement(self, method: str, template: str) -> Requirement | None:
        if template in self.public:
            return PUBLIC
        found = self.policy.get(f"{'GET' if method == 'HEAD' else method} {template}")
        return found if found is not None else self.policy.get(template)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        template = self._template(scope)
        if template is None:  # no route: the app's 404
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        requirement = self._requirement(method, template)
        if requirement == PUBLIC:
            await self.app(scope, receive, send)
            return
        header = next((value for key, value in scope.get("headers", ()) if key == b"authorization"), None)
        try:
            principal = await self.authenticator.check(header, requirement, f"{method} {template}")
        except ServiceError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": exc.message})
            else:
                await _refuse(send, exc)
            return
        token = set_current_principal(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_current_principal(token)


async def _refuse(send: Any, exc: ServiceError) -> None:
    status, pairs, body = http_refusal(exc)
    headers = [(name.encode(), value.encode()) for name, value in pairs]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

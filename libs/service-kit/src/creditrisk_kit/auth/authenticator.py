"""The one authenticator of the platform: an ``authorization: Bearer <credential>`` header ->
:class:`~creditrisk_kit.auth.Principal`, then the role check of a method or route."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import cast

from ..errors import PermissionDenied, ServiceError, Unauthenticated
from ..log_throttle import OVERFLOW_KEY, LogThrottle
from ..metrics import AUTH_REFUSALS
from ..settings import ServiceSettings
from .jwt import JwtVerifier
from .keys import ApiKeyEntry, ApiKeys, CredentialSource, parse_api_keys
from .principal import PUBLIC, Principal, Requirement, Role

_LOGGER = logging.getLogger(__name__)
#: The refusal log (the access logs' refusals): method, outcome, reason, the subject when known (a
#: role missing); never the credential (the reasons never echo it). At most
#: :data:`~creditrisk_kit.log_throttle.DEFAULT_BURST` lines per (subject, outcome, reason) a minute,
#: then one line with the number suppressed (:class:`~creditrisk_kit.log_throttle.LogThrottle`);
#: ``auth_refusals_total`` counts every refusal.
REFUSAL_LOGGER = logging.getLogger("creditrisk_kit.auth.refusals")
REFUSAL_LOG_THROTTLE = LogThrottle()
"""The process's refusal-log budget, shared by its authenticators (one logger)."""

ANONYMOUS = Principal("anonymous", frozenset({Role.ADMIN}), via="auth_disabled")
"""The principal of every call when authentication is disabled (``auth_disabled``)."""

MISSING_MESSAGE = "missing credential: send 'authorization: Bearer <API key or JWT>'"


class AuthConfigurationError(ValueError):
    """No credential source configured (and authentication not disabled), or one that cannot be
    read; the service exits with status 2 naming the settings."""


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def bearer_token(header: str | bytes | None) -> str:
    """The credential of an ``authorization`` value.

    Raises:
        Unauthenticated: missing, or not ``Bearer <credential>`` (the value is not echoed).
    """
    if header is None:
        raise Unauthenticated(MISSING_MESSAGE)
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed 'authorization' header: expected 'Bearer <credential>'")
    return token.strip()


class Authenticator:
    """API keys and / or JWTs -> principals; role checks.

    Args:
        api_keys: Known API keys (None: none).
        jwt: The JWT verifier (None: JWTs are not accepted).
        disabled: Accept every call as :data:`ANONYMOUS` (an explicit opt-out).
        refusal_log: The budget of the refusal log's lines; default the process's
            (:data:`REFUSAL_LOG_THROTTLE`).

    Raises:
        AuthConfigurationError: Neither a source nor ``disabled``.
    """

    def __init__(
        self,
        api_keys: ApiKeys | None = None,
        jwt: JwtVerifier | None = None,
        *,
        disabled: bool = False,
        refusal_log: LogThrottle | None = None,
    ) -> None:
        if not disabled and api_keys is None and jwt is None:
            raise AuthConfigurationError("no credential source: API keys or a JWKS are needed")
        self.api_keys = api_keys
        self.jwt = jwt
        self.disabled = disabled
        self.refusal_log = refusal_log or REFUSAL_LOG_THROTTLE

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, extra_keys: Mapping[str, ApiKeyEntry] | None = None
    ) -> Authenticator:
        """The authenticator the settings describe (``auth_*``), plus ``extra_keys``.

        Raises:
            AuthConfigurationError: No source and not ``auth_disabled`` (naming the settings), or
                a key / JWKS file that cannot be read or parsed (naming it).
        """
        name = settings.env_name
        if settings.auth_disabled:
            _LOGGER.warning(
                "authentication DISABLED (%s=true): every caller is an anonymous admin", name("auth_disabled")
            )
            return cls(disabled=True)
        entries: dict[str, ApiKeyEntry] = dict(extra_keys or {})
        if settings.auth_jwks_file or settings.auth_jwks_url:
            missing = [name(f) for f in ("auth_jwt_issuer", "auth_jwt_audience") if not getattr(settings, f)]
            if missing:  # else any token the identity provider issued, for any application, is accepted
                raise AuthConfigurationError(
                    f"JWT verification needs {' and '.join(missing)}: without them a token the identity "
                    "provider issued to another application (or by another issuer in the JWKS) is accepted"
                )
        try:
            if settings.auth_api_keys is not None:
                entries.update(
                    parse_api_keys(settings.auth_api_keys.get_secret_value(), name("auth_api_keys"))
                )
            keys = (
                ApiKeys(entries, settings.auth_api_keys_file)
                if entries or settings.auth_api_keys_file
                else None
            )
            verifier = (
                JwtVerifier(
                    jwks_file=settings.auth_jwks_file,
                    jwks_url=settings.auth_jwks_url,
                    issuer=settings.auth_jwt_issuer,
                    audience=settings.auth_jwt_audience,
                    algorithms=settings.auth_jwt_algorithms,
                    roles_claim=settings.auth_jwt_roles_claim,
                    leeway_s=settings.auth_jwt_leeway_s,
                )
                if settings.auth_jwks_file or settings.auth_jwks_url
                else None
            )
        except (OSError, ValueError) as exc:
            raise AuthConfigurationError(f"cannot load the credentials: {exc}") from None
        if keys is None and verifier is None:
            sources = ", ".join(
                name(field)
                for field in ("auth_api_keys_file", "auth_api_keys", "auth_jwks_file", "auth_jwks_url")
            )
            disable = name("auth_disabled")
            raise AuthConfigurationError(
                f"no credential source: set one of {sources}, or {disable}=true (no authentication)"
            )
        _LOGGER.info(
            "authentication on: %s API key(s), JWT %s",
            len(keys) if keys else 0,
            "on" if verifier else "off",
        )
        return cls(keys, verifier)

    def authenticate(self, header: str | bytes | None, method: str = "") -> Principal:
        """The principal of an ``authorization`` header value (blocking when a JWKS URL must be
        fetched; use :meth:`authenticate_async` in an event loop).

        Raises:
            Unauthenticated: missing, malformed, unknown API key, or an invalid JWT (why named).
            Unavailable: the JWKS URL cannot be fetched.
        """
        if self.disabled:
            return Principal(ANONYMOUS.subject, ANONYMOUS.roles, method, ANONYMOUS.via)
        token = bearer_token(header)
        if self.jwt is not None and _looks_like_jwt(token):
            principal = self.jwt.verify(token)
        else:
            found = self.api_keys.lookup(token) if self.api_keys is not None else None
            if found is None:
                raise Unauthenticated(
                    "unknown API key" if self.api_keys is not None else "unknown credential"
                )
            principal = found
        return Principal(principal.subject, principal.roles, method, principal.via)

    async def authenticate_async(self, header: str | bytes | None, method: str = "") -> Principal:
        """:meth:`authenticate`, run in a thread only when it may fetch a JWKS over the network."""
        if self.jwt is not None and self.jwt.fetches and header and not self.disabled:
            return await asyncio.to_thread(self.authenticate, header, method)
        return self.authenticate(header, method)

    async def check(
        self, header: str | bytes | None, requirement: Requirement | None, method: str
    ) -> Principal | None:
        """Authenticate and authorize one call.

        Args:
            header: The ``authorization`` value (None: absent).
            requirement: What the method needs; None (no policy entry) refuses everyone.
            method: Named in the refusal and kept on the principal.

        Returns:
            The principal, or None for a :data:`PUBLIC` method (nothing checked).

        Raises:
            Unauthenticated: see :meth:`authenticate`.
            PermissionDenied: the principal lacks the role, or the method has no policy entry.

        Each refusal is counted (``auth_refusals_total{method, outcome}``) and logged on
        :data:`REFUSAL_LOGGER` within :attr:`refusal_log`'s budget.
        """
        if requirement == PUBLIC:
            return None
        principal: Principal | None = None
        try:
            principal = await self.authenticate_async(header, method)
            if not isinstance(requirement, Role):  # None: no policy entry
                raise PermissionDenied(f"{method} has no access policy (default deny)")
            principal.require(requirement, method)
        except (Unauthenticated, PermissionDenied) as exc:
            self.record_refusal(method, principal, exc)
            raise
        return principal

    def record_refusal(
        self, method: str, principal: Principal | None, error: Unauthenticated | PermissionDenied
    ) -> None:
        """Count and log one refusal as :meth:`check` does, for a server that calls
        :meth:`authenticate` itself (the drift-service's stdlib report server).

        Args:
            method: The RPC or route template refused (a metric label: never a raw path).
            principal: Who was refused, when authenticated (a role missing); None otherwise.
            error: The refusal.
        """
        _refused(self.refusal_log, method, principal, error)


def http_refusal(exc: ServiceError) -> tuple[int, list[tuple[str, str]], bytes]:
    """The HTTP answer of a refused call: ``(status, headers, body)``, the body JSON
    ``{"error": {"code", "status", "message"}}``, ``WWW-Authenticate: Bearer`` on a 401. Shared by
    the ASGI :class:`~creditrisk_kit.auth.http.AuthMiddleware` and servers that are not ASGI (the
    drift-service's stdlib report server)."""
    status = exc.http_status_code()
    code = exc.grpc_status_code()
    error = {"code": code.value[0], "status": code.name, "message": exc.message}
    body = json.dumps({"error": error}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if status == 401:
        headers.append(("www-authenticate", 'Bearer realm="creditrisk"'))
    return status, headers, body


def _refused(
    throttle: LogThrottle,
    method: str,
    principal: Principal | None,
    error: Unauthenticated | PermissionDenied,
) -> None:
    outcome = error.grpc_status_code().name
    subject = principal.subject if principal is not None else "unauthenticated"
    AUTH_REFUSALS.labels(method, outcome).inc()
    decision = throttle.admit((subject, outcome, error.message))
    for key, suppressed in decision.summaries:
        overflow = ("*", "*", "other subjects and reasons")
        who, what, why = overflow if key == OVERFLOW_KEY else cast(tuple[str, str, str], key)
        REFUSAL_LOGGER.warning(
            "suppressed %d more refusals (%s) for %s: %s, within %g s",
            suppressed,
            what,
            who,
            why,
            throttle.interval_s,
            extra={
                "outcome": what,
                "subject": who,
                "reason": why,
                "suppressed": suppressed,
                "interval_s": throttle.interval_s,
            },
        )
    if decision.log:
        REFUSAL_LOGGER.warning(
            "%s refused (%s) for %s: %s",
            method,
            outcome,
            subject,
            error.message,
            extra={"method": method, "outcome": outcome, "subject": subject, "reason": error.message},
        )


def outgoing_credential(settings: ServiceSettings) -> CredentialSource:
    """The service's own credential (``credential`` / ``credential_file``) as a source to call.

    Raises:
        AuthConfigurationError: The credential file cannot be read.
    """
    value = settings.credential.get_secret_value() if settings.credential is not None else ""
    try:
        return CredentialSource(value, settings.credential_file)
    except OSError as exc:
        raise AuthConfigurationError(
            f"{settings.env_name('credential_file')}: cannot read ({type(exc).__name__})"
        ) from None

"""Identity on every call: who calls (:class:`Principal`) and what they may do (:class:`Role`),
for gRPC (:class:`AuthInterceptor`, wired by ``Service(auth=MethodPolicy(...))``) and HTTP
(:class:`creditrisk_kit.auth.http.AuthMiddleware`, imported on demand: needs ``starlette``).

Credentials, in the ``authorization: Bearer <credential>`` header / metadata:

* **API keys**: JSON ``{"<key>": {"subject": "feature-service", "roles": ["read_features"]}}``
  from ``<PREFIX>_AUTH_API_KEYS_FILE`` (re-read when the file changes: rotation without a
  restart) and / or ``<PREFIX>_AUTH_API_KEYS``; kept as SHA-256 digests and compared with
  ``hmac.compare_digest`` against every known digest (:mod:`~creditrisk_kit.auth.keys`).
* **JWTs** (a credential ``eyJ….….…``): verified with PyJWT against a JWKS from
  ``<PREFIX>_AUTH_JWKS_FILE`` (re-read on change) or ``<PREFIX>_AUTH_JWKS_URL`` (cached, fetched
  again on an unknown ``kid``), with ``<PREFIX>_AUTH_JWT_ISSUER`` / ``_AUDIENCE`` (both required
  with a JWKS: :class:`AuthConfigurationError` naming the missing one) / ``_ALGORITHMS``
  (default RS256, ES256, EdDSA; ``none`` and ``HS*`` refused) and the roles from
  ``<PREFIX>_AUTH_JWT_ROLES_CLAIM`` (default ``roles``); ``sub`` is the subject, ``exp`` required,
  ``exp`` / ``nbf`` checked with a 30 s leeway (:mod:`~creditrisk_kit.auth.jwt`).
* ``<PREFIX>_AUTH_DISABLED=true``: no check, every caller the anonymous admin (tests, a laptop;
  a warning at start). Without a source and not disabled, a service that wires auth exits with
  status 2 naming these settings (:class:`AuthConfigurationError`).

Refusals: no or malformed header, unknown key, invalid JWT -> UNAUTHENTICATED / 401, the message
naming what is wrong (missing, malformed, unknown API key, expired, bad signature, wrong
audience, ...) and never the credential; a role missing or a method without a policy entry ->
PERMISSION_DENIED / 403. Credentials are never logged.

Roles (:class:`Role`) are permissions: ``predict, read_features, write_features, train,
read_registry, register, promote, admin, read_monitoring, log_predictions, write_labels,
read_artifacts``; ``admin`` implies every one. A principal holds a set of them.

**gRPC, default deny.** ``Service(auth=MethodPolicy.for_service(NAME, {"Method": Role.X, ...}))``:
the runner checks at start that every method of every served service (from the descriptor pool)
has an entry, and refuses to start otherwise, naming the method; health and reflection are
always public (:data:`PUBLIC` marks any other public method). The interceptor checks each call
before the servicer runs and makes the principal the current one (:func:`current_principal`,
for the audit's "who").

**Outgoing identity.** ``<PREFIX>_CREDENTIAL`` / ``<PREFIX>_CREDENTIAL_FILE`` (re-read on change):
the credential the service presents on every call it makes. :func:`outgoing_credential` gives a
:class:`CredentialSource`; :func:`bearer_interceptors` (``grpc.aio``) and
:class:`BearerInterceptor` (sync) send it.

**HTTP.** :class:`creditrisk_kit.auth.http.AuthMiddleware` with a per-route policy
``{"[METHOD ]/path/template": Role | PUBLIC}`` and :func:`creditrisk_kit.auth.http.check_routes`
(default deny at start); probes and the OpenAPI document are public. See that module.
"""

from .authenticator import (
    ANONYMOUS,
    AuthConfigurationError,
    Authenticator,
    bearer_token,
    http_refusal,
    outgoing_credential,
)
from .grpc import AuthInterceptor, BearerInterceptor, CredentialProvider, bearer_interceptors
from .jwt import DEFAULT_ALGORITHMS, JwtVerifier, parse_jwks, roles_from_claims
from .keys import ApiKeyEntry, ApiKeys, CredentialSource, parse_api_keys
from .principal import (
    ALWAYS_PUBLIC_SERVICES,
    PUBLIC,
    MethodPolicy,
    Principal,
    Requirement,
    Role,
    current_principal,
    reset_current_principal,
    service_methods,
    set_current_principal,
)

__all__ = [
    "ALWAYS_PUBLIC_SERVICES",
    "ANONYMOUS",
    "DEFAULT_ALGORITHMS",
    "PUBLIC",
    "ApiKeyEntry",
    "ApiKeys",
    "AuthConfigurationError",
    "AuthInterceptor",
    "Authenticator",
    "BearerInterceptor",
    "CredentialProvider",
    "CredentialSource",
    "JwtVerifier",
    "MethodPolicy",
    "Principal",
    "Requirement",
    "Role",
    "bearer_interceptors",
    "bearer_token",
    "current_principal",
    "http_refusal",
    "outgoing_credential",
    "parse_api_keys",
    "parse_jwks",
    "reset_current_principal",
    "roles_from_claims",
    "service_methods",
    "set_current_principal",
]

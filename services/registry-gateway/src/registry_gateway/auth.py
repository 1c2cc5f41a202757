"""Access control of the registry-gateway, on the kit's one implementation
(:mod:`creditrisk_kit.auth`): the per-method :data:`POLICY` (enforced by the kit's interceptor
before a servicer method runs), the legacy ``REGISTRY_GATEWAY_TOKENS`` mapped to kit API keys,
and the audit record's role.

Roles: reads (list, get, evaluate, watch, audit) need ``read_registry``; ``RegisterModelVersion``
needs ``register``; ``SetAlias`` and ``PromoteModelVersion`` need ``promote`` (a forced promotion
``admin``); ``DeleteAlias`` and ``RollbackChampion`` need ``admin``. The core checks the same
roles again (:meth:`Principal.require`), so a call that reaches it by another path is refused too.

``REGISTRY_GATEWAY_TOKENS`` (``{token: {subject, role}}``, roles viewer < promoter < admin) still
works: viewer -> ``read_registry``; promoter -> ``read_registry``, ``register``, ``promote``;
admin -> ``admin``. It is deprecated (a warning at start, :func:`legacy_keys`): new deployments,
and the local stack (deploy/stack/local.toml), use the kit's ``REGISTRY_GATEWAY_AUTH_API_KEYS_FILE``
(re-read on change) / JWKS with kit roles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_kit import Unauthenticated
from creditrisk_kit.auth import ApiKeyEntry, MethodPolicy, Principal, Role, current_principal

from registry_gateway.settings import Settings, TokenEntry

_LOGGER = logging.getLogger("registry_gateway.auth")

SERVICE_NAME = "creditrisk.registry.v1.ModelRegistryService"

Caller = Principal
"""An authenticated caller (the kit's principal)."""

POLICY = MethodPolicy.for_service(
    SERVICE_NAME,
    {
        "RegisterModelVersion": Role.REGISTER,
        "ListRegisteredModels": Role.READ_REGISTRY,
        "ListModelVersions": Role.READ_REGISTRY,
        "GetModelVersion": Role.READ_REGISTRY,
        "SetAlias": Role.PROMOTE,
        "DeleteAlias": Role.ADMIN,
        "EvaluatePromotion": Role.READ_REGISTRY,
        "PromoteModelVersion": Role.PROMOTE,
        "RollbackChampion": Role.ADMIN,
        "RevokeModelVersion": Role.ADMIN,
        "WatchAliases": Role.READ_REGISTRY,
        "ListAuditRecords": Role.READ_REGISTRY,
    },
)
"""What each RPC of ``ModelRegistryService`` needs."""

LEGACY_ROLES: Mapping[str, tuple[Role, ...]] = {
    "viewer": (Role.READ_REGISTRY,),
    "promoter": (Role.READ_REGISTRY, Role.REGISTER, Role.PROMOTE),
    "admin": (Role.ADMIN,),
}


def tokens_as_keys(tokens: Mapping[str, TokenEntry]) -> dict[str, ApiKeyEntry]:
    """``REGISTRY_GATEWAY_TOKENS`` as kit API keys (see the module docstring)."""
    return {
        token: ApiKeyEntry(subject=entry.subject, roles=LEGACY_ROLES[entry.role])
        for token, entry in tokens.items()
    }


def legacy_keys(settings: Settings) -> dict[str, ApiKeyEntry]:
    """The deprecated ``REGISTRY_GATEWAY_TOKENS`` as kit API keys, with a warning when any is set
    (naming the setting and the count, never a token)."""
    if settings.tokens:
        _LOGGER.warning(
            "REGISTRY_GATEWAY_TOKENS is deprecated (%d token(s) mapped to kit roles): move them to "
            "REGISTRY_GATEWAY_AUTH_API_KEYS_FILE with kit roles (viewer -> read_registry; promoter -> "
            "read_registry, register, promote; admin -> admin)",
            len(settings.tokens),
        )
    return tokens_as_keys(settings.tokens)


def audit_role(caller: Principal) -> int:
    """The ``creditrisk.registry.v1.Role`` recorded in the audit trail: ADMIN for ``admin``,
    PROMOTER for a caller who may promote, else VIEWER."""
    if caller.has(Role.ADMIN):
        return int(pb.ROLE_ADMIN)
    if caller.has(Role.PROMOTE):
        return int(pb.ROLE_PROMOTER)
    return int(pb.ROLE_VIEWER)


def caller() -> Principal:
    """The principal of the call being served (set by the kit's interceptor).

    Raises:
        Unauthenticated: outside an authenticated call (never for a method of :data:`POLICY`).
    """
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal

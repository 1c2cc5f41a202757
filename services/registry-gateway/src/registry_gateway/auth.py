"""Access control: a bearer token in the ``authorization`` metadata, mapped to a subject and a role
by configuration (``REGISTRY_GATEWAY_TOKENS``). Roles are ordered viewer < promoter < admin.

The one place every RPC goes through: :meth:`Authenticator.authorize` (called first by each
servicer method with the role the contract names). Missing, malformed or unknown token ->
UNAUTHENTICATED; a role below the one needed -> PERMISSION_DENIED. Tokens are compared in constant
time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from creditrisk_kit import PermissionDenied, Unauthenticated

from registry_gateway.settings import TokenEntry


class Role(IntEnum):
    """Caller roles, ordered (values as ``creditrisk.registry.v1.Role``)."""

    VIEWER = 1
    PROMOTER = 2
    ADMIN = 3


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the token's subject and role."""

    subject: str
    role: Role


class Authenticator:
    """Maps bearer tokens to callers.

    Args:
        tokens: ``{token: TokenEntry(subject, role)}``.
    """

    def __init__(self, tokens: Mapping[str, TokenEntry]) -> None:
        self._tokens = [
            (token.encode(), Caller(entry.subject, Role[entry.role.upper()]))
            for token, entry in tokens.items()
        ]

    def caller(self, metadata: Any) -> Caller:
        """The caller of a call's invocation metadata.

        Raises:
            Unauthenticated: no ``authorization: Bearer <token>``, or an unknown token.
        """
        header = ""
        for key, value in metadata or ():
            if key.lower() == "authorization":
                header = value if isinstance(value, str) else value.decode()
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing or malformed bearer token in the 'authorization' metadata")
        presented = token.strip().encode()
        found = None
        for known, caller in self._tokens:
            if hmac.compare_digest(known, presented):
                found = caller
        if found is None:
            raise Unauthenticated("unknown bearer token")
        return found

    def authorize(self, context: Any, needed: Role, action: str) -> Caller:
        """Authenticate the call and check its role.

        Args:
            context: the gRPC servicer context.
            needed: the least role the action needs.
            action: named in the refusal, e.g. ``"RegisterModelVersion"``.

        Raises:
            Unauthenticated: see :meth:`caller`.
            PermissionDenied: the caller's role is below ``needed``.
        """
        caller = self.caller(context.invocation_metadata())
        require(caller, needed, action)
        return caller


def require(caller: Caller, needed: Role, action: str) -> None:
    """Raise PermissionDenied unless ``caller`` has at least ``needed``."""
    if caller.role < needed:
        raise PermissionDenied(
            f"{action} needs the {needed.name.lower()} role; {caller.subject!r} is {caller.role.name.lower()}"
        )

"""Who calls and what they may do: :class:`Role`, :class:`Principal`, the per-method
:class:`MethodPolicy` and the current call's principal (:func:`current_principal`)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from google.protobuf import descriptor_pool

from ..errors import PermissionDenied


class Role(StrEnum):
    """A permission, named as issue 18 names them. :attr:`ADMIN` implies every role.

    The value is the name used in configuration (API-key files, JWT ``roles`` claims).
    """

    PREDICT = "predict"
    READ_FEATURES = "read_features"
    WRITE_FEATURES = "write_features"
    TRAIN = "train"
    READ_REGISTRY = "read_registry"
    REGISTER = "register"
    PROMOTE = "promote"
    ADMIN = "admin"
    READ_MONITORING = "read_monitoring"
    LOG_PREDICTIONS = "log_predictions"
    WRITE_LABELS = "write_labels"
    READ_ARTIFACTS = "read_artifacts"


PublicType = Literal["public"]
PUBLIC: Final[PublicType] = "public"
"""Policy value of a method or route any caller may use, without a credential."""

Requirement = Role | PublicType
"""What a method or route needs: one role, or :data:`PUBLIC`."""

ALWAYS_PUBLIC_SERVICES: Final = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
"""gRPC services that are public whatever the policy says: health (Kubernetes probes) and server
reflection (which only lists what the server offers)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: Who: the API key's ``subject`` or the JWT's ``sub``.
        roles: What they may do (:data:`Role.ADMIN` implies every role).
        method: The gRPC full method name (``/pkg.Service/Method``) or ``HTTP_METHOD /path`` of
            the call; "" outside a call.
        via: ``api_key`` or ``jwt``.
    """

    subject: str
    roles: frozenset[Role]
    method: str = ""
    via: str = "api_key"

    def has(self, role: Role) -> bool:
        """True when the principal holds ``role`` or :data:`Role.ADMIN`."""
        return role in self.roles or Role.ADMIN in self.roles

    def require(self, role: Role, action: str) -> None:
        """Raise unless the principal holds ``role``.

        Raises:
            PermissionDenied: naming ``action``, the role needed and the subject (never a credential).
        """
        if not self.has(role):
            held = ", ".join(sorted(self.roles)) or "none"
            raise PermissionDenied(f"{action} needs the {role} role; {self.subject!r} has {held}")


_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "creditrisk_principal", default=None
)


def current_principal() -> Principal | None:
    """The principal of the call being served (set by the kit's interceptor or middleware), or
    None outside an authenticated call (public methods, auth disabled)."""
    return _CURRENT.get()


def set_current_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Set the current principal (the interceptor does); returns the token to reset it with."""
    return _CURRENT.set(principal)


def reset_current_principal(token: contextvars.Token[Principal | None]) -> None:
    """Undo :func:`set_current_principal`."""
    _CURRENT.reset(token)


def _full_method(name: str) -> str:
    name = name.strip()
    return name if name.startswith("/") else f"/{name}"


def service_methods(service_name: str) -> list[str]:
    """Full method names (``/pkg.Service/Method``) of ``service_name``, from the default
    descriptor pool (the contracts' generated ``*_pb2`` modules register there when imported).

    Raises:
        KeyError: When the service is not in the pool (its ``_pb2`` module not imported).
    """
    service = descriptor_pool.Default().FindServiceByName(service_name)
    return [f"/{service.full_name}/{method.name}" for method in service.methods]


class MethodPolicy(Mapping[str, Requirement]):
    """What each gRPC method needs: ``{full method name: Role | PUBLIC}``. Default deny: a method
    without an entry is refused to everyone (PERMISSION_DENIED), and :meth:`check_covers` (run by
    the :class:`~creditrisk_kit.server.ServiceRunner` at start) refuses to start a server that
    registers a method without an entry.

    Args:
        entries: ``{"/pkg.Service/Method": Role.PREDICT, ...}``; the leading slash is optional.

    Example::

        MethodPolicy.for_service("creditrisk.feature.v1.FeatureStoreService", {
            "GetOnlineFeatures": Role.READ_FEATURES, "Push": Role.WRITE_FEATURES, ...})
    """

    def __init__(self, entries: Mapping[str, Requirement]) -> None:
        self._entries = {_full_method(name): _requirement(value) for name, value in entries.items()}

    @classmethod
    def for_service(cls, service_name: str, methods: Mapping[str, Requirement]) -> MethodPolicy:
        """A policy for one service from ``{method short name: requirement}``."""
        return cls({f"/{service_name}/{name}": value for name, value in methods.items()})

    def __or__(self, other: MethodPolicy) -> MethodPolicy:
        return MethodPolicy({**self._entries, **other._entries})

    def __getitem__(self, method: str) -> Requirement:
        return self._entries[_full_method(method)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def requirement(self, method: str) -> Requirement | None:
        """What ``method`` needs: its entry, :data:`PUBLIC` for health and reflection, else None
        (no entry: refused)."""
        full = _full_method(method)
        if full.split("/")[1] in ALWAYS_PUBLIC_SERVICES:
            return PUBLIC
        return self._entries.get(full)

    def roles(self) -> frozenset[Role]:
        """Every role some method needs."""
        return frozenset(value for value in self._entries.values() if value != PUBLIC)

    def check_covers(self, service_names: Iterable[str]) -> None:
        """Check that every method of every service has an entry and every entry names a method.

        Raises:
            ValueError: naming the methods without an entry (or entries naming no method), or a
                service missing from the descriptor pool.
        """
        names = [name for name in service_names if name not in ALWAYS_PUBLIC_SERVICES]
        known: set[str] = set()
        for name in names:
            try:
                known.update(service_methods(name))
            except KeyError:
                raise ValueError(
                    f"service {name!r} is not in the descriptor pool; import its _pb2 module"
                ) from None
        missing = sorted(known - self._entries.keys())
        unknown = sorted(self._entries.keys() - known)
        problems = []
        if missing:
            problems.append(f"no access policy for {', '.join(missing)} (default deny: add a Role or PUBLIC)")
        if unknown:
            problems.append(f"access policy names no served method: {', '.join(unknown)}")
        if problems:
            raise ValueError("; ".join(problems))


def _requirement(value: object) -> Requirement:
    if value == PUBLIC:
        return PUBLIC
    return Role(str(value))

"""The refusal test: it enumerates, it does not list (issue 18).

Given a running server, :func:`check_grpc_refusals` takes **every method of every service the
server registers** through its server reflection (the kit enables it), and
:func:`check_http_refusals` every route of an OpenAPI document; each one not public is called
three times, without a credential, with a wrong one, and with a credential holding **every role
but the one the method needs** (admin excepted), and must be refused with UNAUTHENTICATED,
UNAUTHENTICATED and PERMISSION_DENIED (HTTP 401, 401, 403). A method that the policy does not
name is reported (:attr:`RefusalReport.missing_policy`): a method added later without a role
fails the test, as it fails the server's start.

The lower-role credentials are :data:`REFUSAL_API_KEYS` (one API key per role: every role but
that one, never admin); the server under test must know them (merge them into its API-key file
or ``<PREFIX>_AUTH_API_KEYS``). Health and reflection are public by design; the requests are
empty messages (the credential is checked before the request is looked at).

Usage::

    report = check_grpc_refusals("127.0.0.1:50051", FEATURE_POLICY)
    report.assert_all_refused()
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from creditrisk_kit import ServiceRunner
from creditrisk_kit.auth import ALWAYS_PUBLIC_SERVICES, PUBLIC, Authenticator, MethodPolicy, Requirement, Role
from creditrisk_kit.auth.http import DEFAULT_PUBLIC_PATHS
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

WRONG_CREDENTIAL = "refusal-test-wrong-credential"
"""A credential no server knows."""


_SESSION = secrets.token_urlsafe(24)
"""Made per process: the refusal keys are known to the servers under test (an end-to-end stack on a
shared machine among them), so a fixed, published key would open them to any local user."""


def lower_role_key(role: Role) -> str:
    """The API key of :data:`REFUSAL_API_KEYS` holding every role but ``role`` (random per process;
    its subject, ``refusal-test-without-<role>``, is fixed)."""
    return f"refusal-{_SESSION}-without-{role.value}"


REFUSAL_API_KEYS: dict[str, dict[str, Any]] = {
    lower_role_key(role): {
        "subject": f"refusal-test-without-{role.value}",
        "roles": [other.value for other in Role if other not in (role, Role.ADMIN)],
    }
    for role in Role
    if role is not Role.ADMIN
}
"""One API key per role (admin aside): every role but that one. For an admin-only method the key
without ``admin`` serves (every role but admin)."""
REFUSAL_API_KEYS[lower_role_key(Role.ADMIN)] = {
    "subject": "refusal-test-without-admin",
    "roles": [role.value for role in Role if role is not Role.ADMIN],
}

ATTEMPTS = {
    "no credential": ("UNAUTHENTICATED", 401),
    "wrong credential": ("UNAUTHENTICATED", 401),
    "lower role": ("PERMISSION_DENIED", 403),
}


@dataclass(frozen=True)
class Outcome:
    """One call: which method or route, which attempt, what came back, what was expected."""

    method: str
    attempt: str
    got: str
    expected: str

    @property
    def refused(self) -> bool:
        return self.got == self.expected


@dataclass
class RefusalReport:
    """Everything one check did (the figures of docs/security.md)."""

    target: str
    methods: list[str] = field(default_factory=list)
    public: list[str] = field(default_factory=list)
    missing_policy: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{attempt: (refused, calls)}``."""
        refused = Counter(o.attempt for o in self.outcomes if o.refused)
        total = Counter(o.attempt for o in self.outcomes)
        return {attempt: (refused[attempt], total[attempt]) for attempt in ATTEMPTS}

    def failures(self) -> list[str]:
        """Every problem, one line each (a method without policy, a call not refused)."""
        lines = [f"{method}: no role in the policy (default deny)" for method in self.missing_policy]
        lines += [
            f"{o.method} with {o.attempt}: got {o.got}, wanted {o.expected}"
            for o in self.outcomes
            if not o.refused
        ]
        return lines

    def assert_all_refused(self) -> None:
        """Raise AssertionError listing every failure, if any."""
        problems = self.failures()
        assert not problems, f"{self.target}: " + "; ".join(problems)
        assert self.methods, f"{self.target}: no method found"

    def summary(self) -> str:
        """``N methods (P public): no credential r/n refused, ...``."""
        parts = [f"{attempt} {r}/{n} refused" for attempt, (r, n) in self.counts().items()]
        return f"{len(self.methods)} methods ({len(self.public)} public): " + ", ".join(parts)


def _grpc_methods(channel: grpc.Channel) -> Iterator[tuple[str, bool, bool]]:
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    for name in sorted(database.get_services()):
        service = pool.FindServiceByName(name)
        for method in service.methods:
            yield f"/{name}/{method.name}", method.client_streaming, method.server_streaming


def _call(channel: grpc.Channel, method: str, streams: tuple[bool, bool], metadata: Any) -> str:
    identity = {"request_serializer": None, "response_deserializer": None}
    client_streaming, server_streaming = streams
    try:
        if client_streaming and server_streaming:
            list(channel.stream_stream(method, **identity)(iter([b""]), metadata=metadata, timeout=10))
        elif client_streaming:
            channel.stream_unary(method, **identity)(iter([b""]), metadata=metadata, timeout=10)
        elif server_streaming:
            list(channel.unary_stream(method, **identity)(b"", metadata=metadata, timeout=10))
        else:
            channel.unary_unary(method, **identity)(b"", metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def _bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


def _lookup(policy: Mapping[str, Requirement], key: str) -> Requirement | None:
    requirement = getattr(policy, "requirement", None)
    if callable(requirement):
        return requirement(key)  # type: ignore[no-any-return]
    return policy.get(key)


def check_grpc_refusals(
    target: str, policy: Mapping[str, Requirement], *, root_certificates: bytes | None = None
) -> RefusalReport:
    """Call every non-public method of the server at ``target`` three ways (module docstring).

    Args:
        target: ``host:port`` of a running server with reflection.
        policy: The server's :class:`~creditrisk_kit.auth.MethodPolicy` (or a plain mapping of
            full method names).
        root_certificates: The CA certificates (PEM) of a TLS server: the calls speak TLS and
            check its certificate; None = plaintext.

    Returns:
        The report; call :meth:`RefusalReport.assert_all_refused`.
    """
    report = RefusalReport(target)
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root_certificates))
        if root_certificates is not None
        else grpc.insecure_channel(target)
    )
    with channel:
        for method, client_streaming, server_streaming in _grpc_methods(channel):
            report.methods.append(method)
            if method.split("/")[1] in ALWAYS_PUBLIC_SERVICES:
                report.public.append(method)
                continue
            requirement = _lookup(policy, method)
            if requirement == PUBLIC:
                report.public.append(method)
                continue
            if requirement is None:
                report.missing_policy.append(method)
                requirement = Role.ADMIN
            credentials = {
                "no credential": None,
                "wrong credential": _bearer(WRONG_CREDENTIAL),
                "lower role": _bearer(lower_role_key(Role(requirement))),
            }
            for attempt, metadata in credentials.items():
                got = _call(channel, method, (client_streaming, server_streaming), metadata)
                report.outcomes.append(Outcome(method, attempt, got, ATTEMPTS[attempt][0]))
    return report


def _http_status(url: str, method: str, credential: str | None, context: ssl.SSLContext | None) -> int:
    headers = {"content-type": "application/json"}
    if credential is not None:
        headers["authorization"] = f"Bearer {credential}"
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - a test's own URL
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_http_refusals(
    openapi_url: str,
    policy: Mapping[str, Requirement],
    public_paths: frozenset[str] = DEFAULT_PUBLIC_PATHS,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> RefusalReport:
    """Call every non-public route of an OpenAPI document three ways (module docstring).

    Args:
        openapi_url: ``http://host:port/openapi.json``; routes are called on the same origin,
            path parameters filled with ``x``.
        policy: ``{"[METHOD ]/path/template": Role | PUBLIC}`` as given to the kit's
            ``AuthMiddleware``.
        public_paths: Paths public without a policy entry.
        ssl_context: For an ``https://`` server: the client context that checks its certificate
            (e.g. ``ssl.create_default_context(cafile=...)``); None = the system's defaults.
    """
    report = RefusalReport(openapi_url)
    with urllib.request.urlopen(openapi_url, timeout=10, context=ssl_context) as response:  # noqa: S310
        document = json.load(response)
    origin = openapi_url.rsplit("/openapi.json", 1)[0]
    for path, operations in sorted(document.get("paths", {}).items()):
        for verb in sorted(operations):
            if verb.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            name = f"{verb.upper()} {path}"
            report.methods.append(name)
            requirement = policy.get(name, policy.get(path))
            if path in public_paths or requirement == PUBLIC:
                report.public.append(name)
                continue
            if requirement is None:
                report.missing_policy.append(name)
                requirement = Role.ADMIN
            url = origin + "/".join("x" if part.startswith("{") else part for part in path.split("/"))
            credentials = {
                "no credential": None,
                "wrong credential": WRONG_CREDENTIAL,
                "lower role": lower_role_key(Role(requirement)),
            }
            for attempt, credential in credentials.items():
                got = _http_status(url, verb.upper(), credential, ssl_context)
                report.outcomes.append(Outcome(name, attempt, str(got), str(ATTEMPTS[attempt][1])))
    return report


async def check_servicer_refusals(
    settings: Any,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    policy: MethodPolicy,
    authenticator: Authenticator | None = None,
) -> RefusalReport:
    """:func:`check_grpc_refusals` against a servicer served in process by the kit's runner (no
    telemetry): the way each service's own suite proves its policy without its backends, since the
    kit's interceptor refuses before the servicer runs.

    Args:
        settings: The service's settings (``host="127.0.0.1", port=0``), whose API keys hold
            :data:`REFUSAL_API_KEYS`.
        service_names: The gRPC services ``register`` adds.
        register: Adds the servicer to the server.
        policy: The service's ``MethodPolicy``.
        authenticator: The service's own (default: the kit's, from ``settings``).
    """
    runner = ServiceRunner(
        settings,
        service_names=list(service_names),
        register=register,
        auth=policy,
        authenticator=authenticator,
        instrument=False,
    )
    await runner.start()
    try:
        return await asyncio.to_thread(check_grpc_refusals, f"127.0.0.1:{runner.port}", policy)
    finally:
        await runner.stop()

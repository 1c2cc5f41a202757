"""gRPC side: the server interceptor checking every call against a :class:`MethodPolicy`, and
client interceptors sending a service's own credential on every call it makes."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from ..interceptors import rewrap_handler, stream_responses
from .authenticator import Authenticator
from .principal import (
    PUBLIC,
    MethodPolicy,
    Principal,
    Requirement,
    reset_current_principal,
    set_current_principal,
)

CredentialProvider = Callable[[], str]
"""Returns the bearer credential to send now ("" sends none); a
:class:`~creditrisk_kit.auth.keys.CredentialSource` is one."""


def authorization_header(metadata: Any) -> str | bytes | None:
    """The ``authorization`` value of gRPC invocation metadata (any letter case), or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            return value  # type: ignore[no-any-return]
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks each call before the servicer runs: the method's requirement from ``policy``
    (health and reflection public, a method without an entry refused to all), the
    ``authorization`` metadata through ``authenticator`` -> UNAUTHENTICATED / PERMISSION_DENIED
    (raised as the kit's errors, mapped by the kit's ``ErrorInterceptor``, which must run outside
    this one). The principal is the current one (:func:`current_principal`) while the servicer
    runs."""

    def __init__(self, authenticator: Authenticator, policy: MethodPolicy) -> None:
        self.authenticator = authenticator
        self.policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        requirement = self.policy.requirement(method)
        if requirement == PUBLIC:
            return handler
        header = authorization_header(handler_call_details.invocation_metadata)
        check = self.authenticator.check
        return rewrap_handler(
            handler,
            lambda behavior, _kind: _unary(behavior, check, header, requirement, method),
            lambda behavior, _kind: _stream(behavior, check, header, requirement, method),
        )


Check = Callable[[str | bytes | None, Requirement | None, str], Awaitable[Principal | None]]


def _unary(
    behavior: Callable[..., Any], check: Check, header: Any, requirement: Requirement | None, method: str
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: Any) -> Any:
        principal = await check(header, requirement, method)
        token = set_current_principal(principal)
        try:
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result
        finally:
            reset_current_principal(token)

    return wrapper


def _stream(
    behavior: Callable[..., Any], check: Check, header: Any, requirement: Requirement | None, method: str
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
        principal = await check(header, requirement, method)
        set_current_principal(principal)  # each RPC runs in its own task: no reset needed
        async for response in stream_responses(behavior(request, context)):
            yield response

    return wrapper


def _with_bearer(metadata: Any, credential: str) -> Any:
    if not credential:
        return metadata
    pairs = [(k, v) for k, v in (metadata or ()) if k.lower() != "authorization"]
    return grpc.aio.Metadata(*pairs, ("authorization", f"Bearer {credential}"))


class _AioBearer:
    def __init__(self, provider: CredentialProvider) -> None:
        self._provider = provider

    def _details(self, details: Any) -> Any:
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            _with_bearer(details.metadata, self._provider()),
            details.credentials,
            details.wait_for_ready,
        )

    async def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioBearerUU(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    intercept_unary_unary = _AioBearer._intercept


class _AioBearerUS(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    intercept_unary_stream = _AioBearer._intercept


class _AioBearerSU(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    intercept_stream_unary = _AioBearer._intercept


class _AioBearerSS(_AioBearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    intercept_stream_stream = _AioBearer._intercept


def bearer_interceptors(provider: CredentialProvider | str) -> list[Any]:
    """``grpc.aio`` client interceptors setting ``authorization: Bearer <credential>`` on every
    call (all four kinds), the credential read from ``provider`` at each call (so a rotated
    credential file is picked up). Give them to ``aio_channel(..., interceptors=...)``."""
    source: CredentialProvider = (lambda: provider) if isinstance(provider, str) else provider
    return [_AioBearerUU(source), _AioBearerUS(source), _AioBearerSU(source), _AioBearerSS(source)]


class _SyncDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: Any, metadata: Any) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """The sync channels' counterpart of :func:`bearer_interceptors`:
    ``grpc.intercept_channel(channel, BearerInterceptor(provider))``."""

    def __init__(self, provider: CredentialProvider | str) -> None:
        self._provider: CredentialProvider = (lambda: provider) if isinstance(provider, str) else provider

    def _details(self, details: Any) -> Any:
        credential = self._provider()
        if not credential:
            return details
        pairs = [(k, v) for k, v in (details.metadata or ()) if k.lower() != "authorization"]
        return _SyncDetails(details, [*pairs, ("authorization", f"Bearer {credential}")])

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

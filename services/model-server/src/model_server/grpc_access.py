"""The kit's credential check on both runtimes' gRPC ports (docs/security.md, "model-server").

* **seldon-core 1.19** serves its gRPC services on a synchronous ``grpc.server`` (a thread pool),
  which the kit's :class:`~creditrisk_kit.auth.AuthInterceptor` (``grpc.aio``) cannot intercept:
  :class:`SyncAuthInterceptor` is its synchronous counterpart, with :func:`seldon_grpc_policy`.
* **MLServer 1.7** serves on ``grpc.aio.server``: :class:`AsyncAuthInterceptor`, with
  :func:`mlserver_grpc_policy` (the roles of its REST routes: :mod:`model_server.access`).

Both check as the kit does: a :class:`MethodPolicy` (default deny: a method without an entry is
refused to everyone; health and reflection public), the slot's :class:`Authenticator`
(``MODEL_SERVER_AUTH_*``), refusals UNAUTHENTICATED (no, malformed or unknown credential, invalid
JWT) or PERMISSION_DENIED (a role missing, a method without an entry) with the reason as details,
each counted and logged by the kit's refusal log, never with the credential. Neither server takes
interceptors from the outside: their factories call ``grpc.server`` / ``grpc.aio.server`` through
a module name (``seldon_core.wrapper.grpc``, ``mlserver.grpc.server.aio``) which
:mod:`model_server.launch` points at :class:`GrpcWithInterceptors` / :class:`AioWithInterceptors`,
whose ``server()`` is grpcio's with our interceptor first (the runtimes' files unchanged).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
from creditrisk_kit.auth import (
    PUBLIC,
    Authenticator,
    MethodPolicy,
    Principal,
    Requirement,
    Role,
    reset_current_principal,
    set_current_principal,
)
from creditrisk_kit.auth.grpc import authorization_header
from creditrisk_kit.errors import PermissionDenied, ServiceError, Unauthenticated
from creditrisk_kit.interceptors import rewrap_handler, stream_responses

SELDON_GRPC_METHODS: dict[str, Requirement] = {
    # scoring and the model's description
    "Predict": Role.PREDICT,
    "TransformInput": Role.PREDICT,
    "TransformOutput": Role.PREDICT,
    "Route": Role.PREDICT,
    "Aggregate": Role.PREDICT,
    "Metadata": Role.PREDICT,
    "ModelMetadata": Role.PREDICT,
    "GraphMetadata": Role.PREDICT,
    # moves seldon-core's reward metric; nothing of the platform sends feedback
    "SendFeedback": Role.ADMIN,
}
"""Method short name -> what it needs, for every service of seldon-core's ``prediction.proto``."""


def seldon_grpc_policy() -> MethodPolicy:
    """The policy of seldon-core's gRPC port: every method of every service of its
    ``prediction.proto`` (``/seldon.protos.<Service>/<Method>``) from :data:`SELDON_GRPC_METHODS`.

    Raises:
        ValueError: A method of ``prediction.proto`` has no entry in :data:`SELDON_GRPC_METHODS`
            (a seldon-core upgrade adding one stops the slot at start, naming it).
    """
    from seldon_core.proto import prediction_pb2

    services = list(prediction_pb2.DESCRIPTOR.services_by_name.values())
    policy = MethodPolicy(
        {
            f"/{service.full_name}/{method.name}": SELDON_GRPC_METHODS[method.name]
            for service in services
            for method in service.methods
            if method.name in SELDON_GRPC_METHODS
        }
    )
    policy.check_covers(service.full_name for service in services)
    return policy


MLSERVER_GRPC_METHODS: dict[str, Requirement] = {
    # the probes, public as on REST (/v2/health/live, /v2/health/ready, /v2/models/<m>/ready)
    "/inference.GRPCInferenceService/ServerLive": PUBLIC,
    "/inference.GRPCInferenceService/ServerReady": PUBLIC,
    "/inference.GRPCInferenceService/ModelReady": PUBLIC,
    # scoring and metadata: predict (as GET /v2, GET /v2/models/<m>, .../infer)
    "/inference.GRPCInferenceService/ServerMetadata": Role.PREDICT,
    "/inference.GRPCInferenceService/ModelMetadata": Role.PREDICT,
    "/inference.GRPCInferenceService/ModelInfer": Role.PREDICT,
    "/inference.GRPCInferenceService/ModelStreamInfer": Role.PREDICT,
    # the repository API: admin (as /v2/repository/...)
    "/inference.GRPCInferenceService/RepositoryIndex": Role.ADMIN,
    "/inference.GRPCInferenceService/RepositoryModelLoad": Role.ADMIN,
    "/inference.GRPCInferenceService/RepositoryModelUnload": Role.ADMIN,
    "/inference.model_repository.ModelRepositoryService/RepositoryIndex": Role.ADMIN,
    "/inference.model_repository.ModelRepositoryService/RepositoryModelLoad": Role.ADMIN,
    "/inference.model_repository.ModelRepositoryService/RepositoryModelUnload": Role.ADMIN,
}
"""Full method name -> what it needs, for MLServer's gRPC port (its two services)."""


def mlserver_grpc_policy() -> MethodPolicy:
    """The policy of MLServer's gRPC port (:data:`MLSERVER_GRPC_METHODS`).

    Raises:
        ValueError: A method of MLServer's two services has no entry, or an entry names no method
            (an MLServer upgrade changing them stops the slot at start, naming them).
    """
    from mlserver.grpc import dataplane_pb2, model_repository_pb2

    policy = MethodPolicy(MLSERVER_GRPC_METHODS)
    policy.check_covers(
        service.full_name
        for module in (dataplane_pb2, model_repository_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    )
    return policy


class SyncAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Checks each call of a synchronous ``grpc.server`` before the servicer runs (see the module
    docstring); the principal is the current one (:func:`creditrisk_kit.auth.current_principal`)
    while the servicer runs.

    Args:
        authenticator: The slot's (:func:`model_server.access.authenticator`).
        policy: ``{full method name: Role | PUBLIC}`` (:func:`seldon_grpc_policy`).

    A refused call ends with ``context.abort(UNAUTHENTICATED | PERMISSION_DENIED, reason)`` (a
    JWKS URL that cannot be fetched: UNAVAILABLE); the servicer does not run.
    """

    def __init__(self, authenticator: Authenticator, policy: MethodPolicy) -> None:
        self.authenticator = authenticator
        self.policy = policy

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:  # unknown method: grpcio's UNIMPLEMENTED
            return handler
        method = str(handler_call_details.method)
        requirement = self.policy.requirement(method)
        if requirement == PUBLIC:
            return handler
        header = authorization_header(handler_call_details.invocation_metadata)
        check = self._check

        def unary(behavior: Callable[..., Any], _kind: str) -> Callable[..., Any]:
            def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
                token = set_current_principal(check(header, requirement, method, context))
                try:
                    return behavior(request, context)
                finally:
                    reset_current_principal(token)

            return wrapper

        def stream(behavior: Callable[..., Any], _kind: str) -> Callable[..., Iterator[Any]]:
            def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token = set_current_principal(check(header, requirement, method, context))
                try:
                    yield from behavior(request, context)
                finally:
                    reset_current_principal(token)

            return wrapper

        return rewrap_handler(handler, unary, stream)

    def _check(
        self, header: Any, requirement: Requirement | None, method: str, context: grpc.ServicerContext
    ) -> Principal:
        principal: Principal | None = None
        try:
            principal = self.authenticator.authenticate(header, method)
            if not isinstance(requirement, Role):  # None: no policy entry
                raise PermissionDenied(f"{method} has no access policy (default deny)")
            principal.require(requirement, method)
            return principal
        except (Unauthenticated, PermissionDenied) as exc:
            self.authenticator.record_refusal(method, principal, exc)
            context.abort(exc.grpc_status_code(), exc.message)
        except ServiceError as exc:  # the JWKS URL cannot be fetched: UNAVAILABLE
            context.abort(exc.grpc_status_code(), exc.message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class _WithInterceptors:
    """A gRPC module (:attr:`_module`) with ``server()`` adding ``interceptors`` (before any the
    caller passes); every other name is grpcio's. :attr:`servers_made` counts the servers it built,
    so the launcher can check its server came from here (fail closed, not silently unprotected)."""

    _module: Any

    def __init__(self, interceptors: list[Any]) -> None:
        self._interceptors = list(interceptors)
        self.servers_made = 0

    def server(self, *args: Any, **kwargs: Any) -> Any:
        """``<module>.server(*args, **kwargs)`` with the interceptors first in ``interceptors``."""
        kwargs["interceptors"] = [*self._interceptors, *(kwargs.get("interceptors") or ())]
        server = self._module.server(*args, **kwargs)
        self.servers_made += 1
        return server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class GrpcWithInterceptors(_WithInterceptors):
    """The ``grpc`` module with the interceptors (seldon-core's synchronous server)."""

    _module = grpc


class AioWithInterceptors(_WithInterceptors):
    """The ``grpc.aio`` module with the interceptors (MLServer's server)."""

    _module = grpc.aio


class AsyncAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """:class:`SyncAuthInterceptor` for a ``grpc.aio`` server (MLServer's): the kit's
    :meth:`Authenticator.check` (which counts and logs refusals) before the servicer runs, a refusal
    ending the call with ``context.abort(UNAUTHENTICATED | PERMISSION_DENIED, reason)``.

    Args:
        authenticator: The slot's (:func:`model_server.access.authenticator`).
        policy: ``{full method name: Role | PUBLIC}`` (:func:`mlserver_grpc_policy`).
    """

    def __init__(self, authenticator: Authenticator, policy: MethodPolicy) -> None:
        self.authenticator = authenticator
        self.policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        requirement = self.policy.requirement(method)
        if requirement == PUBLIC:
            return handler
        header = authorization_header(handler_call_details.invocation_metadata)
        check = self._check

        def unary(behavior: Callable[..., Any], _kind: str) -> Callable[..., Awaitable[Any]]:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                token = set_current_principal(await check(header, requirement, method, context))
                try:
                    result = behavior(request, context)
                    return await result if inspect.isawaitable(result) else result
                finally:
                    reset_current_principal(token)

            return wrapper

        def stream(behavior: Callable[..., Any], _kind: str) -> Callable[..., AsyncIterator[Any]]:
            async def wrapper(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                set_current_principal(await check(header, requirement, method, context))  # own task
                async for response in stream_responses(behavior(request, context)):
                    yield response

            return wrapper

        return rewrap_handler(handler, unary, stream)

    async def _check(
        self,
        header: Any,
        requirement: Requirement | None,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Principal | None:
        try:
            return await self.authenticator.check(header, requirement, method)
        except ServiceError as exc:  # Unauthenticated, PermissionDenied (logged), Unavailable
            await context.abort(exc.grpc_status_code(), exc.message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def built_through[T](
    module: Any, name: str, factory: GrpcWithInterceptors | AioWithInterceptors, build: Callable[[], T]
) -> T:
    """``build()`` with ``module.<name>`` pointed at ``factory`` for the call (restored after it):
    how :mod:`model_server.launch` hands the interceptors to the server a runtime builds.

    Raises:
        RuntimeError: ``build()`` did not build exactly one server through ``factory`` (a runtime
            upgrade that builds it otherwise): fail closed, the port is never served unchecked.
    """
    original = getattr(module, name)
    setattr(module, name, factory)
    try:
        server = build()
    finally:
        setattr(module, name, original)
    if factory.servers_made != 1:
        raise RuntimeError(
            f"the gRPC server was not built through {module.__name__}.{name}.server "
            f"({factory.servers_made} built): the credential check cannot be added"
        )
    return server

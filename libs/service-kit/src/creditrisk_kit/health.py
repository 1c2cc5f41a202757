"""``grpc.health.v1.Health`` for the kit's ``grpc.aio`` servers: Check, Watch and List.

:class:`HealthServicer` keeps one status per name (``""``, each served service, ``liveness``),
set by the :class:`~creditrisk_kit.server.ServiceRunner` from its readiness checks.

``List`` (gRFC A90; grpcio-health-checking 1.85 generates it, 1.81 does not, and neither's
servicer implements it: the generated base raises ``NotImplementedError``, which
the kit's error interceptor answered as INTERNAL) returns every name and its status, as
grpc-go's health server does: the snapshot, or RESOURCE_EXHAUSTED beyond
:data:`MAX_LISTED_SERVICES` names. :func:`add_health_servicer` registers it whichever version is
installed: with a generated ``HealthListResponse`` that message, else the same message built here
from its definition (package ``grpc.health.v1``: ``HealthListRequest {}``,
``HealthListResponse { map<string, HealthCheckResponse> statuses = 1; }``), the same bytes on the
wire.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

MAX_LISTED_SERVICES = 100
"""Most names ``List`` answers with (``maxAllowedServices`` of grpc-go's health server, the limit
grpc-swift's tests check too); beyond: RESOURCE_EXHAUSTED."""


def _list_messages() -> tuple[Any, Any]:
    """``(HealthListRequest, HealthListResponse)``: the generated classes, else built here."""
    if hasattr(health_pb2, "HealthListResponse"):
        return health_pb2.HealthListRequest, health_pb2.HealthListResponse
    pool = descriptor_pool.DescriptorPool()
    base = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(base)
    pool.Add(base)
    listing = descriptor_pb2.FileDescriptorProto(
        name="creditrisk_kit/health_list.proto",
        package="grpc.health.v1",
        dependency=[base.name],
        syntax="proto3",
    )
    listing.message_type.add(name="HealthListRequest")
    response = listing.message_type.add(name="HealthListResponse")
    entry = response.nested_type.add(name="StatusesEntry")
    entry.options.map_entry = True
    label, string, message = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    )
    entry.field.add(name="key", number=1, label=label, type=string, json_name="key")
    entry.field.add(
        name="value",
        number=2,
        label=label,
        type=message,
        type_name=".grpc.health.v1.HealthCheckResponse",
        json_name="value",
    )
    response.field.add(
        name="statuses",
        number=1,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type=message,
        type_name=".grpc.health.v1.HealthListResponse.StatusesEntry",
        json_name="statuses",
    )
    pool.Add(listing)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.health.v1.{name}"))
        for name in ("HealthListRequest", "HealthListResponse")
    )


HEALTH_LIST_REQUEST, HEALTH_LIST_RESPONSE = _list_messages()
"""The ``List`` messages (generated when the installed grpcio-health-checking has them)."""
LIST_METHOD = f"/{health.SERVICE_NAME}/List"
"""The full name of ``Health/List``."""


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` for ``grpc.aio`` whose Watch streams end when shutdown begins.

    Same behaviour as grpcio-health-checking's ``health.aio.HealthServicer`` (``Check``, ``Watch``,
    ``set``, ``enter_graceful_shutdown``), with three differences: ``List`` answers (module
    docstring); after
    :meth:`enter_graceful_shutdown` each ``Watch`` stream sends its last status (NOT_SERVING) and
    then ends with OK, so an idle watcher does not hold the drain for the whole grace period (the
    upstream servicer, 1.81, keeps the streams open); and a status is never written to a watcher
    while the lock that :meth:`set` needs is held, so a slow watcher cannot block ``set``.
    """

    def __init__(self) -> None:
        self._status: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {
            health.OVERALL_HEALTH: _SERVING
        }
        self._changed: asyncio.Condition | None = None
        self._shutting_down = False

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created on first use, inside the server's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Every registered name and its status (``""`` and ``liveness`` included), a snapshot.

        Raises (as the call's status):
            RESOURCE_EXHAUSTED: More than :data:`MAX_LISTED_SERVICES` names (the protocol's answer
                to "too many services").
        """
        statuses = dict(self._status)
        if len(statuses) > MAX_LISTED_SERVICES:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(statuses)} health services, more than the {MAX_LISTED_SERVICES} listed at most",
            )
        response = HEALTH_LIST_RESPONSE()
        for name, status in statuses.items():
            response.statuses[name].status = status
        return response

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        condition = self._condition()
        last = None
        while True:
            async with condition:
                while (status := self._status.get(request.service, unknown)) == last:
                    if self._shutting_down:
                        break
                    await condition.wait()
                ending = self._shutting_down
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if ending:
                return

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        """Set the status of ``service``; ignored once :meth:`enter_graceful_shutdown` ran."""
        if self._shutting_down:
            return
        condition = self._condition()
        async with condition:
            self._status[service] = status
            condition.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every status NOT_SERVING for good; Watch streams send it and end. Idempotent."""
        if self._shutting_down:
            return
        condition = self._condition()
        async with condition:
            self._shutting_down = True
            for service in self._status:
                self._status[service] = _NOT_SERVING
            condition.notify_all()


def add_health_servicer(servicer: HealthServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server``: Check and Watch, and List with any installed
    grpcio-health-checking (a separate handler where its generated code has no List)."""
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if hasattr(health_pb2, "HealthListResponse"):
        return  # the generated registration includes List, served by HealthServicer.List
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.List,
        request_deserializer=HEALTH_LIST_REQUEST.FromString,
        response_serializer=HEALTH_LIST_RESPONSE.SerializeToString,
    )
    generic = grpc.method_handlers_generic_handler(health.SERVICE_NAME, {"List": handler})
    server.add_generic_rpc_handlers((generic,))

"""How the gRPC interceptors reach the runtimes' own servers (``model_server.grpc_access``,
docs/security.md, "model-server"), in this process, without a slot: the installed seldon-core and
MLServer build their servers through the module names the launcher replaces (an upgrade that
stops doing so fails here and stops the slot at start); a server built some other way is refused
(fail closed) and the replaced name is restored either way; seldon-core's own server, built with
the interceptor, refuses a call without a credential before its servicer runs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
from creditrisk_kit.auth import Authenticator, parse_api_keys
from creditrisk_kit.auth.keys import ApiKeys
from mlserver.grpc import server as mlserver_grpc
from mlserver.grpc.server import GRPCServer
from mlserver.settings import Settings as MLServerSettings
from model_server.grpc_access import (
    AioWithInterceptors,
    AsyncAuthInterceptor,
    GrpcWithInterceptors,
    SyncAuthInterceptor,
    built_through,
    mlserver_grpc_policy,
    seldon_grpc_policy,
)
from model_server.seldon_model import CreditRiskModel
from seldon_core import wrapper
from seldon_core.proto import prediction_pb2

PREDICT_KEY = secrets.token_urlsafe(18)


def _authenticator() -> Authenticator:
    entries = parse_api_keys(
        json.dumps({PREDICT_KEY: {"subject": "test-predict", "roles": ["predict"]}}), "test"
    )
    return Authenticator(ApiKeys(entries))


@pytest.fixture
def seldon_server() -> Iterator[tuple[grpc.Server, str, GrpcWithInterceptors]]:
    factory = GrpcWithInterceptors([SyncAuthInterceptor(_authenticator(), seldon_grpc_policy())])
    server = built_through(wrapper, "grpc", factory, lambda: wrapper.get_grpc_server(CreditRiskModel(), None))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield server, f"127.0.0.1:{port}", factory
    finally:
        server.stop(None)


def test_seldon_core_builds_its_server_through_the_replaced_name(
    seldon_server: tuple[grpc.Server, str, GrpcWithInterceptors],
) -> None:
    _server, _target, factory = seldon_server
    assert factory.servers_made == 1
    assert wrapper.grpc is grpc  # restored after the call


def test_seldon_cores_own_server_checks_the_credential(
    seldon_server: tuple[grpc.Server, str, GrpcWithInterceptors],
) -> None:
    _server, target, _factory = seldon_server
    request = prediction_pb2.SeldonMessage()
    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary(
            "/seldon.protos.Model/Predict",
            request_serializer=prediction_pb2.SeldonMessage.SerializeToString,
            response_deserializer=prediction_pb2.SeldonMessage.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            predict(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        feedback = channel.unary_unary(
            "/seldon.protos.Model/SendFeedback",
            request_serializer=prediction_pb2.Feedback.SerializeToString,
            response_deserializer=prediction_pb2.SeldonMessage.FromString,
        )
        with pytest.raises(grpc.RpcError) as denied:
            feedback(
                prediction_pb2.Feedback(), timeout=10, metadata=[("authorization", f"Bearer {PREDICT_KEY}")]
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # the predict key passes the check: the servicer runs (no model loaded here: its own error)
        with pytest.raises(grpc.RpcError) as served:
            predict(request, timeout=10, metadata=[("authorization", f"Bearer {PREDICT_KEY}")])
        assert served.value.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


async def test_mlserver_builds_its_server_through_the_replaced_name() -> None:
    grpc_server = GRPCServer(MLServerSettings(metrics_endpoint=None), None, None)  # type: ignore[arg-type]
    factory = AioWithInterceptors([AsyncAuthInterceptor(_authenticator(), mlserver_grpc_policy())])
    server = built_through(mlserver_grpc, "aio", factory, grpc_server._create_server)
    assert isinstance(server, grpc.aio.Server)
    assert factory.servers_made == 1
    assert mlserver_grpc.aio is grpc.aio  # restored after the call
    await server.stop(None)


def test_a_server_built_otherwise_is_refused_and_the_name_restored() -> None:
    factory = GrpcWithInterceptors([SyncAuthInterceptor(_authenticator(), seldon_grpc_policy())])
    with pytest.raises(
        RuntimeError, match=r"not built through seldon_core\.wrapper\.grpc\.server \(0 built\)"
    ):
        built_through(wrapper, "grpc", factory, lambda: grpc.server(None))  # type: ignore[arg-type]
    assert wrapper.grpc is grpc
    with pytest.raises(ZeroDivisionError):  # a failing build: the name restored too
        built_through(wrapper, "grpc", factory, lambda: 1 // 0)
    assert wrapper.grpc is grpc

"""The credential check on both runtimes' gRPC ports (issue 18; docs/security.md, "model-server"):
every method of every service of seldon-core's ``prediction.proto`` and of MLServer's two
services (taken from their descriptors, not listed here) called on the suite's running slots
without a credential, with a wrong one and with a lower role; seldon-core's feedback and MLServer's
repository API need ``admin``; reflection and MLServer's probes stay public; the refusals are in
the slots' refusal logs, without the credential."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from creditrisk_kit.auth import PUBLIC, Role
from google.protobuf import json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from mlserver.grpc import dataplane_pb2, model_repository_pb2
from model_server.grpc_access import SELDON_GRPC_METHODS, mlserver_grpc_policy, seldon_grpc_policy
from model_server.testing import fixtures as fx
from model_server.testing.clients import v2_proto
from seldon_core.proto import prediction_pb2

pytestmark = pytest.mark.slow
MODEL = "credit-risk"
RECORD = {"duration_in_month": 6, "credit_amount": 1169, "purpose": "radio/television"}
WRONG_KEY = secrets.token_urlsafe(18)
WRONG = [("authorization", f"Bearer {WRONG_KEY}")]
NONE: list[tuple[str, str]] = []


def _bearer(who: str) -> list[tuple[str, str]]:
    return list(fx.auth_headers(who).items())


def _methods(*modules: Any) -> list[tuple[str, Any]]:
    """(full method name, request class) of every method of every service of ``modules``'
    protos (default: seldon-core's prediction.proto)."""
    return [
        (f"/{service.full_name}/{method.name}", message_factory.GetMessageClass(method.input_type))
        for module in modules or (prediction_pb2,)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


@pytest.fixture(scope="module")
def channel(stack: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.seldon_grpc) as opened:
        yield opened


def _call(channel: grpc.Channel, method: str, request: Any, metadata: list[tuple[str, str]]) -> bytes:
    if method.endswith("/ModelStreamInfer"):  # MLServer's one stream-stream method
        stream = channel.stream_stream(method, request_serializer=lambda m: m.SerializeToString())
        return b"".join(stream(iter([request]), timeout=30, metadata=metadata))
    call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString())
    return call(request, timeout=30, metadata=metadata)  # type: ignore[no-any-return]


def _code(channel: grpc.Channel, method: str, request: Any, metadata: list[tuple[str, str]]) -> Any:
    try:
        _call(channel, method, request, metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_the_policy_names_every_method_and_feedback_needs_admin() -> None:
    policy = seldon_grpc_policy()
    assert sorted(policy) == sorted(name for name, _cls in _methods())
    assert len(policy) == 17  # 7 services
    feedback = [name for name in policy if name.endswith("/SendFeedback")]
    assert len(feedback) == 4
    assert all(policy[name] == Role.ADMIN for name in feedback)
    assert all(policy[name] == Role.PREDICT for name in policy if name not in feedback)
    assert set(SELDON_GRPC_METHODS) == {name.rsplit("/", 1)[1] for name in policy}


def test_every_method_is_refused_without_the_credential(channel: grpc.Channel) -> None:
    """No credential / a wrong one -> UNAUTHENTICATED, every role but predict and admin ->
    PERMISSION_DENIED: the servicer never runs (an empty message would otherwise be scored or
    fail inside seldon-core with UNKNOWN)."""
    refused: dict[str, list[str]] = {"none": [], "wrong": [], "lower": []}
    for method, request_class in _methods():
        for who, metadata, expected in (
            ("none", NONE, grpc.StatusCode.UNAUTHENTICATED),
            ("wrong", WRONG, grpc.StatusCode.UNAUTHENTICATED),
            ("lower", _bearer("lower"), grpc.StatusCode.PERMISSION_DENIED),
        ):
            code = _code(channel, method, request_class(), metadata)
            assert code == expected, (method, who, code)
            refused[who].append(method)
    assert {who: len(methods) for who, methods in refused.items()} == {"none": 17, "wrong": 17, "lower": 17}


def test_refusals_name_what_is_wrong(channel: grpc.Channel) -> None:
    message = prediction_pb2.SeldonMessage()
    with pytest.raises(grpc.RpcError) as missing:
        _call(channel, "/seldon.protos.Model/Predict", message, NONE)
    assert "missing credential" in (missing.value.details() or "")
    with pytest.raises(grpc.RpcError) as unknown:
        _call(channel, "/seldon.protos.Model/Predict", message, WRONG)
    assert unknown.value.details() == "unknown API key"
    with pytest.raises(grpc.RpcError) as lower:
        _call(channel, "/seldon.protos.Model/Predict", message, _bearer("lower"))
    details = lower.value.details() or ""
    assert "/seldon.protos.Model/Predict needs the predict role" in details
    assert "test-lower" in details


def test_feedback_is_refused_to_predict_and_served_to_admin(channel: grpc.Channel) -> None:
    feedback = prediction_pb2.Feedback(reward=1.0)
    names = [method for method, _cls in _methods() if method.endswith("/SendFeedback")]
    codes = {method: _code(channel, method, feedback, _bearer("predict")) for method in names}
    assert set(codes.values()) == {grpc.StatusCode.PERMISSION_DENIED}
    assert len(codes) == 4
    # admin passes the check: seldon-core's own answer (OK), not a refusal
    assert (
        _code(channel, "/seldon.protos.Model/SendFeedback", feedback, _bearer("admin")) == grpc.StatusCode.OK
    )


@pytest.mark.parametrize("who", ["predict", "admin"])
def test_the_predict_and_admin_keys_score_and_read_metadata(channel: grpc.Channel, who: str) -> None:
    request = json_format.ParseDict({"jsonData": RECORD}, prediction_pb2.SeldonMessage())
    answer = prediction_pb2.SeldonMessage.FromString(
        _call(channel, "/seldon.protos.Model/Predict", request, _bearer(who))
    )
    tags = json_format.MessageToDict(answer)["meta"]["tags"]
    assert tags["model_name"] == MODEL
    assert 0.0 <= json_format.MessageToDict(answer)["jsonData"]["probability_of_default"][0] <= 1.0
    metadata = prediction_pb2.SeldonModelMetadata.FromString(
        _call(channel, "/seldon.protos.Model/Metadata", prediction_pb2.SeldonMessage(), _bearer(who))
    )
    assert metadata.name


def test_reflection_is_public(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answer = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=30)))
    listed = {service.name for service in answer.list_services_response.service}
    assert {"seldon.protos.Model", "seldon.protos.Seldon"} <= listed


MLSERVER_PROTOS = (dataplane_pb2, model_repository_pb2)


@pytest.fixture(scope="module")
def mlserver_channel(stack: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.mlserver_grpc) as opened:
        yield opened


def test_the_mlserver_policy_names_every_method() -> None:
    policy = mlserver_grpc_policy()
    assert sorted(policy) == sorted(name for name, _cls in _methods(*MLSERVER_PROTOS))
    by_requirement = {
        value: sorted(n.rsplit("/", 1)[1] for n in policy if policy[n] == value)
        for value in set(policy.values())
    }
    assert by_requirement == {
        PUBLIC: ["ModelReady", "ServerLive", "ServerReady"],
        Role.PREDICT: ["ModelInfer", "ModelMetadata", "ModelStreamInfer", "ServerMetadata"],
        Role.ADMIN: sorted(["RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"] * 2),
    }


def test_every_mlserver_method_is_refused_without_the_credential(mlserver_channel: grpc.Channel) -> None:
    """The 10 methods that are not probes: no credential / a wrong one -> UNAUTHENTICATED, every
    role but predict and admin -> PERMISSION_DENIED; the repository API (6) refused to predict."""
    policy = mlserver_grpc_policy()
    refused: dict[str, list[str]] = {"none": [], "wrong": [], "lower": [], "predict": []}
    for method, request_class in _methods(*MLSERVER_PROTOS):
        if policy[method] == PUBLIC:
            continue
        cases = [
            ("none", NONE, grpc.StatusCode.UNAUTHENTICATED),
            ("wrong", WRONG, grpc.StatusCode.UNAUTHENTICATED),
            ("lower", _bearer("lower"), grpc.StatusCode.PERMISSION_DENIED),
        ]
        if policy[method] == Role.ADMIN:
            cases.append(("predict", _bearer("predict"), grpc.StatusCode.PERMISSION_DENIED))
        for who, metadata, expected in cases:
            code = _code(mlserver_channel, method, request_class(), metadata)
            assert code == expected, (method, who, code)
            refused[who].append(method)
    counts = {who: len(methods) for who, methods in refused.items()}
    assert counts == {"none": 10, "wrong": 10, "lower": 10, "predict": 6}


def test_mlserver_probes_are_public_and_predict_scores(
    mlserver_channel: grpc.Channel, inproc_v1: Any
) -> None:
    live = dataplane_pb2.ServerLiveResponse.FromString(
        _call(
            mlserver_channel,
            "/inference.GRPCInferenceService/ServerLive",
            dataplane_pb2.ServerLiveRequest(),
            NONE,
        )
    )
    assert live.live
    ready = dataplane_pb2.ModelReadyRequest(name=MODEL)
    answer = _call(mlserver_channel, "/inference.GRPCInferenceService/ModelReady", ready, NONE)
    assert dataplane_pb2.ModelReadyResponse.FromString(answer).ready
    request = v2_proto(MODEL, [RECORD], inproc_v1.signature)
    infer = dataplane_pb2.ModelInferResponse.FromString(
        _call(mlserver_channel, "/inference.GRPCInferenceService/ModelInfer", request, _bearer("predict"))
    )
    assert infer.model_name == MODEL
    assert "probability_of_default" in {output.name for output in infer.outputs}
    metadata = dataplane_pb2.ModelMetadataResponse.FromString(
        _call(
            mlserver_channel,
            "/inference.GRPCInferenceService/ModelMetadata",
            dataplane_pb2.ModelMetadataRequest(name=MODEL),
            _bearer("predict"),
        )
    )
    assert metadata.name == MODEL


@pytest.mark.parametrize(
    ("runtime", "method", "request_class"),
    [
        ("seldon", "/seldon.protos.Transformer/TransformInput", prediction_pb2.SeldonMessage),
        ("mlserver", "/inference.GRPCInferenceService/ServerMetadata", dataplane_pb2.ServerMetadataRequest),
    ],
)
def test_refusals_are_logged_without_the_credential(
    stack: Any, runtime: str, method: str, request_class: Any
) -> None:
    """The kit's refusal log in the slot's log: the method, the outcome, the subject when known,
    the reason; neither the credential sent (a malformed header carrying a secret) nor any key.
    (The log keeps 10 lines a minute per subject, outcome and reason: a reason of its own here.)"""
    malformed = [("authorization", f"Basic {WRONG_KEY}")]
    with grpc.insecure_channel(getattr(stack, f"{runtime}_grpc")) as channel:
        assert _code(channel, method, request_class(), malformed) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(channel, method, request_class(), _bearer("lower")) == grpc.StatusCode.PERMISSION_DENIED
    log = stack.work / f"{runtime}.log"
    expected = [
        f"{method} refused (UNAUTHENTICATED) for unauthenticated: malformed 'authorization' header",
        f"{method} refused (PERMISSION_DENIED) for test-lower: {method} needs the",
    ]
    deadline = time.monotonic() + 10
    while not all(line in log.read_text(errors="replace") for line in expected):
        assert time.monotonic() < deadline, f"the refusals are not in the slot's log: {expected}"
        time.sleep(0.2)
    text = log.read_text(errors="replace")
    assert WRONG_KEY not in text
    assert all(key not in text for key in fx.API_KEYS.values())

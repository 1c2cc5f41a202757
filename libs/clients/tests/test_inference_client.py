"""InferenceClient against an in-process InferenceService on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import grpc
import numpy as np
import pytest
from creditrisk.common.v1 import error_pb2, serving_pb2, values_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk_clients import (
    DownstreamErrors,
    InferenceClient,
    dependency_status,
    feature_value,
    invalid_argument,
    predict_request,
)
from creditrisk_kit import DeadlineExceeded, InvalidArgument, Unavailable

KNOWN = {1, 2}


class _Gateway(ipb_grpc.InferenceServiceServicer):  # type: ignore[misc]
    """Applicants 1 and 2 are known; the probability of default is ``credit_amount / 10_000``;
    records each call's authorization header; ``slow_s`` delays Predict."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []
        self.requests: list[ipb.PredictRequest] = []
        self.slow_s = 0.0
        self.down = False
        self.broken_batch = ""

    def _score(self, request: ipb.PredictRequest) -> ipb.PredictResponse | tuple[grpc.StatusCode, str]:
        if request.applicant_id not in KNOWN and not request.request_values:
            return grpc.StatusCode.NOT_FOUND, f"applicant {request.applicant_id} is unknown"
        amount = request.request_values.get("credit_amount")
        if amount is not None and amount.WhichOneof("kind") != "double_value":
            return grpc.StatusCode.INVALID_ARGUMENT, "request_values[credit_amount] must be a double"
        pd = amount.double_value / 10_000 if amount is not None else 0.1
        response = ipb.PredictResponse(
            event_id=f"event-{request.applicant_id}",
            probability_of_default=pd,
            decision=serving_pb2.DECISION_DECLINE if pd >= 0.5 else serving_pb2.DECISION_APPROVE,
            decision_threshold=0.5,
            model_name="credit-risk",
            model_version=3,
            client_request_id=request.client_request_id,
            features=dict(request.request_values),
        )
        if request.HasField("event_time"):
            response.event_time.CopyFrom(request.event_time)
        return response

    async def Predict(self, request: Any, context: Any) -> Any:
        self.authorization.append(dict(context.invocation_metadata() or ()).get("authorization"))
        self.requests.append(request)
        await asyncio.sleep(self.slow_s)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model server down")
        outcome = self._score(request)
        if isinstance(outcome, tuple):
            await context.abort(*outcome)
        return outcome

    async def PredictBatch(self, request: Any, context: Any) -> Any:
        self.authorization.append(dict(context.invocation_metadata() or ()).get("authorization"))
        if len(request.requests) > 3:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 3 items per batch")
        response = ipb.PredictBatchResponse()
        if self.broken_batch == "short":  # one result fewer than requests
            request.requests.pop()
        if self.broken_batch == "empty":  # a result with neither prediction nor error
            response.results.add()
            return response
        for item in request.requests:
            outcome = self._score(item)
            if isinstance(outcome, tuple):
                code, message = outcome
                response.results.add(error=error_pb2.Error(code=code.value[0], message=message))
            else:
                response.results.add(prediction=outcome)
        return response

    async def ListServingModels(self, request: Any, context: Any) -> Any:
        slot = ipb.ServingModel(
            slot=serving_pb2.SERVING_SLOT_CHAMPION, alias="champion", model_name="credit-risk", ready=True
        )
        slot.model_version = 3
        return ipb.ListServingModelsResponse(models=[slot])


@pytest.fixture
async def gateway(serve: Any) -> AsyncIterator[tuple[_Gateway, InferenceClient]]:
    servicer = _Gateway()
    port = await serve(
        "creditrisk.inference.v1.InferenceService",
        lambda server: ipb_grpc.add_InferenceServiceServicer_to_server(servicer, server),
    )
    client = InferenceClient.connect(f"127.0.0.1:{port}", token="backend-token")
    yield servicer, client
    await client.close()


async def test_predict_sends_typed_values_and_the_bearer_token(gateway: Any) -> None:
    servicer, client = gateway
    when = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    answer = await client.predict(
        1,
        {"credit_amount": 6_000.0, "duration_in_month": 24, "foreign_worker": False, "purpose": "car"},
        client_request_id="app-42",
        event_time=when,
    )
    assert answer.probability_of_default == pytest.approx(0.6)
    assert answer.decision == serving_pb2.DECISION_DECLINE
    assert (answer.client_request_id, answer.model_version) == ("app-42", 3)
    assert answer.event_time.ToDatetime(tzinfo=UTC) == when
    sent = servicer.requests[-1].request_values
    assert sent["duration_in_month"].int64_value == 24
    assert sent["foreign_worker"].WhichOneof("kind") == "bool_value"
    assert sent["purpose"].string_value == "car"
    assert servicer.authorization == ["Bearer backend-token"]


async def test_batch_items_fail_on_their_own(gateway: Any) -> None:
    _servicer, client = gateway
    items = await client.predict_batch(
        [
            predict_request(2),
            predict_request(9),
            predict_request(1, {"credit_amount": "a lot"}),
        ]
    )
    assert [item.ok for item in items] == [True, False, False]
    assert items[0].prediction is not None
    assert items[0].prediction.event_id == "event-2"
    assert (items[1].code, items[1].message) == (grpc.StatusCode.NOT_FOUND, "applicant 9 is unknown")
    assert items[2].code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await client.predict_batch([predict_request(1)] * 4)
    assert too_many.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(ValueError, match="at least one"):
        await client.predict_batch([])


async def test_errors_deadlines_and_unavailable(gateway: Any) -> None:
    servicer, client = gateway
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await client.predict(9)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    errors = DownstreamErrors(
        "the inference-gateway",
        on={grpc.StatusCode.INVALID_ARGUMENT: invalid_argument("application", prefix="not scorable")},
    )
    with pytest.raises(InvalidArgument, match="not scorable: request_values\\[credit_amount\\]"):
        await client.predict(1, {"credit_amount": 100}, errors=errors)
    servicer.slow_s = 1.0
    with pytest.raises(DeadlineExceeded, match="the inference-gateway did not answer in time") as late:
        await client.predict(1, timeout_s=0.2)
    assert dependency_status(late.value) is grpc.StatusCode.DEADLINE_EXCEEDED
    servicer.slow_s, servicer.down = 0.0, True
    with pytest.raises(Unavailable, match="the inference-gateway is unavailable"):
        await client.predict(1)


async def test_serving_models(gateway: Any) -> None:
    _servicer, client = gateway
    [champion] = await client.list_serving_models()
    assert (champion.alias, champion.model_version, champion.ready) == ("champion", 3, True)


async def test_bad_input_is_refused_before_any_call(gateway: Any) -> None:
    servicer, client = gateway
    with pytest.raises(TypeError, match="got Decimal"):
        await client.predict(1, {"credit_amount": Decimal("1.5")})
    with pytest.raises(TypeError, match="applicant_id must be an int"):
        await client.predict("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        await client.predict(1, event_time=datetime(2025, 1, 1))
    assert servicer.requests == []


def test_feature_value_conversions() -> None:
    assert feature_value(True).WhichOneof("kind") == "bool_value"
    assert feature_value(3).int64_value == 3
    assert feature_value(3.5).double_value == 3.5
    assert feature_value("x").string_value == "x"
    assert feature_value(None).WhichOneof("kind") == "null_value"
    given = values_pb2.FeatureValue(int64_value=7)
    assert feature_value(given) is given
    request = predict_request(0)
    assert request.HasField("applicant_id")
    assert request.applicant_id == 0


async def test_a_broken_batch_answer_is_never_paired_with_the_wrong_applicant(gateway: Any) -> None:
    # A gateway answering fewer results than requests: the items were returned shifted (item i
    # no longer the answer to request i) without any error.
    servicer, client = gateway
    servicer.broken_batch = "short"
    with pytest.raises(Unavailable, match="answered 1 results for 2 requests"):
        await client.predict_batch([predict_request(1), predict_request(2)])
    servicer.broken_batch = "empty"
    (item,) = await client.predict_batch([predict_request(1)])
    assert not item.ok
    assert item.code is grpc.StatusCode.UNKNOWN  # was OK, with no prediction


def test_numpy_scalars_count_as_their_python_kind() -> None:
    assert feature_value(np.int64(7)).int64_value == 7
    assert feature_value(np.float32(0.5)).double_value == 0.5
    assert feature_value(np.bool_(True)).WhichOneof("kind") == "bool_value"
    assert feature_value(np.str_("radio/tv")).string_value == "radio/tv"
    assert predict_request(np.int64(42)).applicant_id == 42
    with pytest.raises(TypeError, match="got Fraction"):
        feature_value(Fraction(1, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="applicant_id must be an int"):
        predict_request(np.bool_(True))  # type: ignore[arg-type]

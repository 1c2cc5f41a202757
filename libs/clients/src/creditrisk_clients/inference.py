"""Client of the inference-gateway (contract ``creditrisk.inference.v1.InferenceService``): the
client a product backend scores credit applications with.

* :meth:`InferenceClient.predict` -> the ``PredictResponse`` of one application (probability of
  default in [0, 1], decision, threshold, the model version that scored it, the features it was
  given, the event id that ground-truth labels refer to);
* :meth:`InferenceClient.predict_batch` -> one :class:`BatchItem` per application, in order:
  the prediction, or the item's own error (INVALID_ARGUMENT, NOT_FOUND) as a status code and message;
* :meth:`InferenceClient.list_serving_models` -> the gateway's model server slots.

Request values are plain Python values (``bool``, ``int``, ``float``, ``str``, ``None`` for an
explicit null) or ``FeatureValue`` messages: :func:`feature_value` converts them. Every call carries
a deadline (``timeout_s``, else the channel's default) and, when the client has a token, the
``authorization: Bearer <token>`` header (the inference-gateway itself does not check it; an
authenticating proxy in front of it may).

Errors are mapped by :class:`~creditrisk_clients.errors.DownstreamErrors`. The default,
:data:`INFERENCE_ERRORS`, maps UNAVAILABLE to ``Unavailable`` and DEADLINE_EXCEEDED to
``DeadlineExceeded`` (the caller's own 503 / 504); INVALID_ARGUMENT (with a
``google.rpc.BadRequest`` of one field violation each), NOT_FOUND (unknown applicant, no request
values) and RESOURCE_EXHAUSTED stay ``grpc.aio.AioRpcError`` unless the caller gives handlers.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import grpc
import grpc.aio
from creditrisk.common.v1 import values_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk_kit.errors import Unavailable
from google.protobuf import struct_pb2

from creditrisk_clients.base import ContractClient, TokenProvider
from creditrisk_clients.errors import DownstreamErrors

#: The default mapping of the inference-gateway's errors (see the module docstring).
INFERENCE_ERRORS = DownstreamErrors("the inference-gateway")

#: A request value: a plain Python value or a ``FeatureValue`` message.
RequestValue = bool | int | float | str | None | values_pb2.FeatureValue


def feature_value(value: RequestValue) -> values_pb2.FeatureValue:
    """``value`` as a ``FeatureValue``: ``bool`` -> bool, ``int`` -> int64, ``float`` -> double,
    ``str`` -> string, ``None`` -> null; a ``FeatureValue`` unchanged. NumPy and pandas scalars
    (a value read from a DataFrame) count as their Python kind: ``numpy.bool_`` as bool, any
    ``numbers.Integral`` (``numpy.int64``) as int, any other ``numbers.Real`` (``numpy.float32``)
    as float.

    Raises:
        TypeError: Any other type (e.g. a ``Decimal`` or a ``datetime``).
    """
    if isinstance(value, values_pb2.FeatureValue):
        return value
    if value is None:
        return values_pb2.FeatureValue(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return values_pb2.FeatureValue(bool_value=bool(value))  # before int: bool is an int subclass
    if isinstance(value, numbers.Integral):
        return values_pb2.FeatureValue(int64_value=int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, Decimal | Fraction):
        return values_pb2.FeatureValue(double_value=float(value))
    if isinstance(value, str):
        return values_pb2.FeatureValue(string_value=str(value))
    raise TypeError(f"a request value must be bool, int, float, str or None, got {type(value).__name__}")


def predict_request(
    applicant_id: int,
    request_values: Mapping[str, RequestValue] | None = None,
    *,
    client_request_id: str = "",
    event_time: datetime | None = None,
) -> ipb.PredictRequest:
    """The ``PredictRequest`` of one application.

    Args:
        applicant_id: The entity key of the application (the value of the product's join key in
            the feature store, whatever its name there; 0 is a valid id).
        request_values: Values by feature name: overrides of stored features and inputs of
            on-demand views (the request fields the product's model feature service declares);
            see :func:`feature_value`.
        client_request_id: The caller's id for the request (echoed), e.g. the application number.
        event_time: Time of the application (timezone-aware); None: the gateway's clock.

    Raises:
        TypeError: A request value of another type, or a non-integer ``applicant_id``.
        ValueError: A naive ``event_time``.
    """
    if isinstance(applicant_id, bool) or not isinstance(applicant_id, numbers.Integral):
        raise TypeError(f"applicant_id must be an int, got {type(applicant_id).__name__}")
    request = ipb.PredictRequest(applicant_id=int(applicant_id), client_request_id=client_request_id)
    for name, value in (request_values or {}).items():
        request.request_values[name].CopyFrom(feature_value(value))
    if event_time is not None:
        if event_time.tzinfo is None:
            raise ValueError("event_time needs a timezone (a naive datetime is ambiguous)")
        request.event_time.FromDatetime(event_time)
    return request


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one application of a batch.

    Attributes:
        prediction: The prediction, when the item succeeded (else None).
        code: The item's status (``grpc.StatusCode.OK`` when it succeeded).
        message: The item's error message ("" when it succeeded).
    """

    prediction: ipb.PredictResponse | None
    code: grpc.StatusCode
    message: str

    @property
    def ok(self) -> bool:
        """Whether the item was scored."""
        return self.prediction is not None


def _status(code: int) -> grpc.StatusCode:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.UNKNOWN


def _item(result: ipb.PredictBatchResult) -> BatchItem:
    if result.HasField("prediction"):
        return BatchItem(result.prediction, grpc.StatusCode.OK, "")
    code = _status(result.error.code)
    if code is grpc.StatusCode.OK:  # neither a prediction nor an error: never "OK" without one
        return BatchItem(None, grpc.StatusCode.UNKNOWN, "the inference-gateway sent an empty result")
    return BatchItem(None, code, result.error.message)


class InferenceClient(ContractClient):
    """Async client of ``creditrisk.inference.v1.InferenceService`` (see the module docstring).

    Args:
        channel: A ``grpc.aio`` channel to the inference-gateway (a kit ``aio_channel``).
        token: A bearer token sent on every call ("" sends none).
        errors: How the gateway's errors are raised (per call: ``errors=``).
        owns_channel: Close ``channel`` in :meth:`close`.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        token: TokenProvider = "",
        errors: DownstreamErrors = INFERENCE_ERRORS,
        owns_channel: bool = False,
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel, token=token)
        self._stub = ipb_grpc.InferenceServiceStub(channel)

    async def predict(
        self,
        applicant_id: int,
        request_values: Mapping[str, RequestValue] | None = None,
        *,
        client_request_id: str = "",
        event_time: datetime | None = None,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> ipb.PredictResponse:
        """Score one application (arguments as for :func:`predict_request`).

        Args:
            timeout_s: Deadline in seconds (None: the channel's default, if any).

        Raises:
            TypeError / ValueError: As :func:`predict_request`, before any call.
            As ``errors`` maps the gateway's status (see the module docstring).
        """
        request = predict_request(
            applicant_id, request_values, client_request_id=client_request_id, event_time=event_time
        )
        return await self.predict_message(request, timeout_s=timeout_s, errors=errors)

    async def predict_message(
        self,
        request: ipb.PredictRequest,
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> ipb.PredictResponse:
        """Score one application given as a ``PredictRequest`` message (see :meth:`predict`)."""
        response: ipb.PredictResponse = await self.unary(
            self._stub.Predict, request, timeout_s=timeout_s, errors=errors
        )
        return response

    async def predict_batch(
        self,
        requests: Sequence[ipb.PredictRequest],
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> list[BatchItem]:
        """Score several applications (build each with :func:`predict_request`); one
        :class:`BatchItem` per request, in order. An item's INVALID_ARGUMENT or NOT_FOUND is in
        its item, not raised.

        Raises:
            ValueError: An empty batch.
            Unavailable: The gateway answered another number of results than requests.
            As ``errors`` maps the call's status (RESOURCE_EXHAUSTED for a batch over the server's
            limit, UNAVAILABLE for a backend down for the whole batch).
        """
        if not requests:
            raise ValueError("a batch needs at least one request")
        response = await self.unary(
            self._stub.PredictBatch,
            ipb.PredictBatchRequest(requests=requests),
            timeout_s=timeout_s,
            errors=errors,
        )
        if len(response.results) != len(requests):  # items would be paired with other applicants
            raise Unavailable(
                f"the inference-gateway answered {len(response.results)} results for {len(requests)} requests"
            )
        return [_item(result) for result in response.results]

    async def list_serving_models(
        self, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> list[ipb.ServingModel]:
        """The gateway's model server slots (alias, model version loaded, mode, readiness)."""
        response = await self.unary(
            self._stub.ListServingModels, ipb.ListServingModelsRequest(), timeout_s=timeout_s, errors=errors
        )
        return list(response.models)

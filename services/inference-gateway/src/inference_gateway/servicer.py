"""gRPC transport: ``creditrisk.inference.v1.InferenceService`` over :class:`GatewayCore`.

Servicers only convert between proto and domain types; errors are the kit's exceptions, mapped
to statuses by its ``ErrorInterceptor``.
"""

from __future__ import annotations

from typing import Any

from creditrisk.common.v1 import error_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as igrpc
from creditrisk_kit import InvalidArgument, ServiceError, from_proto_timestamp

from inference_gateway.access import SERVICE_NAME, Access, batch_outcome, record
from inference_gateway.core import (
    BadValue,
    GatewayCore,
    ItemError,
    PredictInput,
    Prediction,
    RawValue,
    timestamp,
)
from inference_gateway.values import to_proto

__all__ = ["SERVICE_NAME", "InferenceServicer", "error_to_proto", "input_from_proto", "response_to_proto"]


def input_from_proto(request: ipb.PredictRequest, prefix: str = "") -> PredictInput:
    """Domain input of a PredictRequest (values unchecked; the core checks them).

    Args:
        request: The request.
        prefix: Path of the request in its message, for errors (``requests[3].``).

    Raises:
        InvalidArgument: ``event_time`` out of range (``creditrisk_kit.from_proto_timestamp``).
    """
    values: dict[str, RawValue] = {}
    for name, value in request.request_values.items():
        kind = value.WhichOneof("kind")
        if kind is None:
            values[name] = BadValue("no value set (exactly one branch of FeatureValue is required)")
        elif kind == "null_value":
            values[name] = None
        else:
            values[name] = getattr(value, kind)
    event_time = (
        from_proto_timestamp(request.event_time, field=f"{prefix}event_time")
        if request.HasField("event_time")
        else None
    )
    return PredictInput(
        applicant_id=request.applicant_id if request.HasField("applicant_id") else None,
        request_values=values,
        client_request_id=request.client_request_id,
        event_time=event_time,
    )


def response_to_proto(p: Prediction, *, echo: bool = True) -> ipb.PredictResponse:
    """The PredictResponse of ``p``; ``features`` only when ``echo`` (the caller's role allows)."""
    response = ipb.PredictResponse(
        event_id=p.event_id,
        probability_of_default=p.probability_of_default,
        decision=p.decision,
        decision_threshold=p.decision_threshold,
        model_name=p.model_name,
        model_version=p.model_version,
        serving_slot=p.serving_slot,
        missing_features=p.missing_features,
        trace_id=p.trace_id,
        client_request_id=p.client_request_id,
        event_time=timestamp(p.event_time),
    )
    if echo:
        for name, value in p.features.items():
            response.features[name].CopyFrom(to_proto(value))
    return response


def error_to_proto(error: ServiceError) -> error_pb2.Error:
    """A per-item error of a batch (mirrors google.rpc.Status)."""
    out = error_pb2.Error(code=error.grpc_status_code().value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        out.field_violations.extend(
            error_pb2.FieldViolation(field=v.field, description=v.reason) for v in error.violations
        )
        out.reason = "INVALID_REQUEST_VALUES"
    elif error.grpc_status_code().name == "NOT_FOUND":
        out.reason = "APPLICANT_NOT_FOUND"
    return out


class InferenceServicer(igrpc.InferenceServiceServicer):  # type: ignore[misc]
    """Predict, PredictBatch, ListServingModels; each call counted against the caller's rate limit
    (:class:`~inference_gateway.access.Access`), predictions recorded in the access log."""

    def __init__(self, core: GatewayCore, access: Access) -> None:
        self.core = core
        self.access = access

    async def Predict(self, request: ipb.PredictRequest, context: Any) -> ipb.PredictResponse:
        principal = None
        applicant = request.applicant_id if request.HasField("applicant_id") else None
        given: list[PredictInput] = []
        try:
            principal = self.access.admit()  # a rate-limited call is recorded too
            given = [input_from_proto(request)]
            prediction = await self.core.predict(given[0])
        except ServiceError as exc:
            record("Predict", principal, [applicant], exc.grpc_status_code().name, given)
            raise
        record("Predict", principal, [applicant], "OK", given)
        return response_to_proto(prediction, echo=self.access.echo(principal))

    async def PredictBatch(self, request: ipb.PredictBatchRequest, context: Any) -> ipb.PredictBatchResponse:
        principal = None
        applicants = [r.applicant_id if r.HasField("applicant_id") else None for r in request.requests]
        parsed: list[PredictInput | ItemError] = []
        valid: list[PredictInput] = []
        try:
            principal = self.access.admit(len(request.requests))  # a rate-limited call is recorded too
            self.core.check_batch_size(len(request.requests))
            for i, item in enumerate(request.requests):
                try:  # each item succeeds or fails on its own
                    parsed.append(input_from_proto(item, f"requests[{i}]."))
                except InvalidArgument as exc:
                    parsed.append(ItemError(exc))
            valid = [p for p in parsed if isinstance(p, PredictInput)]
            scored = iter(await self.core.predict_batch(valid)) if valid else iter(())
        except ServiceError as exc:
            record("PredictBatch", principal, applicants, exc.grpc_status_code().name, valid)
            raise
        results = [p if isinstance(p, ItemError) else next(scored) for p in parsed]
        record("PredictBatch", principal, applicants, batch_outcome(results), valid)
        echo = self.access.echo(principal)
        out = ipb.PredictBatchResponse()
        for result in results:
            if isinstance(result, ItemError):
                out.results.add(error=error_to_proto(result.error))
            else:
                out.results.add(prediction=response_to_proto(result, echo=echo))
        return out

    async def ListServingModels(
        self, request: ipb.ListServingModelsRequest, context: Any
    ) -> ipb.ListServingModelsResponse:
        self.access.admit()
        out = ipb.ListServingModelsResponse()
        for m in self.core.serving_models():
            model = out.models.add(
                slot=m.slot,
                alias=m.alias,
                model_name=m.model_name,
                mode=m.mode,
                canary_share=m.canary_share,
                ready=m.ready,
            )
            if m.model_version is not None:
                model.model_version = m.model_version
            if m.since is not None:
                model.since.CopyFrom(timestamp(m.since))
        return out

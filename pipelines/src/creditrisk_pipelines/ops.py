"""The gRPC calls behind the pipeline components: one function per component, no business logic.

Each function validates its arguments (``ValueError`` naming the parameter), calls one service
through its typed client (:mod:`creditrisk_clients`, on the service kit's channel: a default
deadline on unary calls, gRPC's own retries on UNAVAILABLE) in its own event loop, and returns
plain Python values that the kfp components pass on. ``token`` is the pipeline's bearer
credential, a string or a provider called on every RPC (the components pass
:func:`creditrisk_pipelines.credential.pipeline_credential`, read from their environment). A call
that fails raises :class:`ServiceCallError` naming the service, the RPC, the status code and the
server's message.
The decisions themselves stay in the services: the registry-gateway's checks and gate, the
drift-service's retraining policy.

Times are ISO 8601 strings with an offset (``2025-01-01T00:00:00Z``): kfp has no timestamp
parameter type. Hyperparameters are a JSON object string: JSON keeps ``100`` an integer and
``100.0`` a real, where a kfp ``dict`` parameter (a protobuf ``Struct``, whose numbers are doubles)
would turn every integer into a float.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from creditrisk.common.v1 import refs_pb2, serving_pb2, time_range_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk_clients import (
    DownstreamErrors,
    DriftServiceClient,
    FeatureServiceClient,
    GateRefused,
    InferenceClient,
    RegistryClient,
    TrainingServiceClient,
)
from creditrisk_clients.base import TokenProvider
from creditrisk_clients.training import TERMINAL_STATES
from google.protobuf import timestamp_pb2

from creditrisk_pipelines.credential import pipeline_tls

#: Version tag of a registered version naming the pipeline step that registered it (idempotency).
REQUEST_ID_TAG = "pipelines.request_id"
#: Algorithms by the name a pipeline parameter uses (the contract's enum without its prefix).
ALGORITHMS: dict[str, int] = {
    name.removeprefix("ALGORITHM_").lower(): number
    for name, number in tpb.Algorithm.items()
    if number != tpb.ALGORITHM_UNSPECIFIED
}


class ServiceCallError(RuntimeError):
    """A service answered a call with an error status (after the channel's retries).

    Attributes:
        service: the service's name, e.g. ``training-service``.
        rpc: the RPC, e.g. ``StartTrainingJob``.
        code: the gRPC status code.
    """

    def __init__(self, service: str, rpc: str, error: grpc.RpcError) -> None:
        self.service, self.rpc = service, rpc
        self.code: grpc.StatusCode = error.code()
        super().__init__(f"{service} {rpc} failed: {self.code.name}: {error.details()}")


# ---------------------------------------------------------------------- argument checks


def require_target(value: str, name: str) -> str:
    """A gRPC target such as ``127.0.0.1:50051`` or ``dns:///feature-service:50051``.

    Raises:
        ValueError: naming ``name`` when the value is empty or has no port.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty: give the service's gRPC address, e.g. 127.0.0.1:50051")
    if ":" not in value:
        raise ValueError(f"{name}={value!r} has no port: give host:port, e.g. 127.0.0.1:50051")
    return value.strip()


def require_text(value: str, name: str) -> str:
    """A non-empty string. Raises ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty")
    return value.strip()


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 date-time with an offset (``Z`` or ``+01:00``), as an aware UTC datetime.

    Raises:
        ValueError: naming ``name`` for an unparsable value or one without an offset (a naive
            time would silently be read in the pipeline's time zone).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty: give an ISO 8601 time such as 2025-01-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an ISO 8601 time such as 2025-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name}={value!r} has no UTC offset: add Z or +hh:mm")
    return parsed.astimezone(UTC)


def time_range(start: str, end: str, prefix: str = "") -> time_range_pb2.TimeRange:
    """``[start, end)`` as a contract ``TimeRange``.

    Raises:
        ValueError: a time is invalid (see :func:`parse_time`) or ``end`` is not after ``start``.
    """
    first, last = parse_time(start, f"{prefix}start"), parse_time(end, f"{prefix}end")
    if last <= first:
        raise ValueError(f"{prefix}end ({end}) must be after {prefix}start ({start})")
    return time_range_pb2.TimeRange(start=_timestamp(first), end=_timestamp(last))


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return out


def parse_hyperparameters(text: str) -> dict[str, tpb.ParameterValue]:
    """A JSON object of hyperparameters as typed contract values.

    ``{"max_iter": 100, "learning_rate": 0.1, "penalty": "l2", "early_stopping": true}`` gives
    ``int64_value``, ``double_value``, ``string_value`` and ``bool_value`` respectively: an integer
    stays an integer. ``""`` means no hyperparameters (the server's defaults).

    Raises:
        ValueError: the text is not a JSON object, or a value is null, a list, an object or a
            non-finite number (the key is named).
    """
    if text is None or not str(text).strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"hyperparameters_json is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"hyperparameters_json must be a JSON object, got {type(parsed).__name__}")
    out: dict[str, tpb.ParameterValue] = {}
    for key, value in parsed.items():
        if isinstance(value, bool):
            out[key] = tpb.ParameterValue(bool_value=value)
        elif isinstance(value, int):
            out[key] = tpb.ParameterValue(int64_value=value)
        elif isinstance(value, float) and math.isfinite(value):
            out[key] = tpb.ParameterValue(double_value=value)
        elif isinstance(value, str):
            out[key] = tpb.ParameterValue(string_value=value)
        else:
            raise ValueError(
                f"hyperparameters_json[{key!r}] = {value!r}: give a number, a string or a boolean"
            )
    return out


def algorithm_number(name: str) -> int:
    """The contract's ``Algorithm`` value of a name such as ``hist_gradient_boosting``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    key = (name or "").strip().lower().removeprefix("algorithm_")
    if key not in ALGORITHMS:
        raise ValueError(f"algorithm={name!r} is unknown; use one of {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[key]


def _token(token: TokenProvider) -> TokenProvider:
    """A credential string stripped, or a provider (e.g. :func:`creditrisk_pipelines.credential.
    pipeline_credential`'s) as it is: the clients call it on every RPC."""
    return token.strip() if isinstance(token, str) else token


def _bearer(token: TokenProvider) -> TokenProvider:
    current = token() if callable(token) else token
    if not isinstance(current, str) or not current.strip():
        raise ValueError(
            "token is empty: the registry-gateway needs the pipeline's bearer credential "
            "(CREDITRISK_CREDENTIAL_FILE or CREDITRISK_CREDENTIAL)"
        )
    return _token(token)


def _errors(service: str, rpc: str, *, except_codes: tuple[grpc.StatusCode, ...] = ()) -> DownstreamErrors:
    """Every error status of ``rpc`` as a :class:`ServiceCallError` naming ``service``, ``rpc``, the
    code and the server's message; ``except_codes`` stay the ``grpc.RpcError`` (the caller's)."""

    def fail(error: grpc.RpcError) -> Exception:
        return ServiceCallError(service, rpc, error)

    def keep(error: grpc.RpcError) -> Exception:
        return error

    handlers = {
        c: keep if c in except_codes else fail for c in grpc.StatusCode if c is not grpc.StatusCode.OK
    }
    return DownstreamErrors(service, on=handlers)


def _run[T](call: Coroutine[Any, Any, T]) -> T:
    """Run one step's calls in an event loop of their own (the clients are ``grpc.aio``)."""
    return asyncio.run(call)


# ---------------------------------------------------------------------- feature-service


def materialize(
    feature_service: str, start: str, end: str, timeout_s: float = 600.0, token: TokenProvider = ""
) -> dict[str, Any]:
    """``Materialize`` every online feature view over the event times ``[start, end)``.

    Args:
        feature_service: feature-service gRPC target.
        start: ISO 8601 start of the event-time range.
        end: ISO 8601 end of the event-time range.
        timeout_s: deadline of the call, in seconds.
        token: the pipeline's bearer credential (a role with ``write_features``).

    Returns:
        ``{"views": [names], "rows_written": total rows (0 when the store does not report it),
        "seconds": wall-clock seconds}``.

    Raises:
        ValueError: a bad argument (named).
        ServiceCallError: the feature-service refused or failed the call.
    """
    target, window = require_target(feature_service, "feature_service"), time_range(start, end)
    began = time.monotonic()

    async def call() -> list[Any]:
        async with FeatureServiceClient.connect(target, tls=pipeline_tls(), token=_token(token)) as client:
            errors = _errors("feature-service", "Materialize")
            return await client.materialize(window, timeout_s=timeout_s, errors=errors)

    views = _run(call())
    return {
        "views": [v.feature_view for v in views],
        "rows_written": sum(v.rows_written for v in views if v.HasField("rows_written")),
        "seconds": round(time.monotonic() - began, 3),
    }


# ---------------------------------------------------------------------- training-service


@dataclass(frozen=True)
class TrainingRequest:
    """What the ``train`` component asks the training-service for (see :func:`build_training_spec`)."""

    feature_service_name: str
    feature_service_version: str
    label_view: str
    label_column: str
    start: str
    end: str
    algorithm: str
    hyperparameters_json: str = ""
    cv_folds: int = 0
    cv_repeats: int = 0
    test_fraction: float = -1.0
    gate_window_days: int = 0
    seed: int = 42
    experiment_name: str = ""
    run_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def build_training_spec(request: TrainingRequest) -> tpb.TrainingJobSpec:
    """The contract's ``TrainingJobSpec`` of a request.

    Evaluation figures of 0 (``cv_folds``, ``cv_repeats``, ``gate_window_days``) or a negative
    ``test_fraction`` mean "the server's default" (left unset).

    Raises:
        ValueError: naming the bad parameter (empty names, bad times, unknown algorithm, bad
            hyperparameters JSON, negative evaluation figures).
    """
    evaluation = tpb.EvaluationProtocol()
    for name in ("cv_folds", "cv_repeats", "gate_window_days"):
        value = getattr(request, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} must be an integer >= 0 (0 = the server's default)")
        if value:
            setattr(evaluation, name, value)
    if request.test_fraction >= 0:
        evaluation.test_fraction = float(request.test_fraction)
    return tpb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(
            name=require_text(request.feature_service_name, "feature_service_name"),
            version=request.feature_service_version.strip(),
        ),
        label=tpb.LabelSource(
            feature_view=require_text(request.label_view, "label_view"),
            label_column=require_text(request.label_column, "label_column"),
        ),
        application_time_range=time_range(request.start, request.end, "training_"),
        model=tpb.ModelSpec(
            algorithm=algorithm_number(request.algorithm),
            hyperparameters=parse_hyperparameters(request.hyperparameters_json),
        ),
        evaluation=evaluation,
        seed=request.seed,
        experiment_name=request.experiment_name,
        run_name=request.run_name,
        tags=request.tags,
    )


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training job: its MLflow run (not a registered model)."""

    job_id: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    decision_threshold: float


def train(
    training_service: str,
    request: TrainingRequest,
    request_id: str,
    timeout_s: float = 1800.0,
    token: TokenProvider = "",
) -> TrainingOutcome:
    """``StartTrainingJob`` (idempotent by ``request_id``), then follow the job to its end.

    The job is followed with ``WatchTrainingJob``; a stream broken by UNAVAILABLE (the service
    restarting or a network blip) is resumed, until ``timeout_s``. A retried component with the
    same ``request_id`` finds the same job instead of training twice.

    Args:
        training_service: training-service gRPC target.
        request: what to train.
        request_id: idempotency key, e.g. ``<pipeline job id>/train``.
        timeout_s: how long to wait for the job, in seconds.
        token: the pipeline's bearer credential (a role with ``train``).

    Returns:
        The job id, the MLflow run id, the model URI, the run's metrics and decision threshold.

    Raises:
        ValueError: a bad argument (named).
        ServiceCallError: the service refused the job (e.g. INVALID_ARGUMENT naming a
            hyperparameter) or could not be reached.
        RuntimeError: the job ended FAILED or CANCELLED (its error code and message), or did not
            end within ``timeout_s``.
    """
    target = require_target(training_service, "training_service")
    spec = build_training_spec(request)

    async def call() -> tpb.TrainingJob:
        async with TrainingServiceClient.connect(target, tls=pipeline_tls(), token=_token(token)) as client:
            errors = _errors("training-service", "StartTrainingJob")
            started = await client.start_job(spec, request_id, timeout_s=60, errors=errors)
            if started.state in TERMINAL_STATES:
                return started
            errors = _errors("training-service", "WatchTrainingJob")
            return await client.wait_for_job(started.id, timeout_s=timeout_s, errors=errors)

    try:
        job = _run(call())
    except TimeoutError as exc:
        raise RuntimeError(str(exc)) from None
    if job.state != tpb.TRAINING_JOB_STATE_SUCCEEDED:
        state = tpb.TrainingJobState.Name(job.state)
        code = _code_name(job.error.code) if job.error.code else "-"
        raise RuntimeError(
            f"training job {job.id} ended {state} ({code}): {job.error.message or job.message}"
        )
    result = job.result
    return TrainingOutcome(
        job_id=job.id,
        run_id=result.mlflow_run_id,
        model_uri=result.model_uri,
        metrics=dict(result.metrics),
        decision_threshold=result.decision_threshold,
    )


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return f"code {code}"


# ---------------------------------------------------------------------- registry-gateway


def register(
    registry: str,
    token: TokenProvider,
    run_id: str,
    model_name: str,
    feature_service_name: str,
    request_id: str,
    timeout_s: float = 300.0,
) -> int:
    """``RegisterModelVersion`` of the run's ``model`` artifact (the registry-gateway's checks).

    Idempotent by ``request_id``: the version is tagged with it, and a retry that finds a version
    of this run with the same tag returns that version instead of registering a second one.

    Returns:
        The registered version number (>= 1).

    Raises:
        ValueError: a bad argument (named).
        ServiceCallError: a failed check (FAILED_PRECONDITION naming it), an unknown run
            (NOT_FOUND), a token below promoter (PERMISSION_DENIED), or an unreachable service.
    """
    target, token = require_target(registry, "registry"), _bearer(token)
    run_id, model_name = require_text(run_id, "run_id"), require_text(model_name, "model_name")
    feature_service = refs_pb2.FeatureServiceRef(
        name=require_text(feature_service_name, "feature_service_name")
    )

    async def call() -> int:
        async with RegistryClient.connect(target, tls=pipeline_tls(), token=token) as client:
            existing = await _version_with_request_id(client, model_name, run_id, request_id)
            if existing:
                return existing
            version = await client.register_model_version(
                run_id,
                model_name,
                feature_service,
                description=f"registered by the training pipeline ({request_id})",
                tags={REQUEST_ID_TAG: request_id} if request_id else {},
                timeout_s=timeout_s,
                errors=_errors("registry-gateway", "RegisterModelVersion"),
            )
            return int(version.version)

    return _run(call())


async def _version_with_request_id(
    client: RegistryClient, model_name: str, run_id: str, request_id: str
) -> int:
    if not request_id:
        return 0
    errors = _errors("registry-gateway", "ListModelVersions", except_codes=(grpc.StatusCode.NOT_FOUND,))
    try:
        versions, _ = await client.list_model_versions(model_name, page_size=20, timeout_s=30, errors=errors)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:  # no registered model yet
            return 0
        raise
    for version in versions:
        if version.run_id == run_id and version.tags.get(REQUEST_ID_TAG) == request_id:
            return int(version.version)
    return 0


@dataclass(frozen=True)
class PromotionOutcome:
    """What the gate decided.

    Attributes:
        promoted: whether ``version`` now holds ``champion``.
        champion_version: the champion after the gate (``version`` when promoted, the earlier
            champion when refused, 0 when there is none).
        reasons: the gate's reasons, one sentence per rule, with figures.
        figures: ``challenger_auc``, ``champion_auc``, ``delta``, ``ci_lower``, ``ci_upper``,
            ``window_rows`` where the gate computed them.
    """

    promoted: bool
    champion_version: int
    reasons: list[str]
    figures: dict[str, float]


def _figures(gate: rpb.GateResult) -> dict[str, float]:
    figures = {"challenger_auc": gate.challenger.roc_auc, "window_rows": float(gate.window_row_count)}
    if gate.HasField("champion"):
        figures["champion_auc"] = gate.champion.roc_auc
    for name in ("delta", "ci_lower", "ci_upper", "absolute_floor"):
        if gate.HasField(name):
            figures[name] = getattr(gate, name)
    return figures


def promote(
    registry: str, token: TokenProvider, model_name: str, version: int, timeout_s: float = 600.0
) -> PromotionOutcome:
    """``PromoteModelVersion`` to ``champion`` through the registry-gateway's gate.

    A refusal by the gate (FAILED_PRECONDITION with a ``GateResult`` detail) is an outcome, not an
    error: ``promoted`` is False and the reasons say why. A retry after a promotion that went
    through finds ``champion`` already at ``version`` and reports it promoted.

    Raises:
        ValueError: a bad argument (named; ``version`` must be >= 1).
        ServiceCallError: any other error (unknown version, a token below promoter, too few
            labelled rows in the gate window, an unreachable service).
    """
    target, token = require_target(registry, "registry"), _bearer(token)
    model_name = require_text(model_name, "model_name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version={version!r} must be a registered version number >= 1")

    async def call() -> PromotionOutcome:
        async with RegistryClient.connect(target, tls=pipeline_tls(), token=token) as client:
            if await _champion(client, model_name) == version:
                return PromotionOutcome(True, version, ["already champion (a retried promotion)"], {})
            try:
                response = await client.promote_model_version(
                    model_name,
                    version,
                    reason="training pipeline",
                    timeout_s=timeout_s,
                    errors=_errors("registry-gateway", "PromoteModelVersion"),
                )
            except GateRefused as refused:
                gate = refused.gate
                return PromotionOutcome(
                    False, await _champion(client, model_name), list(gate.reasons), _figures(gate)
                )
            return PromotionOutcome(
                True, int(response.change.to_version), list(response.gate.reasons), _figures(response.gate)
            )

    return _run(call())


async def _champion(client: RegistryClient, name: str) -> int:
    errors = _errors("registry-gateway", "GetModelVersion", except_codes=(grpc.StatusCode.NOT_FOUND,))
    try:
        champion = await client.get_model_version(name, alias="champion", timeout_s=30, errors=errors)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return 0
        raise
    return int(champion.version)


# ---------------------------------------------------------------------- inference-gateway


def confirm_rollout(
    inference_gateway: str,
    model_name: str,
    version: int,
    timeout_s: float = 300.0,
    poll_s: float = 1.0,
    *,
    token: TokenProvider = "",
) -> dict[str, Any]:
    """Wait until the gateway's champion slot serves ``version`` of ``model_name`` and is ready,
    asking as ``token`` (a credential with the gateway's read_registry role).

    ``version`` 0 (no champion: a first champion refused by the gate) has nothing to confirm and
    returns at once with ``confirmed`` False.

    Returns:
        ``{"confirmed": bool, "version": served version, "seconds": waited}``.

    Raises:
        ValueError: a bad argument (named).
        TimeoutError: the slot did not serve ``version`` (and report ready) within ``timeout_s``;
            the message has what it served last.
        ServiceCallError: the gateway answered an error other than UNAVAILABLE.
    """
    target, model_name = (
        require_target(inference_gateway, "inference_gateway"),
        require_text(model_name, "model_name"),
    )
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version={version!r} must be >= 0")
    began = time.monotonic()
    if version == 0:
        return {"confirmed": False, "version": 0, "seconds": 0.0}
    resumable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    errors = _errors("inference-gateway", "ListServingModels", except_codes=resumable)

    async def call() -> dict[str, Any]:
        last = "no answer"
        async with InferenceClient.connect(target, tls=pipeline_tls(), token=token) as client:
            while time.monotonic() - began < timeout_s:
                try:
                    slots = await client.list_serving_models(timeout_s=10, errors=errors)
                except grpc.RpcError as error:
                    last = error.code().name
                    slots = []
                for slot in slots:
                    if slot.slot != serving_pb2.SERVING_SLOT_CHAMPION:
                        continue
                    served = slot.model_version if slot.HasField("model_version") else 0
                    last = f"{slot.model_name} v{served}, ready={slot.ready}"
                    if slot.model_name == model_name and served == version and slot.ready:
                        return {
                            "confirmed": True,
                            "version": served,
                            "seconds": round(time.monotonic() - began, 3),
                        }
                await asyncio.sleep(poll_s)
        raise TimeoutError(
            f"the champion slot did not serve {model_name} v{version} within {timeout_s:.0f} s (last: {last})"
        )

    return _run(call())


# ---------------------------------------------------------------------- drift-service


def _window(model_name: str, version: int, start: str, end: str) -> dpb.Window:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"model_version={version!r} must be >= 0 (0 = every version in the window)")
    window = dpb.Window(
        model_name=require_text(model_name, "model_name"), time_range=time_range(start, end, "window_")
    )
    if version:
        window.model_version = version
    return window


def compute_drift(
    drift_service: str,
    model_name: str,
    model_version: int,
    start: str,
    end: str,
    timeout_s: float = 600.0,
    token: TokenProvider = "",
) -> dict[str, Any]:
    """``ComputeDrift`` of a window against each version's training dataset (the default reference),
    asking as ``token`` (a credential with the drift-service's ``read_monitoring`` role).

    Returns:
        ``{"dataset_drift": any report drifted, "drift_share": largest share over the reports,
        "drifted_features": sorted names, "trigger_ids": [ids], "trigger_reasons": [messages],
        "report_urls": [HTML URLs], "rows": current rows over the reports, "statuses": [names]}``.

    Raises:
        ValueError: a bad argument (named).
        ServiceCallError: e.g. NOT_FOUND for an unknown version, FAILED_PRECONDITION when no
            reference is available, UNAVAILABLE.
    """
    target, window = (
        require_target(drift_service, "drift_service"),
        _window(model_name, model_version, start, end),
    )

    async def call() -> dpb.ComputeDriftResponse:
        async with DriftServiceClient.connect(target, tls=pipeline_tls(), token=_token(token)) as client:
            errors = _errors("drift-service", "ComputeDrift")
            return await client.compute_drift(window, timeout_s=timeout_s, errors=errors)

    response = _run(call())
    reports = list(response.reports)
    return {
        "dataset_drift": any(r.dataset_drift for r in reports),
        "drift_share": max((r.drift_share for r in reports), default=0.0),
        "drifted_features": sorted({f.feature for r in reports for f in r.features if f.drifted}),
        "trigger_ids": [t.id for t in response.trigger_events],
        "trigger_reasons": [reason.message for t in response.trigger_events for reason in t.reasons],
        "report_urls": [r.html_report_url for r in reports],
        "rows": sum(r.current_row_count for r in reports),
        "statuses": [dpb.ReportStatus.Name(r.status).removeprefix("REPORT_STATUS_") for r in reports],
    }


def compute_performance(
    drift_service: str,
    model_name: str,
    model_version: int,
    start: str,
    end: str,
    timeout_s: float = 120.0,
    token: TokenProvider = "",
) -> dict[str, Any]:
    """``GetPerformance`` over the labelled predictions of a window, asking as ``token`` (a
    credential with the drift-service's ``read_monitoring`` role).

    Returns:
        ``{"roc_auc": lowest ROC AUC over the reports (-1 when none could be computed),
        "labelled": labelled predictions, "predictions": returned predictions,
        "default_rate": observed default rate of the first report with labels (-1 without)}``.

    Raises:
        ValueError: a bad argument (named).
        ServiceCallError: the drift-service refused or failed the call.
    """
    target, window = (
        require_target(drift_service, "drift_service"),
        _window(model_name, model_version, start, end),
    )

    async def call() -> list[dpb.PerformanceReport]:
        async with DriftServiceClient.connect(target, tls=pipeline_tls(), token=_token(token)) as client:
            errors = _errors("drift-service", "GetPerformance")
            return await client.get_performance(window, timeout_s=timeout_s, errors=errors)

    reports = _run(call())
    aucs = [r.roc_auc for r in reports if r.HasField("roc_auc")]
    rates = [r.default_rate for r in reports if r.HasField("default_rate")]
    return {
        "roc_auc": min(aucs) if aucs else -1.0,
        "labelled": sum(r.labelled_count for r in reports),
        "predictions": sum(r.prediction_count for r in reports),
        "default_rate": rates[0] if rates else -1.0,
    }


def decide(trigger_count: int, force: bool = False) -> tuple[bool, str]:
    """Retrain iff the drift-service's policy raised a trigger event over the window (or forced).

    The policy (dataset drift, PSI, AUC drop, minimum rows) is the drift-service's; this only reads
    its verdict.

    Returns:
        ``(retrain, why)``.

    Raises:
        ValueError: ``trigger_count`` is negative.
    """
    if trigger_count < 0:
        raise ValueError(f"trigger_count={trigger_count} must be >= 0")
    if trigger_count:
        return True, f"{trigger_count} trigger event(s) raised by the drift-service's policy"
    if force:
        return True, "no trigger event; retraining forced by the force_retrain parameter"
    return False, "no trigger event over the window: the champion stays, nothing to retrain"

"""Conversions between ``creditrisk.training.v1`` messages and the domain types.

:func:`parse_spec` validates a ``TrainingJobSpec`` completely before any job exists and raises one
:class:`~creditrisk_kit.InvalidArgument` naming **every** offending field (``spec.model.algorithm``,
``spec.model.hyperparameters.<name>``, ``spec.evaluation.<field>``, ``spec.application_time_range``,
``spec.label...``, ``spec.feature_service.name``, ``spec.excluded_features...``). Typed
hyperparameters keep their type: an ``int64_value`` arrives as a Python ``int`` (and is logged to
MLflow as ``"50"``, not ``"50.0"``); an integral ``double_value`` for an integer hyperparameter is
accepted and converted (:mod:`training_service.spec`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from creditrisk.common.v1 import error_pb2, refs_pb2, time_range_pb2
from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk_kit import FieldViolation, InvalidArgument, ServiceError, from_proto_timestamp
from creditrisk_products import Product
from google.protobuf import timestamp_pb2

from training_service.evaluation import CostMatrix
from training_service.policy import FeaturePolicy
from training_service.spec import (
    Algorithm,
    EvaluationProtocol,
    ModelSpec,
    ParamValue,
    validate_hyperparameters,
)
from training_service.training import TrainingSpec

_ALGORITHMS = {
    pb.ALGORITHM_LOGISTIC_REGRESSION: Algorithm.LOGISTIC_REGRESSION,
    pb.ALGORITHM_HIST_GRADIENT_BOOSTING: Algorithm.HIST_GRADIENT_BOOSTING,
    pb.ALGORITHM_RANDOM_FOREST: Algorithm.RANDOM_FOREST,
    pb.ALGORITHM_SOFT_VOTING_ENSEMBLE: Algorithm.SOFT_VOTING_ENSEMBLE,
}
_ALGORITHM_ENUM = {v: k for k, v in _ALGORITHMS.items()}


@dataclass(frozen=True)
class Defaults:
    """Server defaults for unset fields of a request (from the settings; the gate window, the
    label source and the feature policy come from the product)."""

    experiment_name: str = "credit-risk"
    cv_folds: int = 5
    cv_repeats: int = 2
    test_fraction: float = 0.2


@dataclass(frozen=True)
class JobSpec:
    """A validated training job (``TrainingJobSpec`` with every default resolved but the version).

    Attributes:
        training: the modelling part (model, protocol, seed, policy, application-time range).
        hyperparameters: the resolved hyperparameters.
        feature_service / feature_service_version: what to train on ("" version: the registered one,
            resolved at start).
        label_view / label_column: where the labels come from.
        start / end: application-time range ``[start, end)``, UTC.
        experiment_name / run_name / tags: MLflow names.
    """

    training: TrainingSpec
    hyperparameters: dict[str, ParamValue]
    feature_service: str
    feature_service_version: str
    label_view: str
    label_column: str
    start: datetime
    end: datetime
    experiment_name: str
    run_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def from_timestamp(ts: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A client's protobuf Timestamp as an aware UTC datetime.

    Raises:
        InvalidArgument: naming ``field`` (or ``field.nanos``) when out of range
            (``creditrisk_kit.from_proto_timestamp``).
    """
    return from_proto_timestamp(ts, field=field)


def to_timestamp(when: datetime | pd.Timestamp) -> timestamp_pb2.Timestamp:
    """A protobuf timestamp."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(pd.Timestamp(when).to_pydatetime())
    return out


def _parameter(value: pb.ParameterValue) -> object:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


def parameter_value(value: ParamValue) -> pb.ParameterValue:
    """A resolved hyperparameter as a typed ``ParameterValue`` (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return pb.ParameterValue(bool_value=value)
    if isinstance(value, int):
        return pb.ParameterValue(int64_value=value)
    if isinstance(value, float):
        return pb.ParameterValue(double_value=value)
    return pb.ParameterValue(string_value=str(value))


def parse_spec(spec: pb.TrainingJobSpec, defaults: Defaults, product: Product) -> JobSpec:
    """Validate a request's spec and resolve its defaults (seed drawn when unset).

    The product gives: the label view and column when the request leaves them empty
    (``[label].view`` / ``.column``), the gate window when unset (``[gate].window_days``), the
    default feature policy (``[features].protected_attributes``), the frame's key and label
    columns and the cost matrix (``[decision]``).

    Raises:
        InvalidArgument: naming every offending field at once.
    """
    violations: list[FieldViolation] = []
    if not spec.feature_service.name:
        violations.append(FieldViolation("spec.feature_service.name", "required"))
    label_view, label_column = product.label.view, product.label.column
    if spec.HasField("label"):
        source = spec.label.WhichOneof("source")
        if source == "table":
            violations.append(
                FieldViolation(
                    "spec.label.table",
                    "not supported: labels come through the feature-service; give spec.label.feature_view",
                )
            )
        elif spec.label.feature_view:
            label_view = spec.label.feature_view
        label_column = spec.label.label_column or label_column
    start = end = datetime.min.replace(tzinfo=UTC)
    window = spec.application_time_range
    if not spec.HasField("application_time_range"):
        violations.append(FieldViolation("spec.application_time_range", "required"))
    elif not window.HasField("start") or not window.HasField("end"):
        for end_name in ("start", "end"):
            if not window.HasField(end_name):
                violations.append(FieldViolation(f"spec.application_time_range.{end_name}", "required"))
    else:
        ends: list[datetime] = []
        for end_name in ("start", "end"):
            try:
                ends.append(
                    from_timestamp(getattr(window, end_name), f"spec.application_time_range.{end_name}")
                )
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        if len(ends) == 2:
            start, end = ends
            if start >= end:
                violations.append(FieldViolation("spec.application_time_range", "end must be after start"))
    algorithm = _ALGORITHMS.get(spec.model.algorithm)
    resolved: dict[str, ParamValue] = {}
    if algorithm is None:
        violations.append(
            FieldViolation(
                "spec.model.algorithm",
                "required: ALGORITHM_LOGISTIC_REGRESSION, ALGORITHM_HIST_GRADIENT_BOOSTING, "
                "ALGORITHM_RANDOM_FOREST or ALGORITHM_SOFT_VOTING_ENSEMBLE",
            )
        )
    else:
        given = {name: _parameter(value) for name, value in spec.model.hyperparameters.items()}
        try:
            resolved = validate_hyperparameters(algorithm, given, field_prefix="spec.model.hyperparameters")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    evaluation = spec.evaluation
    protocol = EvaluationProtocol(
        cv_folds=evaluation.cv_folds if evaluation.HasField("cv_folds") else defaults.cv_folds,
        cv_repeats=evaluation.cv_repeats if evaluation.HasField("cv_repeats") else defaults.cv_repeats,
        test_fraction=evaluation.test_fraction
        if evaluation.HasField("test_fraction")
        else defaults.test_fraction,
        gate_window_days=(
            evaluation.gate_window_days
            if evaluation.HasField("gate_window_days")
            else product.gate.window_days
        ),
    )
    try:
        protocol.validate("spec.evaluation")
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    policy = FeaturePolicy.default(product)
    if spec.HasField("excluded_features"):
        try:
            policy = policy.override(
                list(spec.excluded_features.features),
                spec.excluded_features.reason,
                field_prefix="spec.excluded_features",
            )
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if spec.HasField("seed") and not 0 <= spec.seed < 2**32:
        violations.append(FieldViolation("spec.seed", "must be in [0, 2^32)"))
    if violations:
        raise InvalidArgument.from_violations(violations)
    assert algorithm is not None
    seed = spec.seed if spec.HasField("seed") else random.SystemRandom().randrange(2**31)
    training = TrainingSpec(
        model=ModelSpec(algorithm, resolved),
        evaluation=protocol,
        seed=seed,
        policy=policy,
        costs=CostMatrix.of(product),
        application_time_range=(pd.Timestamp(start), pd.Timestamp(end)),
    )
    return JobSpec(
        training=training,
        hyperparameters=resolved,
        feature_service=spec.feature_service.name,
        feature_service_version=spec.feature_service.version,
        label_view=label_view,
        label_column=label_column,
        start=start,
        end=end,
        experiment_name=spec.experiment_name or defaults.experiment_name,
        run_name=spec.run_name,
        tags=dict(spec.tags),
    )


def echo_spec(job: JobSpec, feature_service_version: str) -> pb.TrainingJobSpec:
    """The spec as run, every default resolved (the job's ``spec``)."""
    training = job.training
    protocol = training.evaluation
    policy = training.policy
    assert training.seed is not None
    return pb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name=job.feature_service, version=feature_service_version),
        label=pb.LabelSource(feature_view=job.label_view, label_column=job.label_column),
        application_time_range=time_range_pb2.TimeRange(
            start=to_timestamp(job.start), end=to_timestamp(job.end)
        ),
        model=pb.ModelSpec(
            algorithm=_ALGORITHM_ENUM[training.model.algorithm],
            hyperparameters={k: parameter_value(v) for k, v in job.hyperparameters.items()},
        ),
        evaluation=pb.EvaluationProtocol(
            cv_folds=protocol.cv_folds,
            cv_repeats=protocol.cv_repeats,
            test_fraction=protocol.test_fraction,
            gate_window_days=protocol.gate_window_days,
        ),
        seed=training.seed,
        experiment_name=job.experiment_name,
        run_name=job.run_name,
        tags=job.tags,
        excluded_features=pb.ExcludedFeatures(features=list(policy.excluded), reason=policy.reason),
    )


def error_message(exc: BaseException, fallback_code: int = 13) -> error_pb2.Error:
    """A domain error as ``common.v1.Error`` (code, message, violations, reason); never a traceback.

    Args:
        exc: the exception that ended the job.
        fallback_code: code of an unexpected exception (13 = INTERNAL); its message is generic.
    """
    if isinstance(exc, ServiceError):
        code = exc.grpc_status_code().value[0]
        if code != 13:
            error = error_pb2.Error(code=code, message=exc.message, reason=exc.grpc_status_code().name)
            for violation in getattr(exc, "violations", ()):
                if isinstance(violation, FieldViolation):
                    error.field_violations.add(field=violation.field, description=violation.reason)
            return error
    return error_pb2.Error(
        code=fallback_code, message="internal error; see the training-service log", reason="INTERNAL"
    )

"""What to train: algorithms, their typed hyperparameter schemas, the evaluation protocol.

These are the domain types behind ``creditrisk.training.v1`` (``ModelSpec``, ``ParameterValue``,
``EvaluationProtocol``); the gRPC layer converts the messages into them and back (the echoed,
resolved spec). Validation collects every problem and raises one
:class:`~creditrisk_kit.errors.InvalidArgument` naming each offending field.

Integral floats for integer hyperparameters: a value such as ``200.0`` given for ``max_iter``
(JSON, YAML and Kubeflow parameter paths turn integers into floats) is **accepted** and converted to
``200``; a float with a fractional part (``200.5``), a non-finite float, a string or a boolean is
rejected. Integers given for a float hyperparameter are accepted (``C = 1`` means ``1.0``). Booleans
are never accepted as numbers (``True`` is not ``1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from creditrisk_kit.errors import FieldViolation, InvalidArgument

ParamValue = int | float | str | bool
HYPERPARAMETERS_FIELD = "model_spec.hyperparameters"


class Algorithm(StrEnum):
    """The learning algorithm (``creditrisk.training.v1.Algorithm`` without its prefix)."""

    LOGISTIC_REGRESSION = "LOGISTIC_REGRESSION"
    """Scorecard style: imputation, one-hot encoding, scaling, L2-penalised logistic regression."""
    HIST_GRADIENT_BOOSTING = "HIST_GRADIENT_BOOSTING"
    """Histogram gradient boosting (missing values handled natively, one-hot categoricals)."""
    RANDOM_FOREST = "RANDOM_FOREST"
    """Random forest: median imputation, one-hot categoricals, bagged fully grown decision trees."""
    SOFT_VOTING_ENSEMBLE = "SOFT_VOTING_ENSEMBLE"
    """Soft vote (weighted mean of P(default)) of the three pipelines above, each fitted on its own."""


@dataclass(frozen=True)
class HyperParameter:
    """Schema of one hyperparameter.

    Attributes:
        name: scikit-learn parameter name of the estimator.
        type: ``int``, ``float``, ``str`` or ``bool``.
        default: value used when the request leaves it unset.
        minimum / maximum: numeric bounds (``None`` = unbounded).
        min_exclusive / max_exclusive: whether a bound itself is excluded.
        choices: allowed values of a ``str`` parameter.
        description: what it does, for docs and error messages.
    """

    name: str
    type: type
    default: ParamValue
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[str, ...] = ()
    description: str = ""

    def range_text(self) -> str:
        """The allowed range or choices, e.g. ``(0, 1e+06]``."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{'(' if self.min_exclusive else '['}{low}, {high}{')' if self.max_exclusive else ']'}"

    def check(self, value: object) -> tuple[ParamValue | None, str | None]:
        """``(converted value, None)`` when valid, else ``(None, reason)``."""
        if self.type is bool:
            if isinstance(value, bool):
                return value, None
            return None, "must be a bool"
        if self.type is str:
            if not isinstance(value, str):
                return None, "must be a string"
            if self.choices and value not in self.choices:
                return None, f"must be {self.range_text()}"
            return value, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"must be {'an int' if self.type is int else 'a float'}"
        if isinstance(value, float) and not math.isfinite(value):
            return None, "must be finite"
        number: int | float
        if self.type is int:
            if isinstance(value, float):
                if not value.is_integer():
                    return None, "must be an int (a float is accepted only with an integral value)"
                number = int(value)
            else:
                number = value
        else:
            number = float(value)
        too_low = self.minimum is not None and (
            number < self.minimum or (self.min_exclusive and number == self.minimum)
        )
        too_high = self.maximum is not None and (
            number > self.maximum or (self.max_exclusive and number == self.maximum)
        )
        if too_low or too_high:
            return None, f"out of range: must be in {self.range_text()}"
        return number, None


def _schema(*params: HyperParameter) -> dict[str, HyperParameter]:
    return {p.name: p for p in params}


#: Hyperparameter schemas per algorithm. Defaults are the platform's (documented in
#: docs/model-quality.md), not always scikit-learn's: e.g. early stopping is off for reproducibility.
HYPERPARAMETERS: dict[Algorithm, dict[str, HyperParameter]] = {
    Algorithm.LOGISTIC_REGRESSION: _schema(
        HyperParameter("C", float, 1.0, 0.0, 1e6, min_exclusive=True, description="inverse L2 strength"),
        HyperParameter("max_iter", int, 1000, 1, 100_000, description="solver iterations"),
        HyperParameter("tol", float, 1e-6, 0.0, 1.0, min_exclusive=True, description="solver tolerance"),
        HyperParameter("fit_intercept", bool, True, description="fit an intercept"),
        HyperParameter(
            "class_weight", str, "none", choices=("none", "balanced"), description="class weighting"
        ),
    ),
    Algorithm.HIST_GRADIENT_BOOSTING: _schema(
        HyperParameter("learning_rate", float, 0.05, 0.0, 1.0, min_exclusive=True, description="shrinkage"),
        HyperParameter("max_iter", int, 200, 1, 10_000, description="boosting iterations"),
        HyperParameter("max_leaf_nodes", int, 8, 2, 4096, description="leaves per tree"),
        HyperParameter("max_depth", int, 0, 0, 1000, description="tree depth; 0 = unlimited"),
        HyperParameter("min_samples_leaf", int, 20, 1, 100_000, description="rows per leaf"),
        HyperParameter("l2_regularization", float, 1.0, 0.0, 1e6, description="L2 on leaf values"),
        HyperParameter(
            "max_features", float, 1.0, 0.0, 1.0, min_exclusive=True, description="feature share per split"
        ),
        HyperParameter("max_bins", int, 255, 2, 255, description="histogram bins"),
        HyperParameter("early_stopping", bool, False, description="stop on a validation split"),
        HyperParameter(
            "class_weight", str, "none", choices=("none", "balanced"), description="class weighting"
        ),
    ),
    Algorithm.RANDOM_FOREST: _schema(
        HyperParameter("n_estimators", int, 500, 1, 5000, description="trees"),
        HyperParameter(
            "max_features",
            float,
            0.1,
            0.0,
            1.0,
            min_exclusive=True,
            description="share of the encoded features tried per split (0.1 of 56 = 5)",
        ),
        HyperParameter("min_samples_leaf", int, 3, 1, 100_000, description="rows per leaf"),
        HyperParameter("max_depth", int, 0, 0, 1000, description="tree depth; 0 = unlimited"),
        HyperParameter(
            "class_weight",
            str,
            "none",
            choices=("none", "balanced", "balanced_subsample"),
            description="class weighting",
        ),
    ),
    Algorithm.SOFT_VOTING_ENSEMBLE: _schema(
        HyperParameter(
            "lr_weight", float, 1.0, 0.0, 1000.0, min_exclusive=True, description="vote weight of LR"
        ),
        HyperParameter(
            "hgb_weight", float, 1.0, 0.0, 1000.0, min_exclusive=True, description="vote weight of HGB"
        ),
        HyperParameter(
            "rf_weight", float, 1.0, 0.0, 1000.0, min_exclusive=True, description="vote weight of RF"
        ),
        HyperParameter(
            "lr_C", float, 1.0, 0.0, 1e6, min_exclusive=True, description="LR member: inverse L2 strength"
        ),
        HyperParameter(
            "hgb_max_features",
            float,
            1.0,
            0.0,
            1.0,
            min_exclusive=True,
            description="HGB member: feature share per split",
        ),
        HyperParameter("rf_min_samples_leaf", int, 3, 1, 100_000, description="RF member: rows per leaf"),
        HyperParameter("rf_n_estimators", int, 500, 1, 5000, description="RF member: trees"),
    ),
}

#: Soft-voting ensemble: member algorithm -> (weight hyperparameter, {ensemble name: member name}).
#: Members not named here keep their own defaults (``HYPERPARAMETERS[member]``).
ENSEMBLE_MEMBERS: dict[Algorithm, tuple[str, dict[str, str]]] = {
    Algorithm.LOGISTIC_REGRESSION: ("lr_weight", {"lr_C": "C"}),
    Algorithm.HIST_GRADIENT_BOOSTING: ("hgb_weight", {"hgb_max_features": "max_features"}),
    Algorithm.RANDOM_FOREST: (
        "rf_weight",
        {"rf_min_samples_leaf": "min_samples_leaf", "rf_n_estimators": "n_estimators"},
    ),
}


def ensemble_members(
    resolved: Mapping[str, ParamValue],
) -> list[tuple[Algorithm, float, dict[str, ParamValue]]]:
    """``(member, weight, resolved member hyperparameters)`` of a resolved ensemble spec, in order."""
    out = []
    for member, (weight, names) in ENSEMBLE_MEMBERS.items():
        given = {inner: resolved[outer] for outer, inner in names.items()}
        out.append((member, float(resolved[weight]), validate_hyperparameters(member, given)))
    return out


def validate_hyperparameters(
    algorithm: Algorithm, values: Mapping[str, object], *, field_prefix: str = HYPERPARAMETERS_FIELD
) -> dict[str, ParamValue]:
    """Check and resolve hyperparameters against the algorithm's schema.

    Args:
        algorithm: the algorithm whose schema applies.
        values: given hyperparameters by scikit-learn name (unset ones take the defaults).
        field_prefix: field path prefix of the names in the error.

    Returns:
        Every hyperparameter of the schema, given values converted (integral float -> int,
        int -> float), the rest at their defaults.

    Raises:
        InvalidArgument: naming each unknown name, wrong type and out-of-range value at once
            (field ``model_spec.hyperparameters.<name>``).
    """
    schema = HYPERPARAMETERS[algorithm]
    violations: list[FieldViolation] = []
    resolved: dict[str, ParamValue] = {name: p.default for name, p in schema.items()}
    for name in sorted(values):
        path = f"{field_prefix}.{name}"
        param = schema.get(name)
        if param is None:
            violations.append(
                FieldViolation(
                    path, f"unknown hyperparameter of {algorithm.value}; known: {', '.join(schema)}"
                )
            )
            continue
        converted, reason = param.check(values[name])
        if reason is not None:
            violations.append(FieldViolation(path, reason))
        else:
            assert converted is not None
            resolved[name] = converted
    if violations:
        raise InvalidArgument.from_violations(violations)
    return resolved


@dataclass(frozen=True)
class ModelSpec:
    """What model to fit (``creditrisk.training.v1.ModelSpec``).

    Attributes:
        algorithm: the learning algorithm.
        hyperparameters: given hyperparameters (validated by :meth:`resolved`).
    """

    algorithm: Algorithm
    hyperparameters: Mapping[str, ParamValue] = field(default_factory=dict)

    def resolved(self) -> dict[str, ParamValue]:
        """Every hyperparameter, validated, defaults filled in (raises InvalidArgument)."""
        return validate_hyperparameters(self.algorithm, self.hyperparameters)


@dataclass(frozen=True)
class EvaluationProtocol:
    """How a model is evaluated (``creditrisk.training.v1.EvaluationProtocol``, defaults resolved).

    Attributes:
        cv_folds: stratified folds on the training part, >= 2.
        cv_repeats: repetitions of the CV with reshuffling, >= 1.
        test_fraction: share of the non-gate rows held out as the test set (stratified, drawn with
            the seed), in [0, 0.5]; 0 means no test set (test metrics are then absent).
        gate_window_days: the latest days of labelled applications (by application time) left out
            of training and test for the registry's promotion gate, >= 1.
    """

    cv_folds: int = 5
    cv_repeats: int = 2
    test_fraction: float = 0.2
    gate_window_days: int = 60

    def validate(self, field_prefix: str = "evaluation") -> EvaluationProtocol:
        """Return self when valid.

        Raises:
            InvalidArgument: naming every field out of range.
        """
        violations = []
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) or self.cv_folds < 2:
            violations.append(FieldViolation(f"{field_prefix}.cv_folds", "must be an int >= 2"))
        if isinstance(self.cv_repeats, bool) or not isinstance(self.cv_repeats, int) or self.cv_repeats < 1:
            violations.append(FieldViolation(f"{field_prefix}.cv_repeats", "must be an int >= 1"))
        if not isinstance(self.test_fraction, int | float) or not 0.0 <= float(self.test_fraction) <= 0.5:
            violations.append(FieldViolation(f"{field_prefix}.test_fraction", "must be in [0, 0.5]"))
        if (
            isinstance(self.gate_window_days, bool)
            or not isinstance(self.gate_window_days, int)
            or self.gate_window_days < 1
        ):
            violations.append(FieldViolation(f"{field_prefix}.gate_window_days", "must be an int >= 1"))
        if violations:
            raise InvalidArgument.from_violations(violations)
        return self


def estimator_params(algorithm: Algorithm, resolved: Mapping[str, ParamValue], seed: int) -> dict[str, Any]:
    """Resolved hyperparameters as keyword arguments of the scikit-learn estimator."""
    params: dict[str, Any] = dict(resolved)
    if params.get("class_weight") == "none":
        params["class_weight"] = None
    tree_models = (Algorithm.HIST_GRADIENT_BOOSTING, Algorithm.RANDOM_FOREST)
    if algorithm in tree_models and params.get("max_depth") == 0:
        params["max_depth"] = None
    if algorithm is Algorithm.RANDOM_FOREST:
        params["n_jobs"] = 1  # one core per fit: OMP_NUM_THREADS=1 policy (docs/design.md, "Measured facts")
    params["random_state"] = seed
    return params

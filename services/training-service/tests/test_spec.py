"""Hyperparameter and protocol validation: every problem named at once."""

from __future__ import annotations

import pytest
from creditrisk_kit.errors import InvalidArgument
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec, validate_hyperparameters
from training_service.training import TrainingSpec


def test_defaults_resolve() -> None:
    resolved = validate_hyperparameters(Algorithm.LOGISTIC_REGRESSION, {})
    assert resolved["C"] == 1.0
    assert resolved["max_iter"] == 1000


def test_every_problem_is_named() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_hyperparameters(
            Algorithm.HIST_GRADIENT_BOOSTING,
            {"learning_rate": "fast", "max_leaf_nodes": 1, "max_iter": 200.5, "nope": 1, "early_stopping": 1},
        )
    fields = info.value.fields()
    prefix = "model_spec.hyperparameters."
    assert set(fields) == {
        prefix + "learning_rate",
        prefix + "max_leaf_nodes",
        prefix + "max_iter",
        prefix + "nope",
        prefix + "early_stopping",
    }
    reasons = {v.field: v.reason for v in info.value.violations}
    assert "out of range" in reasons[prefix + "max_leaf_nodes"]
    assert "unknown" in reasons[prefix + "nope"]
    assert "int" in reasons[prefix + "max_iter"]
    assert len(info.value.details()[0].field_violations) == 5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("max_iter", 200.0, 200), ("C", 2, 2.0), ("class_weight", "balanced", "balanced")],
)
def test_friendly_conversions(name: str, value: object, expected: object) -> None:
    resolved = validate_hyperparameters(Algorithm.LOGISTIC_REGRESSION, {name: value})
    assert resolved[name] == expected
    assert type(resolved[name]) is type(expected)


@pytest.mark.parametrize("value", [True, "200", float("nan"), 0, -3, 200.5])
def test_bad_int(value: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_hyperparameters(Algorithm.LOGISTIC_REGRESSION, {"max_iter": value})
    assert info.value.fields() == ("model_spec.hyperparameters.max_iter",)


def test_exclusive_bound() -> None:
    with pytest.raises(InvalidArgument):
        validate_hyperparameters(Algorithm.LOGISTIC_REGRESSION, {"C": 0.0})


def test_spec_validation_collects_protocol_and_hyperparameters() -> None:
    spec = TrainingSpec(
        model=ModelSpec(Algorithm.LOGISTIC_REGRESSION, {"C": -1.0}),
        evaluation=EvaluationProtocol(cv_folds=1, cv_repeats=0, test_fraction=0.7, gate_window_days=0),
    )
    with pytest.raises(InvalidArgument) as info:
        spec.validate()
    assert set(info.value.fields()) == {
        "model_spec.hyperparameters.C",
        "evaluation.cv_folds",
        "evaluation.cv_repeats",
        "evaluation.test_fraction",
        "evaluation.gate_window_days",
    }

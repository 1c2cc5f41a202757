"""Hyperparameter and protocol validation: every problem named at once."""

from __future__ import annotations

import pytest
from creditrisk_kit.errors import InvalidArgument
from creditrisk_products import Product
from training_service.spec import (
    Algorithm,
    EvaluationProtocol,
    ModelSpec,
    estimator_params,
    validate_hyperparameters,
)
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


def test_spec_validation_collects_protocol_and_hyperparameters(german: Product) -> None:
    spec = TrainingSpec.for_product(
        german,
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


def test_random_forest_defaults_and_estimator_params() -> None:
    resolved = validate_hyperparameters(Algorithm.RANDOM_FOREST, {})
    assert resolved == {
        "n_estimators": 500,
        "max_features": 0.1,
        "min_samples_leaf": 3,
        "max_depth": 0,
        "class_weight": "none",
    }
    params = estimator_params(Algorithm.RANDOM_FOREST, resolved, seed=5)
    assert params["max_depth"] is None
    assert params["class_weight"] is None
    assert params["n_jobs"] == 1
    assert params["random_state"] == 5
    given = {"n_estimators": 300.0, "max_features": 1, "class_weight": "balanced_subsample"}
    resolved = validate_hyperparameters(Algorithm.RANDOM_FOREST, given)
    assert resolved["n_estimators"] == 300
    assert type(resolved["n_estimators"]) is int
    assert resolved["max_features"] == 1.0
    assert type(resolved["max_features"]) is float
    assert resolved["class_weight"] == "balanced_subsample"


def test_random_forest_every_problem_is_named() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_hyperparameters(
            Algorithm.RANDOM_FOREST,
            {
                "n_estimators": 0,
                "max_features": 0.0,
                "min_samples_leaf": 2.5,
                "max_depth": "deep",
                "class_weight": "balanced_ish",
                "learning_rate": 0.1,
            },
        )
    prefix = "model_spec.hyperparameters."
    reasons = {v.field: v.reason for v in info.value.violations}
    assert set(reasons) == {
        prefix + name
        for name in (
            "n_estimators",
            "max_features",
            "min_samples_leaf",
            "max_depth",
            "class_weight",
            "learning_rate",
        )
    }
    assert "out of range" in reasons[prefix + "n_estimators"]
    assert "(0, 1]" in reasons[prefix + "max_features"]
    assert "int" in reasons[prefix + "min_samples_leaf"]
    assert "unknown" in reasons[prefix + "learning_rate"]
    assert "balanced_subsample" in reasons[prefix + "class_weight"]


@pytest.mark.parametrize("value", [1.5, True, float("inf"), "0.3"])
def test_random_forest_bad_max_features(value: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_hyperparameters(Algorithm.RANDOM_FOREST, {"max_features": value})
    assert info.value.fields() == ("model_spec.hyperparameters.max_features",)


def test_soft_voting_ensemble_defaults_and_members() -> None:
    from training_service.spec import ensemble_members

    resolved = validate_hyperparameters(Algorithm.SOFT_VOTING_ENSEMBLE, {})
    assert resolved == {
        "lr_weight": 1.0,
        "hgb_weight": 1.0,
        "rf_weight": 1.0,
        "lr_C": 1.0,
        "hgb_max_features": 1.0,
        "rf_min_samples_leaf": 3,
        "rf_n_estimators": 500,
    }
    given = {"lr_weight": 2, "rf_min_samples_leaf": 5.0, "lr_C": 0.1, "hgb_max_features": 0.3}
    members = ensemble_members(validate_hyperparameters(Algorithm.SOFT_VOTING_ENSEMBLE, given))
    assert [(m, w) for m, w, _ in members] == [
        (Algorithm.LOGISTIC_REGRESSION, 2.0),
        (Algorithm.HIST_GRADIENT_BOOSTING, 1.0),
        (Algorithm.RANDOM_FOREST, 1.0),
    ]
    lr, hgb, rf = (params for _, _, params in members)
    # the named member parameters are set, the rest are the member's own defaults
    assert lr == validate_hyperparameters(Algorithm.LOGISTIC_REGRESSION, {"C": 0.1})
    assert hgb == validate_hyperparameters(Algorithm.HIST_GRADIENT_BOOSTING, {"max_features": 0.3})
    assert rf == validate_hyperparameters(Algorithm.RANDOM_FOREST, {"min_samples_leaf": 5})
    assert type(rf["min_samples_leaf"]) is int


def test_soft_voting_ensemble_every_problem_is_named() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_hyperparameters(
            Algorithm.SOFT_VOTING_ENSEMBLE,
            {
                "lr_weight": 0.0,
                "hgb_weight": -1.0,
                "rf_weight": True,
                "lr_C": "0.1",
                "hgb_max_features": 1.5,
                "rf_min_samples_leaf": 2.5,
                "rf_n_estimators": 0,
                "C": 0.1,
            },
        )
    prefix = "model_spec.hyperparameters."
    reasons = {v.field: v.reason for v in info.value.violations}
    assert set(reasons) == {
        prefix + name
        for name in (
            "lr_weight",
            "hgb_weight",
            "rf_weight",
            "lr_C",
            "hgb_max_features",
            "rf_min_samples_leaf",
            "rf_n_estimators",
            "C",
        )
    }
    assert "(0, 1000]" in reasons[prefix + "lr_weight"]
    assert "out of range" in reasons[prefix + "hgb_weight"]
    assert "float" in reasons[prefix + "rf_weight"]
    assert "(0, 1]" in reasons[prefix + "hgb_max_features"]
    assert "int" in reasons[prefix + "rf_min_samples_leaf"]
    assert "unknown" in reasons[prefix + "C"]

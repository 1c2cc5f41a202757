"""Pipelines, the training core's splits, the policy, the fast scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from creditrisk_kit.errors import FailedPrecondition, InvalidArgument
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer
from creditrisk_products import Product
from training_service import evaluation as ev
from training_service.fast_scorer import TOLERANCE, max_abs_difference
from training_service.modelling import FeatureSchema, build_pipeline, predict_default, to_model_input
from training_service.policy import FeaturePolicy, FrameColumns
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import OOF_COLUMN, TrainingOutcome, TrainingSpec, train


def test_default_policy_excludes_protected(credit_frame: pd.DataFrame, german: Product) -> None:
    policy = FeaturePolicy.default(german)
    assert policy.excluded == ("personal_status_and_sex", "foreign_worker")
    assert policy.reason == german.features.protected_reason
    assert policy.columns == FrameColumns("applicant_id", "creditability", "int64", "bad")
    inputs = policy.model_inputs(credit_frame.columns)
    assert not set(policy.excluded) & set(inputs)
    assert "monthly_installment" in inputs
    assert "applicant_id" not in inputs
    assert len(inputs) == 19


def test_policy_override_needs_reason_and_known_names(
    credit_frame: pd.DataFrame, policy: FeaturePolicy
) -> None:
    with pytest.raises(InvalidArgument) as info:
        policy.override(["foreign_worker"], "  ")
    assert info.value.fields() == ("excluded_features.reason",)
    policy = policy.override(["foreign_worker", "no_such_feature"], "research study")
    assert policy.fairness_attributes == ("personal_status_and_sex", "foreign_worker")
    with pytest.raises(InvalidArgument) as info:
        policy.check_known(credit_frame.columns)
    assert info.value.fields() == ("excluded_features.features[1]",)


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_pipeline_shapes_and_dtypes(
    credit_frame: pd.DataFrame, policy: FeaturePolicy, algorithm: Algorithm
) -> None:
    schema = FeatureSchema.infer(credit_frame, policy.model_inputs(credit_frame.columns))
    assert len(schema.numeric) == 8
    assert len(schema.categorical) == 11
    x = to_model_input(credit_frame, schema)
    assert all(x[c].dtype == np.float64 for c in schema.numeric)
    assert all(x[c].dtype == object for c in schema.categorical)
    pipeline = build_pipeline(algorithm, ModelSpec(algorithm).resolved(), schema, seed=1)
    y = credit_frame["creditability"].to_numpy()
    pipeline.fit(x, y)
    p = predict_default(pipeline, x)
    assert p.shape == (len(credit_frame),)
    assert p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    # a missing integer (null in the feature store) and a missing / unseen category still score
    row = x.head(1).copy()
    row.loc[row.index[0], "credit_amount"] = np.nan
    row.loc[row.index[0], "purpose"] = None
    row.loc[row.index[0], "housing"] = "castle"
    assert 0 < predict_default(pipeline, row)[0] < 1


def test_no_gate_window_row_in_training_or_test(trained: dict[Algorithm, TrainingOutcome]) -> None:
    for outcome in trained.values():
        window = outcome.gate_window
        assert window.rows > 0
        for part in (outcome.training_rows, outcome.test_rows):
            assert (part["event_timestamp"] <= window.start).all()
        gate_ids = set()
        assert window.first is not None
        assert window.first > window.start
        used = set(outcome.training_rows.applicant_id) | set(outcome.test_rows.applicant_id)
        assert not used & gate_ids
        counts = outcome.row_counts
        assert counts["train"] + counts["test"] + counts["gate_window"] == counts["total"] == 1000
        assert counts["bad"] == 300


def test_gate_window_rows_are_the_latest(
    credit_frame: pd.DataFrame, trained: dict[Algorithm, TrainingOutcome]
) -> None:
    outcome = trained[Algorithm.LOGISTIC_REGRESSION]
    latest = credit_frame["event_timestamp"].max()
    gate = credit_frame[credit_frame["event_timestamp"] > latest - pd.Timedelta(days=60)]
    used = set(outcome.training_rows.applicant_id) | set(outcome.test_rows.applicant_id)
    assert len(gate) == outcome.gate_window.rows
    assert not used & set(gate.applicant_id)


def test_outcome_metrics_and_oof(trained: dict[Algorithm, TrainingOutcome]) -> None:
    for outcome in trained.values():
        m = outcome.metrics
        for name in ("roc_auc", "gini", "ks", "brier", "log_loss"):
            assert f"cv_{name}_mean" in m
            assert f"cv_{name}_std" in m
            assert f"test_{name}" in m
        assert m["test_gini"] == pytest.approx(2 * m["test_roc_auc"] - 1)
        assert 0 < outcome.threshold < 1
        assert m["decision_threshold"] == outcome.threshold
        assert "test_expected_cost" in m
        assert set(outcome.fairness) == {"personal_status_and_sex", "foreign_worker"}
        assert max(g["ratio"] for g in outcome.fairness["foreign_worker"].values()) == 1.0
        oof = outcome.training_rows[OOF_COLUMN]
        assert oof.notna().all()
        assert len(oof) == outcome.row_counts["train"]
        assert m["cv_roc_auc_mean"] > 0.7


def test_no_labelled_rows_is_failed_precondition(credit_frame: pd.DataFrame, german: Product) -> None:
    spec = TrainingSpec(
        model=ModelSpec(Algorithm.LOGISTIC_REGRESSION),
        policy=FeaturePolicy.default(german),
        costs=ev.CostMatrix.of(german),
        application_time_range=(pd.Timestamp("2030-01-01", tz="UTC"), pd.Timestamp("2031-01-01", tz="UTC")),
    )
    with pytest.raises(FailedPrecondition):
        train(credit_frame, spec)
    unlabelled = credit_frame.assign(creditability=pd.array([pd.NA] * len(credit_frame), dtype="Int64"))
    with pytest.raises(FailedPrecondition):
        train(unlabelled, TrainingSpec.for_product(german, model=ModelSpec(Algorithm.LOGISTIC_REGRESSION)))


def test_progress_and_cancel(credit_frame: pd.DataFrame, german: Product) -> None:
    from training_service.training import Cancelled

    seen: list[str] = []
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        train(
            credit_frame,
            TrainingSpec.for_product(
                german,
                model=ModelSpec(Algorithm.LOGISTIC_REGRESSION),
                evaluation=EvaluationProtocol(),
                seed=1,
            ),
            progress=lambda stage, fraction, message: seen.append(message),
            should_cancel=lambda: next(calls),
            fast_scorer=False,
        )
    assert seen == ["repeat 1, fold 1/5"]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_fast_scorer_matches_every_row(
    credit_frame: pd.DataFrame, trained: dict[Algorithm, TrainingOutcome], algorithm: Algorithm
) -> None:
    outcome = trained[algorithm]
    assert outcome.fast_scorer is not None
    assert outcome.fast_scorer.rows_checked == len(credit_frame) == 1000
    scorer = OnnxScorer(outcome.fast_scorer.onnx_model, outcome.schema.to_dict())
    x = to_model_input(credit_frame, outcome.schema)
    diff = max_abs_difference(scorer, outcome.pipeline, x)
    assert diff == outcome.fast_scorer.max_abs_diff
    assert diff <= TOLERANCE
    # one row given as a plain dict of raw values (ints for integer features), as the model-server would
    raw = credit_frame.iloc[3]
    row = {
        name: (None if pd.isna(raw[name]) else raw[name].item() if hasattr(raw[name], "item") else raw[name])
        for name in outcome.schema.names
    }
    assert abs(scorer.score(row) - predict_default(outcome.pipeline, x.iloc[[3]])[0]) <= TOLERANCE


def test_random_forest_onnx_accumulates_in_double(trained: dict[Algorithm, TrainingOutcome]) -> None:
    """500 trees averaged in float32 drift past 1e-6 (2.8e-6 measured); the export casts the tree
    ensemble's input to double so onnxruntime accumulates in double."""
    import onnx

    outcome = trained[Algorithm.RANDOM_FOREST]
    assert outcome.fast_scorer is not None
    graph = onnx.load_from_string(outcome.fast_scorer.onnx_model).graph
    producers = {out: node for node in graph.node for out in node.output}
    trees = [node for node in graph.node if node.op_type == "TreeEnsembleClassifier"]
    assert len(trees) == 1
    cast = producers[trees[0].input[0]]
    assert cast.op_type == "Cast"
    assert onnx.helper.get_attribute_value(cast.attribute[0]) == onnx.TensorProto.DOUBLE
    assert outcome.fast_scorer.max_abs_diff <= TOLERANCE


def test_soft_voting_ensemble_pipeline_and_onnx(
    credit_frame: pd.DataFrame, trained: dict[Algorithm, TrainingOutcome]
) -> None:
    """The vote is a VotingClassifier of the three pipelines; its ONNX graph (the random forest's
    tree ensemble accumulated in double) matches scikit-learn within 1e-6 on every row."""
    import onnx
    from sklearn.ensemble import VotingClassifier

    outcome = trained[Algorithm.SOFT_VOTING_ENSEMBLE]
    model = outcome.pipeline
    assert isinstance(model, VotingClassifier)
    assert model.voting == "soft"
    assert model.flatten_transform is False
    assert [name for name, _ in model.estimators] == [
        "logistic_regression",
        "hist_gradient_boosting",
        "random_forest",
    ]
    x = to_model_input(credit_frame, outcome.schema)
    members = np.stack([predict_default(member, x) for member in model.estimators_])
    assert np.allclose(predict_default(model, x), members.mean(axis=0), rtol=0, atol=1e-12)
    assert outcome.fast_scorer is not None
    graph = onnx.load_from_string(outcome.fast_scorer.onnx_model).graph
    producers = {out: node for node in graph.node for out in node.output}
    trees = [node for node in graph.node if node.op_type == "TreeEnsembleClassifier"]
    assert trees
    assert all(producers[t.input[0]].op_type == "Cast" for t in trees)
    scorer = OnnxScorer(outcome.fast_scorer.onnx_model, outcome.schema.to_dict())
    diffs = np.abs(scorer.predict_default({c: x[c].tolist() for c in x.columns}) - predict_default(model, x))
    assert len(diffs) == 1000
    assert float(diffs.max()) <= TOLERANCE
    assert outcome.fast_scorer.max_abs_diff <= TOLERANCE


def test_soft_voting_ensemble_weights(credit_frame: pd.DataFrame, policy: FeaturePolicy) -> None:
    schema = FeatureSchema.infer(credit_frame, policy.model_inputs(credit_frame.columns))
    spec = ModelSpec(Algorithm.SOFT_VOTING_ENSEMBLE, {"lr_weight": 2.0, "rf_n_estimators": 10, "lr_C": 0.1})
    vote = build_pipeline(spec.algorithm, spec.resolved(), schema, seed=3)
    assert list(vote.weights) == [2.0, 1.0, 1.0]
    assert vote.estimators[0][1][-1].C == 0.1
    assert vote.estimators[2][1][-1].n_estimators == 10
    assert vote.estimators[2][1][-1].random_state == 3

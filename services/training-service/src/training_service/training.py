"""The training core: a training frame in, a fitted and evaluated model out (no MLflow here).

A gRPC job runner calls::

    spec = TrainingSpec.for_product(product, model=ModelSpec(...), evaluation=EvaluationProtocol(...))
    spec.validate()                                   # InvalidArgument, before queueing
    outcome = train(frame, spec, progress=..., should_cancel=...)   # FailedPrecondition, Cancelled
    logged = tracking.log_training_run(outcome, ...)  # training_service.tracking

The frame is the feature-service's point-in-time training set (``GetHistoricalFeatures`` of the
model feature service plus the fairness feature service, labels joined on entity and label time):
columns the product's entity key (``[entity].join_key``), ``event_timestamp`` (application time,
UTC), ``label_timestamp``, the product's label column (``[label].column``, 1 = the positive class)
and the features named as the feature service names them (:class:`~training_service.policy.FrameColumns`).

Steps: labelled rows in the range -> gate window (latest ``gate_window_days``) set aside ->
stratified test split (seeded) -> repeated stratified K-fold CV on the training part (metrics per
fold, out-of-fold scores) -> cost-optimal threshold on the out-of-fold scores -> final fit on the
training part -> test metrics, expected cost and approval-rate ratios at that threshold -> ONNX fast
scorer checked against scikit-learn on every row of the frame.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from creditrisk_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation
from creditrisk_products import Product
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from training_service import evaluation as ev
from training_service.fast_scorer import FastScorerArtifact, build_fast_scorer
from training_service.modelling import (
    FeatureSchema,
    build_pipeline,
    limit_threads,
    predict_default,
    to_model_input,
)
from training_service.policy import EVENT_TIMESTAMP, FeaturePolicy
from training_service.spec import EvaluationProtocol, ModelSpec, ParamValue

ProgressFn = Callable[[str, float, str], None]
"""``progress(stage, fraction in [0, 1], message)``; stages: FITTING, EVALUATING."""
OOF_COLUMN = "probability_of_default"
SPLIT_COLUMN = "split"


class Cancelled(Exception):
    """The job was cancelled at a checkpoint (``should_cancel()`` returned True)."""


@dataclass(frozen=True)
class TrainingSpec:
    """A training job's modelling part (``TrainingJobSpec`` minus the data source and MLflow names).

    Attributes:
        model: algorithm and hyperparameters.
        evaluation: the evaluation protocol.
        policy: the feature policy (and the frame's key and label columns).
        costs: the cost matrix the decision threshold minimises.
        evaluation: the evaluation protocol.
        seed: seed of splits, resampling and the estimator; None draws one (echoed in the outcome).
        application_time_range: optional ``[start, end)`` filter on ``event_timestamp``.
    """

    model: ModelSpec
    policy: FeaturePolicy
    costs: ev.CostMatrix
    evaluation: EvaluationProtocol = field(default_factory=EvaluationProtocol)
    seed: int | None = None
    application_time_range: tuple[pd.Timestamp | None, pd.Timestamp | None] = (None, None)

    @classmethod
    def for_product(
        cls,
        product: Product,
        *,
        model: ModelSpec,
        evaluation: EvaluationProtocol | None = None,
        seed: int | None = None,
        policy: FeaturePolicy | None = None,
    ) -> TrainingSpec:
        """A spec with the product's default feature policy (unless ``policy``) and cost matrix;
        the evaluation protocol's gate window defaults to the product's (``[gate].window_days``)."""
        return cls(
            model=model,
            policy=policy or FeaturePolicy.default(product),
            costs=ev.CostMatrix.of(product),
            evaluation=evaluation or EvaluationProtocol(gate_window_days=product.gate.window_days),
            seed=seed,
        )

    def validate(self) -> dict[str, ParamValue]:
        """Validate everything checkable without data; returns the resolved hyperparameters.

        Raises:
            InvalidArgument: naming every offending field (hyperparameters and evaluation together).
        """
        violations: list[FieldViolation] = []
        resolved: dict[str, ParamValue] = {}
        try:
            resolved = self.model.resolved()
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        try:
            self.evaluation.validate()
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        start, end = self.application_time_range
        if start is not None and end is not None and start >= end:
            violations.append(FieldViolation("application_time_range", "start must be before end"))
        if violations:
            raise InvalidArgument.from_violations(violations)
        return resolved


@dataclass
class TrainingOutcome:
    """Everything a training produced (input of :func:`training_service.tracking.log_training_run`).

    Attributes:
        spec: the spec as run (seed resolved).
        hyperparameters: resolved hyperparameters.
        seed: the seed used.
        schema: model inputs.
        pipeline: fitted on the training part.
        threshold: cost-optimal decision threshold (chosen on out-of-fold scores).
        metrics: flat metric name -> value (``cv_*``, ``test_*``, ``oof_*``, ``fairness_*``, rows).
        fold_metrics: per-fold metrics, in fold order.
        training_rows: the training part with its out-of-fold ``probability_of_default``
            (mean over repeats) - the drift reference - and every frame column.
        test_rows: the test part with its ``probability_of_default`` from the final model.
        gate_window: the held-out gate window.
        row_counts: ``total`` (labelled rows in range), ``train``, ``test``, ``gate_window``, ``bad``.
        fairness: ``{attribute: {group: {rows, approval_rate, ratio}}}`` on the test part (on the
            training part out-of-fold when there is no test part).
        fast_scorer: the ONNX export and its fidelity.
    """

    spec: TrainingSpec
    hyperparameters: dict[str, ParamValue]
    seed: int
    schema: FeatureSchema
    pipeline: Pipeline
    threshold: float
    metrics: dict[str, float]
    fold_metrics: list[dict[str, float]]
    training_rows: pd.DataFrame
    test_rows: pd.DataFrame
    gate_window: ev.GateWindow
    row_counts: dict[str, int]
    fairness: dict[str, dict[str, dict[str, float]]]
    fast_scorer: FastScorerArtifact | None


def labelled_rows(frame: pd.DataFrame, spec: TrainingSpec) -> pd.DataFrame:
    """Rows with a label inside the application-time range, sorted by application time.

    Raises:
        FailedPrecondition: no labelled row in the range.
    """
    label, key = spec.policy.columns.label, spec.policy.columns.entity_key
    if label not in frame.columns:
        raise FailedPrecondition(
            f"the training frame has no label column {label!r}",
            [PreconditionViolation("TRAINING_SET", label, "train on the product's label column")],
        )
    rows = frame[frame[label].notna()]
    start, end = spec.application_time_range
    if start is not None:
        rows = rows[rows[EVENT_TIMESTAMP] >= start]
    if end is not None:
        rows = rows[rows[EVENT_TIMESTAMP] < end]
    if rows.empty:
        raise FailedPrecondition(
            "the application-time range has no labelled rows",
            [PreconditionViolation("TRAINING_SET", "application_time_range", "choose a range with labels")],
        )
    rows = rows.sort_values([EVENT_TIMESTAMP, key] if key in rows else [EVENT_TIMESTAMP])
    return rows.reset_index(drop=True)


def _check_enough(y: np.ndarray, folds: int, what: str) -> None:
    counts = np.bincount(y.astype(np.int64), minlength=2)
    if counts.min() < folds:
        raise FailedPrecondition(
            f"{what} has too few rows of a class for {folds}-fold stratified CV "
            f"(bad={int(counts[1])}, good={int(counts[0])})",
            [PreconditionViolation("TRAINING_SET", what, "widen the application-time range")],
        )


def train(
    frame: pd.DataFrame,
    spec: TrainingSpec,
    *,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    fast_scorer: bool = True,
) -> TrainingOutcome:
    """Fit and evaluate a model on a training frame (see the module docstring).

    Args:
        frame: the point-in-time training frame.
        spec: what to train and how to evaluate it.
        progress: called at each step (stage, fraction, message).
        should_cancel: polled between folds; True raises :class:`Cancelled`.
        fast_scorer: also export and check the ONNX fast scorer.

    Returns:
        The outcome; nothing is logged anywhere.

    Raises:
        InvalidArgument: invalid spec or an unknown excluded feature.
        FailedPrecondition: no labelled rows in the range, or too few for the protocol.
        Cancelled: cancellation requested.
    """
    limit_threads()
    resolved = spec.validate()
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)
    protocol = spec.evaluation
    report = progress or (lambda stage, fraction, message: None)
    cancelled = should_cancel or (lambda: False)

    spec.policy.check_known(frame.columns)
    rows = labelled_rows(frame, spec)
    development, _gate, window = ev.split_gate_window(rows, protocol.gate_window_days)
    if development.empty:
        raise FailedPrecondition(
            "every labelled row of the range lies in the gate window",
            [PreconditionViolation("TRAINING_SET", "evaluation.gate_window_days", "shorten the window")],
        )
    development = development.reset_index(drop=True)
    inputs = spec.policy.model_inputs(frame.columns)
    schema = FeatureSchema.infer(frame, inputs)
    label = spec.policy.columns.label
    y_all = development[label].astype(np.int64).to_numpy()
    _check_enough(y_all, protocol.cv_folds, "the training part")
    train_pos, test_pos = ev.train_test_indices(y_all, protocol.test_fraction, seed)
    train_rows = development.iloc[train_pos].reset_index(drop=True)
    test_rows = development.iloc[test_pos].reset_index(drop=True)
    x_train = to_model_input(train_rows, schema)
    y_train = y_all[train_pos]
    _check_enough(y_train, protocol.cv_folds, "the training part")

    template = build_pipeline(spec.model.algorithm, resolved, schema, seed)
    n_fits = protocol.cv_folds * protocol.cv_repeats
    oof_sum = np.zeros(len(train_rows))
    oof_count = np.zeros(len(train_rows))
    fold_metrics: list[dict[str, float]] = []
    for repeat, fold, fit, val in ev.cv_splits(y_train, protocol.cv_folds, protocol.cv_repeats, seed):
        if cancelled():
            raise Cancelled()
        report(
            "FITTING",
            len(fold_metrics) / (n_fits + 1),
            f"repeat {repeat + 1}, fold {fold + 1}/{protocol.cv_folds}",
        )
        model = clone(template).fit(x_train.iloc[fit], y_train[fit])
        p_val = predict_default(model, x_train.iloc[val])
        oof_sum[val] += p_val
        oof_count[val] += 1
        fold_metrics.append(ev.binary_metrics(y_train[val], p_val))
    oof = oof_sum / oof_count
    threshold, oof_cost = ev.cost_optimal_threshold(
        y_train, oof, cost_fn=spec.costs.false_negative, cost_fp=spec.costs.false_positive
    )

    if cancelled():
        raise Cancelled()
    report("FITTING", n_fits / (n_fits + 1), "final fit")
    pipeline = clone(template).fit(x_train, y_train)

    report("EVALUATING", 0.0, "test metrics")
    metrics: dict[str, float] = ev.summarize(fold_metrics)
    metrics.update({f"oof_{k}": v for k, v in ev.binary_metrics(y_train, oof).items()})
    metrics["oof_expected_cost"] = oof_cost
    metrics["decision_threshold"] = threshold
    train_out = train_rows.copy()
    train_out[OOF_COLUMN] = oof
    test_out = test_rows.copy()
    fairness_rows, fairness_scores = train_rows, oof
    if len(test_rows):
        y_test = test_rows[label].astype(np.int64).to_numpy()
        p_test = predict_default(pipeline, to_model_input(test_rows, schema))
        test_out[OOF_COLUMN] = p_test
        if len(np.unique(y_test)) == 2:
            metrics.update({f"test_{k}": v for k, v in ev.binary_metrics(y_test, p_test).items()})
        metrics["test_expected_cost"] = ev.expected_cost(
            y_test, p_test, threshold, cost_fn=spec.costs.false_negative, cost_fp=spec.costs.false_positive
        )
        metrics["test_approval_rate"] = float(np.mean(p_test < threshold))
        fairness_rows, fairness_scores = test_rows, p_test
    fairness: dict[str, dict[str, dict[str, float]]] = {}
    for attribute in spec.policy.fairness_attributes:
        if attribute in fairness_rows.columns:
            groups = ev.approval_rate_ratios(fairness_scores < threshold, fairness_rows[attribute])
            fairness[attribute] = groups
            ratios = [g["ratio"] for g in groups.values() if not np.isnan(g["ratio"])]
            metrics[f"fairness_{attribute}_min_approval_ratio"] = (
                float(min(ratios)) if ratios else float("nan")
            )

    artifact = None
    if fast_scorer:
        report("EVALUATING", 0.5, "fast scorer")
        artifact = build_fast_scorer(pipeline, schema, to_model_input(frame, schema))
        metrics["fast_scorer_max_abs_diff"] = artifact.max_abs_diff
    row_counts = {
        "total": len(rows),
        "train": len(train_rows),
        "test": len(test_rows),
        "gate_window": window.rows,
        "bad": int((rows[label].astype(np.int64) == 1).sum()),
    }
    metrics.update({f"rows_{k}": float(v) for k, v in row_counts.items()})
    report("EVALUATING", 1.0, "done")
    resolved_spec = TrainingSpec(
        model=spec.model,
        evaluation=protocol,
        seed=seed,
        policy=spec.policy,
        costs=spec.costs,
        application_time_range=spec.application_time_range,
    )
    return TrainingOutcome(
        spec=resolved_spec,
        hyperparameters=resolved,
        seed=seed,
        schema=schema,
        pipeline=pipeline,
        threshold=threshold,
        metrics=metrics,
        fold_metrics=fold_metrics,
        training_rows=train_out,
        test_rows=test_out,
        gate_window=window,
        row_counts=row_counts,
        fairness=fairness,
        fast_scorer=artifact,
    )


def cross_validated_auc(
    frame: pd.DataFrame,
    model: ModelSpec,
    *,
    folds: int,
    repeats: int,
    seed: int,
    policy: FeaturePolicy,
) -> np.ndarray:
    """ROC AUC per fold of repeated stratified K-fold CV over every labelled row of ``frame``
    (no gate window, no test split: for quality studies, ``scripts/quality.py``); ``policy`` gives
    the model inputs and the label column."""
    limit_threads()
    label = policy.columns.label
    rows = frame[frame[label].notna()].reset_index(drop=True)
    schema = FeatureSchema.infer(rows, policy.model_inputs(rows.columns))
    x = to_model_input(rows, schema)
    y = rows[label].astype(np.int64).to_numpy()
    template = build_pipeline(model.algorithm, model.resolved(), schema, seed)
    scores: list[Any] = []
    for _, _, fit, val in ev.cv_splits(y, folds, repeats, seed):
        fitted = clone(template).fit(x.iloc[fit], y[fit])
        scores.append(ev.binary_metrics(y[val], predict_default(fitted, x.iloc[val]))["roc_auc"])
    return np.array(scores)

"""Evaluation: discrimination and calibration metrics, the cost-optimal threshold, the splits
(gate window, test, repeated stratified CV) and approval-rate ratios across protected groups.

Conventions: ``y`` is 1 for the positive class (bad, defaulted), 0 otherwise; ``p`` is the
probability of the positive class. An applicant is **rejected** when ``p >= threshold`` and
**approved** otherwise.

Cost matrix: the product's (``[decision]`` of its ``product.toml``, :class:`CostMatrix`):
approving a positive (a false negative) and rejecting a negative (a false positive) each cost what
the product says; correct decisions cost 0. :func:`expected_cost` is the mean cost per applicant.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from creditrisk_products import Product
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

METRIC_NAMES = ("roc_auc", "gini", "ks", "brier", "log_loss")
FOUR_FIFTHS = 0.8
"""The "four-fifths rule" reference for approval-rate ratios (US EEOC Uniform Guidelines,
29 CFR 1607.4(D)); a reference for reading the ratios, not a legal test of credit decisions."""


@dataclass(frozen=True)
class CostMatrix:
    """The cost of each wrong decision, in the product's cost units (both > 0).

    Attributes:
        false_negative: cost of approving an applicant of the positive class.
        false_positive: cost of rejecting an applicant of the negative class.
    """

    false_negative: float
    false_positive: float

    @classmethod
    def of(cls, product: Product) -> CostMatrix:
        """The product's cost matrix (``[decision]``)."""
        return cls(product.decision.false_negative_cost, product.decision.false_positive_cost)


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds of |TPR - FPR| (the distance between the
    score distributions of bads and goods), in [0, 1]."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(np.abs(tpr - fpr)))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, Gini (= 2 AUC - 1), KS, Brier score and log loss of scores ``p`` against ``y``.

    Raises:
        ValueError: ``y`` has a single class (AUC undefined).
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    auc = float(roc_auc_score(y, p))
    return {
        "roc_auc": auc,
        "gini": 2.0 * auc - 1.0,
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }


def expected_cost(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    *,
    cost_fn: float,
    cost_fp: float,
) -> float:
    """Mean cost per applicant of rejecting ``p >= threshold``: ``cost_fn`` per approved positive,
    ``cost_fp`` per rejected negative."""
    y = np.asarray(y)
    reject = np.asarray(p) >= threshold
    false_negatives = np.sum((y == 1) & ~reject)
    false_positives = np.sum((y == 0) & reject)
    return float((cost_fn * false_negatives + cost_fp * false_positives) / len(y))


def cost_optimal_threshold(
    y: np.ndarray,
    p: np.ndarray,
    *,
    cost_fn: float,
    cost_fp: float,
) -> tuple[float, float]:
    """The threshold minimising :func:`expected_cost` on ``(y, p)``.

    Candidates are 0, 1 and the midpoints between consecutive distinct scores (every distinct
    decision on these rows); ties go to the lowest threshold. Choose it on training / out-of-fold
    scores, never on the test set.

    Returns:
        ``(threshold, expected cost at it)``.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    distinct = np.unique(ps)
    candidates = np.concatenate(([0.0], (distinct[:-1] + distinct[1:]) / 2.0, [1.0]))
    # rows with p < t are approved: cumulative counts of bads / goods strictly below each candidate
    below = np.searchsorted(ps, candidates, side="left")
    bads_below = np.concatenate(([0], np.cumsum(ys == 1)))[below]
    goods_below = np.concatenate(([0], np.cumsum(ys == 0)))[below]
    goods_total = int(np.sum(ys == 0))
    costs = (cost_fn * bads_below + cost_fp * (goods_total - goods_below)) / len(y)
    best = int(np.argmin(costs))
    return float(candidates[best]), float(costs[best])


def approval_rate_ratios(
    approved: np.ndarray, groups: pd.Series, *, min_group_size: int = 1
) -> dict[str, dict[str, float]]:
    """Approval rate of each group and its ratio to the highest group's rate.

    Args:
        approved: boolean per row (``p < threshold``).
        groups: group label per row (missing labels form the group ``"(missing)"``).
        min_group_size: groups with fewer rows are left out.

    Returns:
        ``{group: {"rows": n, "approval_rate": r, "ratio": r / max_rate}}``; ratio 1.0 for the
        highest group, NaN ratios when no group approves anyone.
    """
    labels = groups.astype(object).where(groups.notna(), "(missing)").astype(str).to_numpy()
    approved = np.asarray(approved, dtype=bool)
    rates: dict[str, tuple[int, float]] = {}
    for label in sorted(set(labels)):
        mask = labels == label
        if mask.sum() >= min_group_size:
            rates[label] = (int(mask.sum()), float(approved[mask].mean()))
    top = max((r for _, r in rates.values()), default=0.0)
    return {
        label: {"rows": float(n), "approval_rate": r, "ratio": (r / top) if top > 0 else float("nan")}
        for label, (n, r) in rates.items()
    }


@dataclass(frozen=True)
class GateWindow:
    """The latest window of labelled applications, left out of training and test.

    Attributes:
        days: its length.
        start: first application time inside it (inclusive bound: rows with
            ``event_timestamp > end - days``).
        end: the latest labelled application time (its anchor).
        rows: labelled rows inside it.
        first / last: earliest and latest application time of those rows (None when empty).
    """

    days: int
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def split_gate_window(
    frame: pd.DataFrame, days: int, *, time_column: str = "event_timestamp"
) -> tuple[pd.DataFrame, pd.DataFrame, GateWindow]:
    """Split labelled rows into (development rows, gate-window rows, window description).

    The gate window is anchored at the latest application time of the labelled rows: it holds the
    rows with ``event_timestamp > latest - days``. The development rows (everything earlier) feed
    the train/test split and CV; the gate rows are never used here.
    """
    times = frame[time_column]
    end = times.max()
    start = end - pd.Timedelta(days=days)
    in_gate = times > start
    gate = frame[in_gate]
    window = GateWindow(
        days=days,
        start=start,
        end=end,
        rows=len(gate),
        first=gate[time_column].min() if len(gate) else None,
        last=gate[time_column].max() if len(gate) else None,
    )
    return frame[~in_gate], gate, window


def train_test_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and test rows: a stratified split drawn with ``seed``."""
    positions = np.arange(len(y))
    if test_fraction <= 0:
        return positions, positions[:0]
    train, test = train_test_split(positions, test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def cv_splits(
    y: np.ndarray, folds: int, repeats: int, seed: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Repeated stratified K-fold: yields ``(repeat, fold, fit positions, validation positions)``."""
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for i, (fit, val) in enumerate(splitter.split(np.zeros(len(y)), y)):
        yield i // folds, i % folds, fit, val


def summarize(fold_metrics: Sequence[Mapping[str, float]], prefix: str = "cv_") -> dict[str, float]:
    """Mean and standard deviation (ddof=1; 0 for one fold) of each metric over folds."""
    out: dict[str, float] = {}
    for name in fold_metrics[0]:
        values = np.array([m[name] for m in fold_metrics], dtype=np.float64)
        out[f"{prefix}{name}_mean"] = float(values.mean())
        out[f"{prefix}{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out

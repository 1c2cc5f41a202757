"""Metrics on tiny inputs computed by hand, the cost-optimal threshold, approval-rate ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from creditrisk_products import Product
from training_service import evaluation as ev

#: The German product's cost matrix: a missed bad costs 5, a declined good 1.
COSTS = {"cost_fn": 5.0, "cost_fp": 1.0}


def test_cost_matrix_is_the_products(german: Product) -> None:
    costs = ev.CostMatrix.of(german)
    assert (costs.false_negative, costs.false_positive) == (COSTS["cost_fn"], COSTS["cost_fp"])


def test_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8])
    m = ev.binary_metrics(y, p)
    # pairs (bad, good): (0.4,0.1) ok, (0.4,0.6) wrong, (0.8,0.1) ok, (0.8,0.6) ok -> AUC 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["gini"] == pytest.approx(0.5)
    # threshold 0.4: TPR 1, FPR 1/2 -> KS 0.5 (threshold 0.8: TPR .5, FPR 0 -> 0.5)
    assert m["ks"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.04) / 4)
    expected_ll = -(np.log(0.9) + np.log(0.4) + np.log(0.4) + np.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_expected_cost_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8])
    # t=0.5: reject 0.6 (good -> cost 1), approve 0.4 (bad -> cost 5) -> 6/4
    assert ev.expected_cost(y, p, 0.5, **COSTS) == pytest.approx(1.5)
    assert ev.expected_cost(y, p, 0.0, **COSTS) == pytest.approx(0.5)  # reject all: 2 goods x 1
    assert ev.expected_cost(y, p, 1.0, **COSTS) == pytest.approx(2.5)  # approve all: 2 bads x 5


def test_cost_optimal_threshold_constructed() -> None:
    # scores 0.1..0.9; bads at 0.3, 0.7, 0.9; goods elsewhere.
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1])
    t, cost = ev.cost_optimal_threshold(y, p, **COSTS)
    # rejecting from 0.25 up: goods rejected 0.4,0.5,0.6,0.8 -> cost 4; any higher cut approves
    # the bad at 0.3 (+5) and spares at most 4 goods; lower cuts reject more goods.
    assert t == pytest.approx(0.25)
    assert cost == pytest.approx(4 / 9)
    assert cost == pytest.approx(ev.expected_cost(y, p, t, **COSTS))
    # brute force over a fine grid agrees
    grid = np.linspace(0, 1, 1001)
    assert min(ev.expected_cost(y, p, g, **COSTS) for g in grid) == pytest.approx(cost)


def test_the_cost_matrix_moves_the_threshold() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1])
    # missed positives cost as much as declined negatives: rejecting from 0.25 no longer pays
    t, cost = ev.cost_optimal_threshold(y, p, cost_fn=1.0, cost_fp=1.0)
    assert t > 0.25
    assert cost == pytest.approx(ev.expected_cost(y, p, t, cost_fn=1.0, cost_fp=1.0))
    assert cost < ev.expected_cost(y, p, 0.25, cost_fn=1.0, cost_fp=1.0)


def test_approval_rate_ratios() -> None:
    approved = np.array([True, True, False, True, False, False])
    groups = pd.Series(["a", "a", "a", "b", "b", None])
    out = ev.approval_rate_ratios(approved, groups)
    assert out["a"]["approval_rate"] == pytest.approx(2 / 3)
    assert out["a"]["ratio"] == pytest.approx(1.0)
    assert out["b"]["ratio"] == pytest.approx((1 / 2) / (2 / 3))
    assert out["(missing)"]["ratio"] == 0.0


def test_gate_window_split() -> None:
    times = pd.to_datetime(["2024-01-01", "2024-03-01", "2024-05-01", "2024-05-20"], utc=True)
    frame = pd.DataFrame({"event_timestamp": times, "x": range(4)})
    dev, gate, window = ev.split_gate_window(frame, 30)
    assert list(gate.x) == [2, 3]
    assert list(dev.x) == [0, 1]
    assert window.rows == 2
    assert window.first == times[2]
    assert window.last == times[3]

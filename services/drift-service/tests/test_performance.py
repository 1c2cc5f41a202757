"""Performance metrics on a tiny known case."""

from __future__ import annotations

import pytest
from drift_service.performance import calibration_bins, ks_statistic, roc_auc


def test_roc_auc_by_hand() -> None:
    # bad scores 0.8, 0.4; good 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    assert roc_auc([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc([0.1, 0.2], [1, 1]) is None


def test_ks_by_hand() -> None:
    # bad {0.8, 0.4}, good {0.6, 0.2}: max |F_bad - F_good| = 0.5
    assert ks_statistic([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0]) == pytest.approx(0.5)
    assert ks_statistic([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert ks_statistic([0.1], [0]) is None


def test_calibration_bins() -> None:
    scores = [0.1, 0.1, 0.2, 0.2, 0.8, 0.8, 0.9, 0.9]
    labels = [0, 0, 0, 1, 1, 1, 1, 0]
    bins = calibration_bins(scores, labels, bins=2)  # median 0.5 -> two bins of four
    assert [b.count for b in bins] == [4, 4]
    assert bins[0].mean_probability_of_default == pytest.approx(0.15)
    assert bins[0].observed_default_rate == pytest.approx(0.25)
    assert bins[1].observed_default_rate == pytest.approx(0.75)
    assert bins[0].lower == pytest.approx(0.1)
    assert bins[-1].upper == pytest.approx(0.9)
    assert sum(b.count for b in calibration_bins(scores, labels, bins=10)) == 8
    assert calibration_bins([0.3, 0.3], [0, 1])[0].count == 2  # one distinct score

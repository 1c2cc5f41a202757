"""Drift of a window against a reference: per-feature figures and every bad-input case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from drift_service.domain import FeatureKind, FeatureStatus, PsiBand
from drift_service.drift import DriftConfig, chi2_homogeneity, compute_drift
from german_frames import KINDS, shift

pytestmark = pytest.mark.usefixtures("evidently_loaded")


@pytest.fixture(scope="module")
def reference(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[0]


@pytest.fixture(scope="module")
def window(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[1].iloc[:200].reset_index(drop=True)


def by_name(result):
    return {f.feature: f for f in result.features}


def test_per_feature_figures_and_shift_detected(
    reference: pd.DataFrame, window: pd.DataFrame, tmp_path: Path
) -> None:
    result = compute_drift(reference, shift(window, 1), KINDS)
    f = by_name(result)
    assert list(f) == sorted(KINDS)
    age = f["age_in_years"]
    assert age.kind is FeatureKind.NUMERIC
    assert age.test_name == "ks"
    assert age.status is FeatureStatus.COMPUTED
    assert 0 < age.statistic <= 1
    assert age.p_value is not None
    assert age.p_value < 1e-6
    assert age.drifted
    assert age.psi is not None
    assert age.psi_band is PsiBand.SHIFTED
    assert age.out_of_range_share is not None
    assert age.out_of_range_share > 0
    purpose = f["purpose"]
    assert purpose.test_name == "chisquare_homogeneity"
    assert purpose.drifted
    assert purpose.out_of_range_share is None
    assert result.dataset_drift
    assert 0 < result.drift_share <= 1
    assert "Holm" in result.rule
    # the Holm critical values: the smallest p-value is compared with alpha / 20
    assert min(x.threshold for x in result.features) == pytest.approx(0.05 / 20)
    # prediction drift: the score column against the reference's scores
    assert result.prediction_drift is not None
    assert result.prediction_drift.feature == "probability_of_default"
    assert result.prediction_drift.test_name == "ks"
    assert result.prediction_drift.threshold == 0.05
    # Evidently's HTML report
    assert result.save_html(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "Drift in column 'age_in_years'" in html


def test_no_drift_on_a_same_distribution_window(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    result = compute_drift(reference, window, KINDS)
    assert not result.dataset_drift
    assert result.drift_share == 0.0
    assert all(f.status is FeatureStatus.COMPUTED for f in result.features)


def test_column_null_in_every_row_is_empty_others_reported(
    reference: pd.DataFrame, window: pd.DataFrame
) -> None:
    current = window.copy()
    current["credit_amount"] = np.nan
    current = current.drop(columns=["telephone"])  # absent altogether: null in every row too
    f = by_name(compute_drift(reference, current, KINDS))
    for name in ("credit_amount", "telephone"):
        assert f[name].status is FeatureStatus.EMPTY
        assert f[name].missing_share == 1.0
        assert f[name].p_value is None
        assert f[name].psi is None
        assert not f[name].drifted
    assert all(
        x.status is FeatureStatus.COMPUTED for n, x in f.items() if n not in ("credit_amount", "telephone")
    )


def test_partly_missing_values_reported(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    current = window.copy()
    current.loc[:49, "duration_in_month"] = np.nan
    f = by_name(compute_drift(reference, current, KINDS))["duration_in_month"]
    assert f.status is FeatureStatus.COMPUTED
    assert f.missing_share == pytest.approx(0.25)
    assert f.reference_missing_share == 0.0


def test_unseen_categories_counted_and_drift_detected(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    current = window.copy()
    current.loc[:4, "purpose"] = "crypto"
    current.loc[5:6, "purpose"] = "boat"
    result = compute_drift(reference, current, KINDS)
    purpose = by_name(result)["purpose"]
    assert purpose.unseen_category_count == 2
    assert purpose.drifted
    assert result.dataset_drift
    assert purpose.psi is not None
    assert math.isfinite(purpose.psi)
    assert math.isfinite(purpose.statistic)


def test_constant_columns_give_finite_results(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    ref = reference.copy()
    cur = window.copy()
    ref["age_in_years"] = 40
    cur["age_in_years"] = 40
    ref["foreign_worker"] = "yes"
    cur["foreign_worker"] = "yes"
    cur["duration_in_month"] = 12  # constant in current only
    f = by_name(compute_drift(ref, cur, KINDS))
    for name in ("age_in_years", "foreign_worker", "duration_in_month"):
        x = f[name]
        assert x.status is FeatureStatus.COMPUTED
        assert all(math.isfinite(v) for v in (x.statistic, x.p_value, x.psi, x.threshold))
    assert f["age_in_years"].p_value == 1.0
    assert not f["age_in_years"].drifted
    assert f["age_in_years"].psi == 0.0
    assert f["foreign_worker"].p_value == 1.0
    assert not f["foreign_worker"].drifted
    assert f["duration_in_month"].drifted


def test_chi2_homogeneity_by_hand() -> None:
    # 2 x 2 table [[30, 20], [20, 30]] with Yates: chi2 = 100 * (|30*30-20*20| - 50)^2 / (50^4) = 3.24
    stat, p = chi2_homogeneity(pd.Series(["a"] * 30 + ["b"] * 20), pd.Series(["a"] * 20 + ["b"] * 30))
    assert stat == pytest.approx(3.24)
    assert p == pytest.approx(0.0718, abs=1e-3)
    assert chi2_homogeneity(pd.Series(["a"]), pd.Series(["a", "a"])) == (0.0, 1.0)


def test_other_stattests_and_bh(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    config = DriftConfig(
        correction="bh", per_column_method={"credit_amount": "wasserstein"}, cat_method="chisquare"
    )
    result = compute_drift(reference, shift(window, 2), KINDS, config)
    amount = by_name(result)["credit_amount"]
    assert amount.test_name == "wasserstein"
    assert amount.p_value is None
    assert amount.drifted
    assert amount.threshold == config.distance_threshold
    assert by_name(result)["purpose"].test_name == "chisquare"
    assert "Benjamini-Hochberg" in result.rule


def test_ks_statistic_equals_scipy() -> None:
    from drift_service.drift import _ks_statistic
    from scipy import stats

    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.integers(0, int(rng.choice([3, 30, 10**9])), rng.integers(1, 200)).astype(float)
        b = rng.integers(0, 30, rng.integers(1, 2000)).astype(float) + rng.choice([0.0, 0.5])
        assert _ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert _ks_statistic(np.array([1.0]), np.array([1.0])) == 0.0


def test_counts_from_evidently_equal_own_counts(
    reference: pd.DataFrame, window: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The category counts lent by our chi-square inside the Evidently report give the same
    figures as counting them again."""
    import drift_service.drift as drift

    shifted = shift(window, 1)
    lent = compute_drift(reference, shifted, KINDS)
    fill = drift._fill_counts
    monkeypatch.setattr(drift, "_fill_counts", lambda columns, captured: fill(columns, {}))
    own = compute_drift(reference, shifted, KINDS)
    assert [vars(f) for f in lent.features] == [vars(f) for f in own.features]

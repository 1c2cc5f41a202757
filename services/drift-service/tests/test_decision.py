"""The dataset decision rule on constructed p-values."""

from __future__ import annotations

import math

import pytest
from drift_service.decision import benjamini_hochberg, decide, holm, rule_text


def test_holm_step_down() -> None:
    # m = 4: thresholds 0.0125, 0.01667, 0.025, 0.05 for ranks 1..4
    d = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    # sorted: 0.005 <= .0125 yes, 0.01 <= .01667 yes, 0.03 <= .025 no -> stop
    assert d.rejected == [True, False, False, True]
    assert d.thresholds == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])
    assert d.any


def test_holm_stops_at_first_failure() -> None:
    d = holm([0.02, 0.001], 0.05)  # 0.001 <= 0.025 yes; 0.02 <= 0.05 yes
    assert d.rejected == [True, True]
    d = holm([0.03, 0.04], 0.05)  # 0.03 > 0.025 -> nothing, although 0.04 < 0.05
    assert d.rejected == [False, False]


def test_twenty_columns_one_small_p_value() -> None:
    # a single column at p = 0.01 among 20 null columns is not enough (0.01 > 0.05/20) ...
    assert not holm([0.01] + [0.5] * 19).any
    # ... but p = 0.002 is (<= 0.0025), and so are three shifted columns at 1e-6
    assert holm([0.002] + [0.5] * 19).any
    assert sum(holm([1e-6] * 3 + [0.3] * 17).rejected) == 3


def test_benjamini_hochberg_step_up() -> None:
    # m = 4, thresholds k*0.05/4 = 0.0125, 0.025, 0.0375, 0.05; sorted 0.01 0.02 0.03 0.06
    d = benjamini_hochberg([0.06, 0.03, 0.02, 0.01], 0.05)
    assert d.rejected == [False, True, True, True]  # largest k with p(k) <= k alpha/m is 3
    # step-up: a later pass rescues earlier failures
    assert benjamini_hochberg([0.013, 0.02], 0.05).rejected == [True, True]
    assert not holm([0.026, 0.03], 0.05).any
    assert benjamini_hochberg([0.026, 0.03], 0.05).rejected == [True, True]


def test_nan_counts_as_no_evidence_and_empty_family() -> None:
    assert holm([math.nan, 0.001]).rejected == [False, True]
    assert not decide([]).any
    assert decide([0.001], correction="bh").any


def test_rule_text_names_the_method_and_source() -> None:
    assert "Holm 1979" in rule_text(0.05, "holm", 20)
    assert "Benjamini & Hochberg 1995" in rule_text(0.05, "bh", 20)
    assert "alpha = 0.05" in rule_text(0.05, "holm", 20)

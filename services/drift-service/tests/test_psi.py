"""PSI on hand-computable cases, and its bands."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from drift_service.domain import PsiBand
from drift_service.psi import (
    PsiConfig,
    numeric_edges,
    psi_band,
    psi_categorical,
    psi_from_shares,
    psi_numeric,
)


def test_psi_from_shares_by_hand() -> None:
    # (0.5-0.25) ln(0.5/0.25) + (0.5-0.75) ln(0.5/0.75)
    expected = 0.25 * math.log(2) + (-0.25) * math.log(0.5 / 0.75)
    assert psi_from_shares([0.25, 0.75], [0.5, 0.5]) == pytest.approx(expected)
    assert psi_from_shares([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_empty_bin_floored() -> None:
    # current bin 2 empty -> floored at 1e-4: (1e-4 - 0.5) ln(1e-4/0.5) + (1 - 0.5) ln(1/0.5)
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert psi_from_shares([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert math.isfinite(expected)


def test_numeric_quantile_bins() -> None:
    reference = np.arange(100.0)  # deciles at 10, 20, ..., 90 -> 10 bins of 10 values
    assert list(numeric_edges(reference, 10)) == pytest.approx([9.9 * (i + 1) for i in range(9)])
    assert psi_numeric(reference, reference) == 0.0
    # current all in the top decile: shares 0 x9 (floored) and 1
    current = np.full(50, 95.0)
    expected = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    assert psi_numeric(reference, current) == pytest.approx(expected)


def test_fewer_distinct_values_fewer_bins() -> None:
    reference = np.array([1, 1, 2, 2, 3, 3, 4, 4] * 10, dtype=float)
    assert list(numeric_edges(reference, 10)) == [1.5, 2.5, 3.5]  # one bin per value
    current = np.array([1] * 40 + [2] * 40, dtype=float)  # shares 0.5 0.5 0 0 vs 0.25 each
    expected = 2 * 0.25 * math.log(2) + 2 * (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi_numeric(reference, current) == pytest.approx(expected)


def test_constant_column_is_finite() -> None:
    assert psi_numeric(np.full(10, 3.0), np.full(10, 7.0)) == 0.0  # one bin
    assert psi_categorical(pd.Series(["a"] * 5), pd.Series(["a"] * 5)) == 0.0


def test_categorical_with_unseen_bin() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    current = pd.Series(["a"] * 50 + ["c"] * 50)  # b -> 0, unseen -> 0.5
    expected = 0.0 + (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi_categorical(reference, current) == pytest.approx(expected)


def test_configurable_bins_and_floor() -> None:
    reference = np.arange(100.0)
    assert numeric_edges(reference, 4).size == 3
    a = psi_from_shares([0.5, 0.5], [1.0, 0.0], floor=1e-3)
    b = psi_from_shares([0.5, 0.5], [1.0, 0.0], floor=1e-4)
    assert a < b
    assert psi_numeric(reference, np.full(10, 95.0), PsiConfig(bins=2)) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    )


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (None, PsiBand.UNSPECIFIED),
        (0.0, PsiBand.STABLE),
        (0.0999, PsiBand.STABLE),
        (0.1, PsiBand.WATCH),
        (0.25, PsiBand.WATCH),
        (0.2501, PsiBand.SHIFTED),
    ],
)
def test_bands(value: float | None, band: PsiBand) -> None:
    assert psi_band(value) is band

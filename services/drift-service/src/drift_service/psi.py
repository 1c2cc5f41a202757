"""Population stability index (PSI) per characteristic, the credit industry's drift measure.

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

over bins ``i``, with ``r_i`` / ``c_i`` the reference / current share of non-null values in bin
``i`` (Siddiqi, *Credit Risk Scorecards*, Wiley 2006, ch. 8; Yurdakul, *Statistical properties of
population stability index*, 2018). Our own small function rather than Evidently's ``psi`` stattest,
whose binning differs (equal-width histogram bins over both samples).

Binning, all configurable through :class:`PsiConfig`:

* **numeric**: ``bins`` (10) quantile bins of the reference. The inner edges are the reference
  quantiles at ``1/bins, ..., (bins-1)/bins``, deduplicated, so heavy ties give fewer bins; a value
  equal to an edge falls in the upper bin. When the reference has at most ``bins`` distinct values,
  one bin per distinct value instead (edges at the midpoints). The outer bins are open, so current
  values outside the reference range fall in the first / last bin (and are reported separately as
  the out-of-range share). A constant reference gives one bin and PSI 0.
* **categorical**: one bin per reference category plus one bin for categories unseen in the
  reference (reference share 0).
* Empty bins (either side) are floored at ``floor`` (1e-4) so the logarithm stays finite; nulls are
  left out (the missing share is reported on its own).

Bands: PSI < 0.1 stable, 0.1 <= PSI <= 0.25 watch, > 0.25 shifted (Siddiqi 2006, the rule of thumb).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from drift_service.domain import PsiBand


@dataclass(frozen=True)
class PsiConfig:
    """How PSI bins and bands.

    Attributes:
        bins: number of reference-quantile bins for numeric columns (>= 1).
        floor: share given to an empty bin, on both sides (> 0).
        stable_below: PSI below this is ``stable``.
        shifted_above: PSI above this is ``shifted``; in between (inclusive) ``watch``.
    """

    bins: int = 10
    floor: float = 1e-4
    stable_below: float = 0.1
    shifted_above: float = 0.25


def psi_from_shares(reference: npt.ArrayLike, current: npt.ArrayLike, floor: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins, empty bins floored at ``floor``.

    Args:
        reference: reference share per bin (sums to 1).
        current: current share per bin (sums to 1), same length.
        floor: minimum share of a bin.

    Returns:
        PSI, >= 0 and finite.
    """
    r = np.maximum(np.asarray(reference, dtype=float), floor)
    c = np.maximum(np.asarray(current, dtype=float), floor)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_edges(reference: npt.ArrayLike, bins: int = 10) -> npt.NDArray[np.float64]:
    """Inner bin edges of a numeric reference (see the module docstring).

    Args:
        reference: non-null reference values.
        bins: number of quantile bins wanted.

    Returns:
        Sorted inner edges; ``len(edges) + 1`` bins, the outer ones open.
    """
    ref = np.asarray(reference, dtype=float)
    distinct = np.unique(ref)
    if distinct.size <= 1:
        return np.empty(0)
    if distinct.size <= bins:
        return (distinct[:-1] + distinct[1:]) / 2.0
    quantiles = np.quantile(ref, np.arange(1, bins) / bins)
    edges = np.unique(quantiles)
    # an edge equal to the minimum would leave the first bin empty by construction
    return edges[edges > distinct[0]]


def _shares(indices: npt.NDArray[np.intp], nbins: int) -> npt.NDArray[np.float64]:
    counts = np.bincount(indices, minlength=nbins).astype(float)
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi_numeric(reference: npt.ArrayLike, current: npt.ArrayLike, config: PsiConfig = PsiConfig()) -> float:
    """PSI of a numeric column over reference-quantile bins.

    Args:
        reference: non-null reference values (at least one).
        current: non-null current values (at least one).
        config: binning and floor.

    Returns:
        PSI, finite (0 for a constant reference).
    """
    edges = numeric_edges(reference, config.bins)
    nbins = edges.size + 1
    r = _shares(np.searchsorted(edges, np.asarray(reference, dtype=float), side="right"), nbins)
    c = _shares(np.searchsorted(edges, np.asarray(current, dtype=float), side="right"), nbins)
    return psi_from_shares(r, c, config.floor)


def psi_categorical(reference: pd.Series, current: pd.Series, config: PsiConfig = PsiConfig()) -> float:
    """PSI of a categorical column: one bin per reference category plus one for unseen ones.

    Args:
        reference: non-null reference values.
        current: non-null current values.
        config: the floor.

    Returns:
        PSI, finite.
    """
    return psi_from_counts(reference.astype(str).value_counts(), current.astype(str).value_counts(), config)


def psi_from_counts(ref_counts: pd.Series, cur_counts: pd.Series, config: PsiConfig = PsiConfig()) -> float:
    """:func:`psi_categorical` from the category counts of both sides (index = category)."""
    categories = list(ref_counts.index)
    r = np.append(ref_counts.to_numpy(dtype=float), 0.0)
    unseen = float(cur_counts[~cur_counts.index.isin(categories)].sum())
    c = np.append(cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float), unseen)
    return psi_from_shares(r / r.sum(), c / c.sum(), config.floor)


def psi_band(value: float | None, config: PsiConfig = PsiConfig()) -> PsiBand:
    """The band of a PSI value (``UNSPECIFIED`` when not computed)."""
    if value is None:
        return PsiBand.UNSPECIFIED
    if value < config.stable_below:
        return PsiBand.STABLE
    if value <= config.shifted_above:
        return PsiBand.WATCH
    return PsiBand.SHIFTED

"""Performance of a model version on its labelled predictions: ROC AUC, KS, default rate,
mean predicted PD, calibration.

* ROC AUC: the Mann-Whitney form, AUC = (R_bad - n_bad (n_bad + 1) / 2) / (n_bad n_good), with
  R_bad the sum of the mid-ranks of the bad (label 1) scores (ties count one half; Hanley & McNeil
  1982).
* KS: the two-sample Kolmogorov-Smirnov statistic between the score distributions of bad and good,
  max |F_bad(s) - F_good(s)| (the credit industry's separation measure).
* Calibration: bins at the deciles of the predicted PD of the labelled predictions (ties merge
  bins), each with its count, mean predicted PD and observed default rate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from drift_service.domain import CalibrationBin


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float | None:
    """ROC AUC of ``scores`` for ``labels`` (1 = bad, the positive class); None with one class."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    n_bad = int((y == 1).sum())
    n_good = int((y == 0).sum())
    if n_bad == 0 or n_good == 0:
        return None
    ranks = stats.rankdata(s)
    return float((ranks[y == 1].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))


def ks_statistic(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float | None:
    """KS statistic between the scores of bad and good; None with one class."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if not (y == 1).any() or not (y == 0).any():
        return None
    return float(stats.ks_2samp(s[y == 1], s[y == 0]).statistic)


def calibration_bins(scores: npt.ArrayLike, labels: npt.ArrayLike, bins: int = 10) -> list[CalibrationBin]:
    """Calibration over the deciles (``bins`` quantiles) of the predicted PD.

    Args:
        scores: predicted PD per labelled prediction.
        labels: 1 = bad, 0 = good.
        bins: number of quantile bins wanted (ties give fewer).

    Returns:
        Non-empty bins in ascending order; [lower, upper) except the last, closed.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if s.size == 0:
        return []
    edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, edges.size - 2)
    out = []
    for i in range(edges.size - 1):
        mask = index == i
        if not mask.any():
            continue
        out.append(
            CalibrationBin(
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                count=int(mask.sum()),
                mean_probability_of_default=float(s[mask].mean()),
                observed_default_rate=float(y[mask].mean()),
            )
        )
    return out

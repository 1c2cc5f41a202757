"""The promotion gate: both versions scored on the same held-out rows, a paired bootstrap of the
ROC AUC difference, an expected-cost check, and an absolute floor for a first champion.

Pure computation (numpy only): :mod:`registry_gateway.evaluation` fetches the gate window's
labelled rows through the feature-service and scores both versions itself (never trusting logged
metrics), then calls :func:`evaluate`.

Sources:

* **Paired bootstrap** of ``AUC(challenger) - AUC(champion)``: rows are resampled with replacement
  and *both* models are scored on the same resample, so the interval accounts for the correlation
  of two models scored on the same applicants; the interval is the percentile interval (Efron, B.
  and Tibshirani, R. J., *An Introduction to the Bootstrap*, Chapman & Hall, 1993, ch. 13). A
  resample holding a single class (AUC undefined) is drawn again. DeLong's test is not used.
* **Non-inferiority margin** (the product's ``[gate].margin``): a business choice, not a
  statistical constant: the largest loss of discrimination the business accepts for a new model.
* **Cost matrix**: the product's ``[decision]`` (the cost of approving a positive, of declining a
  negative). Each model is judged at its *own* decision threshold (rejects ``p >= threshold``).
* **Absolute floor** for a first champion (the product's ``[gate].absolute_floor``): a business
  choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from creditrisk_products import Product
from scipy.stats import rankdata


@dataclass(frozen=True)
class GateConfig:
    """The gate's rule: the product's thresholds and cost matrix, the platform's statistics
    (settings ``REGISTRY_GATEWAY_GATE_RESAMPLES`` / ``_SEED`` / ``_CONFIDENCE_LEVEL``); build with
    :meth:`of`.

    Attributes:
        resamples: paired bootstrap resamples (>= 1000).
        seed: seed of the resampling.
        confidence_level: of the percentile interval, e.g. 0.95.
        margin: non-inferiority margin: pass needs ``ci_lower > -margin``.
        require_positive_delta: also need the point estimate ``delta > 0``.
        cost_tolerance: the challenger's expected cost per application may exceed the champion's
            by at most this (cost units).
        absolute_floor: minimum ROC AUC of a first champion on the window.
        min_rows: fewest labelled rows in the window to evaluate at all.
        false_negative_cost / false_positive_cost: the cost matrix.
    """

    resamples: int = 1000
    seed: int = 20261129
    confidence_level: float = 0.95
    margin: float = 0.02
    require_positive_delta: bool = True
    cost_tolerance: float = 0.05
    absolute_floor: float = 0.70
    min_rows: int = 30
    false_negative_cost: float = 5.0
    false_positive_cost: float = 1.0

    @classmethod
    def of(
        cls, product: Product, *, resamples: int = 1000, seed: int = 20261129, confidence_level: float = 0.95
    ) -> GateConfig:
        """The rule of ``product`` (``[gate]`` thresholds, ``[decision]`` costs) with these statistics."""
        gate, decision = product.gate, product.decision
        return cls(
            resamples=resamples,
            seed=seed,
            confidence_level=confidence_level,
            margin=gate.margin,
            require_positive_delta=gate.require_positive_delta,
            cost_tolerance=gate.cost_tolerance,
            absolute_floor=gate.absolute_floor,
            min_rows=gate.min_rows,
            false_negative_cost=decision.false_negative_cost,
            false_positive_cost=decision.false_positive_cost,
        )

    def rule_text(self, first: bool) -> str:
        """The rule in words (``GateResult.rule``)."""
        if first:
            return f"first champion: pass iff ROC AUC on the gate window >= {self.absolute_floor:g}"
        level = f"{self.confidence_level:.0%}"
        text = (
            f"pass iff the lower bound of the {level} paired bootstrap CI of AUC(challenger) - "
            f"AUC(champion) > -{self.margin:g}"
        )
        if self.require_positive_delta:
            text += " and the point estimate > 0"
        text += (
            f" and expected cost(challenger) <= expected cost(champion) + {self.cost_tolerance:g} "
            f"(cost matrix FN {self.false_negative_cost:g} : FP {self.false_positive_cost:g}, "
            "each at its own threshold)"
        )
        return text


@dataclass(frozen=True)
class Score:
    """One model version's figures on the window."""

    version: int
    roc_auc: float
    decision_threshold: float
    expected_cost: float


@dataclass(frozen=True)
class Outcome:
    """The gate's verdict and figures (converted to ``GateResult``)."""

    passed: bool
    rule: str
    challenger: Score
    champion: Score | None
    rows: int
    delta: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    reasons: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        """The figures of the audit record."""
        out = {
            "challenger_auc": self.challenger.roc_auc,
            "challenger_expected_cost": self.challenger.expected_cost,
            "challenger_threshold": self.challenger.decision_threshold,
            "window_rows": float(self.rows),
        }
        if self.champion is not None:
            out.update(
                {
                    "champion_auc": self.champion.roc_auc,
                    "champion_expected_cost": self.champion.expected_cost,
                    "champion_threshold": self.champion.decision_threshold,
                }
            )
        for name in ("delta", "ci_lower", "ci_upper"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def summary(self) -> str:
        """One line with the figures (the refusal message)."""
        return "; ".join(self.reasons)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / (n_pos n_neg), ties counted half).

    Raises:
        ValueError: a single class.
    """
    return float(_auc_rows(np.asarray(y)[None, :], np.asarray(p, dtype=np.float64)[None, :])[0])


def _auc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUC of each row of ``(B, n)`` label / score matrices (average ranks handle ties)."""
    ranks = rankdata(p, axis=1)
    pos = y == 1
    n_pos = pos.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    if np.any(n_pos == 0) or np.any(n_neg == 0):
        raise ValueError("ROC AUC is undefined for a single class")
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def expected_cost(y: np.ndarray, p: np.ndarray, threshold: float, fn_cost: float, fp_cost: float) -> float:
    """Mean cost per application of rejecting ``p >= threshold`` (see the module's cost matrix)."""
    y = np.asarray(y)
    reject = np.asarray(p) >= threshold
    return float((fn_cost * np.sum((y == 1) & ~reject) + fp_cost * np.sum((y == 0) & reject)) / len(y))


def paired_bootstrap_delta(
    y: np.ndarray, p_challenger: np.ndarray, p_champion: np.ndarray, *, resamples: int, seed: int
) -> np.ndarray:
    """``resamples`` bootstrap replicates of AUC(challenger) - AUC(champion), both on the same rows.

    Resamples with a single class are replaced by fresh draws (same generator), so exactly
    ``resamples`` replicates come back.
    """
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    need = resamples
    while need > 0:
        idx = rng.integers(0, n, size=(need, n))
        ys = y[idx]
        ok = (ys.sum(axis=1) > 0) & (ys.sum(axis=1) < n)
        idx, ys = idx[ok], ys[ok]
        if len(idx):
            out.append(_auc_rows(ys, p_challenger[idx]) - _auc_rows(ys, p_champion[idx]))
        need -= len(idx)
    return np.concatenate(out)[:resamples]


def score(version: int, y: np.ndarray, p: np.ndarray, threshold: float, config: GateConfig) -> Score:
    """A version's figures on the window."""
    return Score(
        version=version,
        roc_auc=roc_auc(y, p),
        decision_threshold=threshold,
        expected_cost=expected_cost(y, p, threshold, config.false_negative_cost, config.false_positive_cost),
    )


def evaluate(
    config: GateConfig,
    y: np.ndarray,
    challenger: tuple[int, np.ndarray, float],
    champion: tuple[int, np.ndarray, float] | None,
) -> Outcome:
    """Apply the gate.

    Args:
        config: the rule.
        y: labels of the window rows (1 = bad).
        challenger: ``(version, P(default) per row, decision threshold)``.
        champion: the same for the current alias holder; None for a first champion.

    Returns:
        The verdict, figures and one reason per rule checked.
    """
    y = np.asarray(y, dtype=np.int64)
    c_version, c_p, c_threshold = challenger
    c_score = score(c_version, y, np.asarray(c_p, dtype=np.float64), c_threshold, config)
    if champion is None:
        passed = c_score.roc_auc >= config.absolute_floor
        reasons = [
            f"ROC AUC {c_score.roc_auc:.4f} on {len(y)} gate-window rows is "
            f"{'at or above' if passed else 'below'} the floor {config.absolute_floor:g}"
        ]
        return Outcome(passed, config.rule_text(True), c_score, None, len(y), reasons=reasons)
    h_version, h_p, h_threshold = champion
    h_p = np.asarray(h_p, dtype=np.float64)
    h_score = score(h_version, y, h_p, h_threshold, config)
    delta = c_score.roc_auc - h_score.roc_auc
    replicates = paired_bootstrap_delta(
        y, np.asarray(c_p, dtype=np.float64), h_p, resamples=config.resamples, seed=config.seed
    )
    alpha = 1.0 - config.confidence_level
    lower, upper = (float(v) for v in np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0]))
    ci_ok = lower > -config.margin
    delta_ok = delta > 0 or not config.require_positive_delta
    cost_ok = c_score.expected_cost <= h_score.expected_cost + config.cost_tolerance
    level = f"{config.confidence_level:.0%}"
    reasons = [
        f"delta AUC {delta:+.4f} (challenger {c_score.roc_auc:.4f} vs champion {h_score.roc_auc:.4f}, "
        f"{len(y)} rows), {level} CI [{lower:+.4f}, {upper:+.4f}]: lower bound "
        f"{'above' if ci_ok else 'not above'} -margin {-config.margin:+.4f}",
    ]
    if config.require_positive_delta:
        reasons.append(f"point estimate {delta:+.4f} is {'above' if delta_ok else 'not above'} 0")
    reasons.append(
        f"expected cost {c_score.expected_cost:.4f} (threshold {c_threshold:.4f}) vs champion "
        f"{h_score.expected_cost:.4f} (threshold {h_threshold:.4f}): "
        f"{'within' if cost_ok else 'exceeds'} tolerance {config.cost_tolerance:g}"
    )
    return Outcome(
        passed=ci_ok and delta_ok and cost_ok,
        rule=config.rule_text(False),
        challenger=c_score,
        champion=h_score,
        rows=len(y),
        delta=delta,
        ci_lower=lower,
        ci_upper=upper,
        reasons=reasons,
    )

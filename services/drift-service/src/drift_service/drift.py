"""Data and prediction drift of a current window against a reference dataset.

One call of :func:`compute_drift` does, for every monitored column:

1. data quality (our code): missing share on both sides, categories absent from the reference,
   share of current values outside the reference's [min, max];
2. the per-column statistical test with **Evidently 0.7's current API** (``evidently.Report`` of one
   ``evidently.metrics.ValueDrift`` per column over ``evidently.Dataset.from_pandas`` frames with an
   explicit ``evidently.DataDefinition``): K-S for numeric columns and chi-square for categorical
   ones by default (``DriftConfig.num_method`` / ``cat_method`` / ``per_column_method`` take any
   Evidently stattest name); ``ValueDrift``'s value is the test's p-value (or distance). The
   categorical default is our two-sample chi-square test of homogeneity, registered into Evidently
   as ``chisquare_homogeneity`` (:func:`chi2_homogeneity` says why not Evidently's ``chisquare``);
3. PSI per characteristic (:mod:`drift_service.psi`, our binning);
4. the dataset verdict by our rule (:mod:`drift_service.decision`): Holm-adjusted p-values (or
   Benjamini-Hochberg), dataset drift if any column is significant at alpha. A column's ``drifted``
   flag and ``threshold`` are the adjusted ones (the critical value of its step), so the drift share
   is the share of columns significant after the adjustment.

Prediction drift is the same test on ``probability_of_default`` against the reference's scores, a
single test at alpha (outside the feature family).

Bad input: a column null in every row of the current (or reference) data is reported ``EMPTY`` and
left out of the tests (Evidently raises on it); categories unseen in the reference are counted and
the column is drifted whatever its p-value (so the dataset drifts too); a constant column gives
finite figures (K-S p = 1 on equal constants; a chi-square NaN p-value counts as 1). The
minimum-rows rule (``INSUFFICIENT_DATA``) is the caller's (:mod:`drift_service.core`).

``import evidently`` takes 6-20 s; it happens on the first computation (or :func:`warm_up`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from drift_service.decision import Correction, decide, rule_text
from drift_service.domain import PREDICTION_COLUMN, FeatureDrift, FeatureKind, FeatureStatus
from drift_service.psi import PsiConfig, psi_band, psi_from_counts, psi_numeric

#: Our two-sample chi-square test of homogeneity, registered into Evidently's stattest registry
#: under this name (see :func:`chi2_homogeneity`).
CHI2_HOMOGENEITY = "chisquare_homogeneity"

#: Evidently stattests whose ``ValueDrift`` value is a p-value (drift when below the threshold);
#: every other method yields a distance (drift when at or above the threshold).
P_VALUE_TESTS = frozenset(
    {
        "ks",
        "chisquare",
        CHI2_HOMOGENEITY,
        "z",
        "fisher_exact",
        "g_test",
        "mannw",
        "t_test",
        "anderson",
        "cramer_von_mises",
        "es",
    }
)


@dataclass(frozen=True)
class DriftConfig:
    """How drift is computed.

    Attributes:
        alpha: significance level of the dataset rule (and of the single prediction-drift test).
        correction: ``holm`` (family-wise error) or ``bh`` (false discovery rate).
        num_method: Evidently stattest for numeric columns.
        cat_method: Evidently stattest for categorical columns.
        per_column_method: stattest per column name, overriding the two above.
        distance_threshold: threshold of distance-only methods (drift at or above it).
        psi: PSI binning and bands.
    """

    alpha: float = 0.05
    correction: Correction = "holm"
    num_method: str = "ks"
    cat_method: str = CHI2_HOMOGENEITY
    per_column_method: Mapping[str, str] = field(default_factory=dict)
    distance_threshold: float = 0.1
    psi: PsiConfig = field(default_factory=PsiConfig)

    def method(self, column: str, kind: FeatureKind) -> str:
        """The stattest of ``column``."""
        if column in self.per_column_method:
            return self.per_column_method[column]
        return self.num_method if kind is FeatureKind.NUMERIC else self.cat_method


@dataclass
class DriftComputation:
    """Result of :func:`compute_drift`.

    Attributes:
        features: one entry per monitored column, ordered by name.
        prediction_drift: drift of ``probability_of_default``, or None when a side has no scores.
        drift_share: share of computed columns that drifted (after the adjustment).
        dataset_drift: the dataset verdict.
        rule: the rule in words.
        snapshot: the Evidently ``Snapshot`` (for the HTML rendering), None when nothing was tested.
    """

    features: list[FeatureDrift]
    prediction_drift: FeatureDrift | None
    drift_share: float
    dataset_drift: bool
    rule: str
    snapshot: Any = None

    def save_html(self, path: Path) -> bool:
        """Write Evidently's HTML report to ``path``; False when there is nothing to render."""
        if self.snapshot is None:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        self.snapshot.save_html(str(tmp))
        tmp.replace(path)
        return True


def warm_up() -> None:
    """Import Evidently now (6-20 s) rather than on the first computation."""
    _evidently()


_REGISTERED = False


def chi2_homogeneity(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity of two samples over their categories.

    A 2 x k contingency table (reference / current counts per category of either sample) and
    ``scipy.stats.chi2_contingency`` (Yates' correction when k = 2). Unlike Evidently's
    ``chisquare`` (a goodness-of-fit test of the current counts against the reference shares taken
    as exact), it accounts for the reference's own sampling error: with a 500-row reference and
    200-row windows of the same distribution, ``chisquare`` fired on 35% of the German credit
    windows under Holm at 0.05 (14 of 40), this test on none (``docs/drift-quality.md``).

    Returns:
        ``(statistic, p_value)``; ``(0.0, 1.0)`` when both samples hold one and the same category.
    """
    return chi2_from_counts(reference.value_counts(), current.value_counts())


def chi2_from_counts(ref_counts: pd.Series, cur_counts: pd.Series) -> tuple[float, float]:
    """:func:`chi2_homogeneity` from the two samples' category counts."""
    keys = ref_counts.index.union(cur_counts.index)
    if len(keys) < 2:
        return 0.0, 1.0
    table = np.vstack(
        [
            ref_counts.reindex(keys, fill_value=0).to_numpy(float),
            cur_counts.reindex(keys, fill_value=0).to_numpy(float),
        ]
    )
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


#: Set by :func:`_run_evidently` for the duration of its report: Evidently hands our chi-square
#: the non-null values of a column (its name kept), whose category counts are the ones
#: :func:`compute_drift` needs too; recorded here (per thread / task) they are counted once.
_CAPTURED_COUNTS: ContextVar[dict[str, tuple[pd.Series, pd.Series]] | None] = ContextVar(
    "drift_service_captured_counts", default=None
)


def _register_chi2_homogeneity() -> None:
    """Add :func:`chi2_homogeneity` to Evidently's stattest registry (its documented extension
    point; ``ValueDrift(method=...)`` looks methods up there by name)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    def _impl(
        reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        ref_counts, cur_counts = reference.value_counts(), current.value_counts()
        captured = _CAPTURED_COUNTS.get()
        if captured is not None and isinstance(current.name, str):
            captured[current.name] = (ref_counts, cur_counts)  # lent to compute_drift's figures
        p_value = chi2_from_counts(ref_counts, cur_counts)[1]
        return p_value, p_value < threshold

    register_stattest(
        StatTest(
            name=CHI2_HOMOGENEITY,
            display_name="chi-square homogeneity p_value",
            allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
            default_threshold=0.05,
        ),
        _impl,
    )


def _evidently() -> Any:
    global _REGISTERED
    import evidently
    import evidently.metrics

    if not _REGISTERED:
        _register_chi2_homogeneity()
        _REGISTERED = True
    return evidently


def infer_kinds(
    frame: pd.DataFrame, exclude: set[str] | frozenset[str] = frozenset()
) -> dict[str, FeatureKind]:
    """Column kinds from a reference frame's dtypes: numbers (not bools) are numeric, the rest categorical."""
    kinds = {}
    for name in frame.columns:
        if name in exclude:
            continue
        dtype = frame[name].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        kinds[name] = FeatureKind.NUMERIC if numeric else FeatureKind.CATEGORICAL
    return dict(sorted(kinds.items()))


@dataclass
class _Column:
    """One column of one side, prepared once and shared by every figure.

    Attributes:
        series: the normalised values (numbers as float with infinities made null, categories as
            strings with nulls as None), RangeIndex; what Evidently sees.
        valid: numeric columns: the non-null values as a float array (None for categorical ones).
        counts: categorical columns: the non-null category counts, ``value_counts()`` order (None
            for numeric ones).
        n_valid: number of non-null values.
    """

    series: pd.Series
    valid: np.ndarray | None
    counts: pd.Series | None
    n_valid: int

    def valid_series(self) -> pd.Series:
        """The non-null values as a Series (for the generic statistics)."""
        return self.series.dropna()


def _prepare(series: pd.Series | None, kind: FeatureKind, length: int, defer_counts: bool = False) -> _Column:
    """Normalise a column once and derive what the figures need from it (one pass per side).

    With ``defer_counts``, a categorical column of strings without nulls is not counted here
    (``counts`` None, filled by :func:`_fill_counts` after the Evidently report)."""
    if kind is FeatureKind.NUMERIC:
        if series is None:
            values = np.full(length, np.nan)
        else:
            # a fresh float copy; infinities made null in place (was ``astype(float).replace``)
            values = pd.to_numeric(series, errors="coerce").astype(float).to_numpy(copy=True)
            values[np.isinf(values)] = np.nan
        valid = values[~np.isnan(values)]
        return _Column(pd.Series(values, copy=False), valid, None, int(valid.size))
    if series is None:
        out = pd.Series([None] * length, dtype=object)
    else:
        series = series.reset_index(drop=True)
        if series.dtype == object and pd.api.types.infer_dtype(series, skipna=False) == "string":
            out = series  # already strings, no nulls: ``astype(str)`` would give the same values
            if defer_counts:
                return _Column(out, None, None, len(out))
        else:
            present = series.notna()
            out = series.astype(str).astype(object)  # vectorised; nulls put back below
            out[~present] = None
    counts = out.value_counts()  # nulls left out
    return _Column(out, None, counts, int(counts.sum()))


def _fill_counts(columns: Mapping[str, _Column], captured: Mapping[str, tuple[pd.Series, pd.Series]]) -> None:
    """Category counts of the current columns left uncounted by :func:`_prepare`: those our
    chi-square counted inside the Evidently report (the same non-null values), else counted now."""
    for name, column in columns.items():
        if column.counts is None and column.valid is None:
            column.counts = captured[name][1] if name in captured else column.series.value_counts()


def _chisquare_statistic(ref_counts: pd.Series, cur_counts: pd.Series, floor: float) -> float:
    """Pearson's chi-square statistic of current counts against reference shares (Evidently's
    layout), with expected counts of categories absent from the reference floored at
    ``floor * n`` so the statistic stays finite (Evidently's p-value is 0 in that case)."""
    n_ref, n_cur = float(ref_counts.sum()), float(cur_counts.sum())
    keys = ref_counts.index.union(cur_counts.index)
    expected = ref_counts.reindex(keys, fill_value=0).to_numpy(float) * (n_cur / n_ref)
    expected = np.maximum(expected, floor * n_cur)
    observed = cur_counts.reindex(keys, fill_value=0).to_numpy(float)
    return float(np.sum((observed - expected) ** 2 / expected))


def _ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample K-S statistic ``sup |F_ref - F_cur|`` (the statistic of
    ``scipy.stats.ks_2samp``, whose p-value Evidently reports), without its p-value.

    The difference of the two empirical CDFs is a right-continuous step function, so its extremes
    lie at sample points; it is evaluated at each distinct value of either sample (each value's
    last occurrence in the sorted sample), one sort of each sample and a binary search of the
    other sample's distinct values. Equal to scipy's to rounding (scipy takes the CDF levels from
    ``linspace``).
    """
    a, b = np.sort(reference), np.sort(current)
    last_a = np.flatnonzero(np.append(a[1:] != a[:-1], True))
    last_b = np.flatnonzero(np.append(b[1:] != b[:-1], True))
    d_a = np.abs((last_a + 1) / a.size - np.searchsorted(b, a[last_a], side="right") / b.size)
    d_b = np.abs(np.searchsorted(a, b[last_b], side="right") / a.size - (last_b + 1) / b.size)
    return float(max(d_a.max(), d_b.max()))


def _counts(column: _Column) -> pd.Series:
    return column.counts if column.counts is not None else column.valid_series().value_counts()


def _statistic(method: str, ref: _Column, cur: _Column, score: float, floor: float) -> float:
    if method == "ks":
        if ref.valid is not None and cur.valid is not None:
            return _ks_statistic(ref.valid, cur.valid)
        return float(
            stats.ks_2samp(ref.valid_series().to_numpy(float), cur.valid_series().to_numpy(float)).statistic
        )
    if method == "chisquare":
        return _chisquare_statistic(_counts(ref), _counts(cur), floor)
    if method == CHI2_HOMOGENEITY:
        return chi2_from_counts(_counts(ref), _counts(cur))[0]
    if method not in P_VALUE_TESTS:
        return score  # a distance is its own statistic
    return 0.0  # other p-value tests: Evidently does not expose the statistic


def _quality(ref: _Column, cur: _Column, kind: FeatureKind) -> dict[str, Any]:
    n_ref, n_cur = len(ref.series), len(cur.series)
    out: dict[str, Any] = {
        "missing_share": (n_cur - cur.n_valid) / n_cur if n_cur else 0.0,
        "reference_missing_share": (n_ref - ref.n_valid) / n_ref if n_ref else 0.0,
        "unseen_category_count": 0,
        "out_of_range_share": None,
    }
    if kind is FeatureKind.CATEGORICAL:
        assert ref.counts is not None
        assert cur.counts is not None
        out["unseen_category_count"] = int((~cur.counts.index.isin(ref.counts.index)).sum())
    elif cur.n_valid and ref.n_valid:
        assert ref.valid is not None
        assert cur.valid is not None
        lo, hi = float(ref.valid.min()), float(ref.valid.max())
        out["out_of_range_share"] = float(np.mean((cur.valid < lo) | (cur.valid > hi)))
    elif cur.n_valid == 0:
        out["out_of_range_share"] = 0.0
    return out


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, FeatureKind],
    config: DriftConfig = DriftConfig(),
    prediction_column: str = PREDICTION_COLUMN,
) -> DriftComputation:
    """Drift of ``current`` against ``reference`` for the columns in ``kinds`` (and the score).

    Args:
        reference: reference rows; the columns of ``kinds`` and, for prediction drift,
            ``prediction_column``.
        current: current rows; a column of ``kinds`` missing here counts as null in every row.
        kinds: monitored columns and their kinds (the score column excluded).
        config: tests, alpha, correction, PSI.
        prediction_column: name of the score column on both sides.

    Returns:
        The per-column figures, the prediction drift, the verdict and the Evidently snapshot.

    Raises:
        ValueError: when ``kinds`` names a column the reference lacks.
    """
    missing = [c for c in kinds if c not in reference.columns]
    if missing:
        raise ValueError(f"reference lacks monitored columns {missing}")
    columns = sorted(kinds)
    # each column normalised once per side, with its non-null values (numeric) or its category
    # counts (categorical) computed once and shared by the quality figures, the statistic and PSI;
    # the current side's counts of null-free string columns are taken from our chi-square's run
    # inside the Evidently report (the same values) rather than counted twice
    ref_cols = {c: _prepare(reference[c], kinds[c], len(reference)) for c in columns}
    cur_cols = {
        c: _prepare(current[c] if c in current.columns else None, kinds[c], len(current), defer_counts=True)
        for c in columns
    }
    tested: dict[str, tuple[FeatureKind, str]] = {}
    empty = {c for c in columns if ref_cols[c].n_valid == 0 or cur_cols[c].n_valid == 0}
    for c in columns:
        if c not in empty:
            tested[c] = (kinds[c], config.method(c, kinds[c]))

    has_prediction = (
        prediction_column in reference.columns
        and prediction_column in current.columns
        and reference[prediction_column].notna().any()
        and current[prediction_column].notna().any()
    )
    pred_method = config.num_method if config.num_method in P_VALUE_TESTS else "ks"
    if has_prediction:
        ref_cols[prediction_column] = _prepare(
            reference[prediction_column], FeatureKind.NUMERIC, len(reference)
        )
        cur_cols[prediction_column] = _prepare(current[prediction_column], FeatureKind.NUMERIC, len(current))
        tested[prediction_column] = (FeatureKind.NUMERIC, pred_method)

    scores, snapshot, captured = _run_evidently(ref_cols, cur_cols, tested, config)
    _fill_counts({c: cur_cols[c] for c in columns}, captured)
    results = {
        c: FeatureDrift(
            feature=c,
            kind=kinds[c],
            status=FeatureStatus.EMPTY if c in empty else FeatureStatus.COMPUTED,
            **_quality(ref_cols[c], cur_cols[c], kinds[c]),
        )
        for c in columns
    }

    family = [c for c in tested if c != prediction_column and tested[c][1] in P_VALUE_TESTS]
    decision = decide([scores[c] for c in family], config.alpha, config.correction)
    verdicts = dict(zip(family, decision.rejected, strict=True))
    thresholds = dict(zip(family, decision.thresholds, strict=True))
    for c in tested:
        if c == prediction_column:
            continue
        kind, method = tested[c]
        ref_col, cur_col = ref_cols[c], cur_cols[c]
        fd = results[c]
        score = scores[c]
        fd.test_name = method
        fd.statistic = _finite(_statistic(method, ref_col, cur_col, score, config.psi.floor))
        if method in P_VALUE_TESTS:
            fd.p_value = 1.0 if math.isnan(score) else score
            fd.threshold = thresholds[c]
            fd.drifted = verdicts[c]
            if fd.unseen_category_count > 0:
                fd.drifted = True  # a category the reference never saw is drift by definition
        else:
            fd.threshold = config.distance_threshold
            fd.drifted = bool(score >= config.distance_threshold)
        if kind is FeatureKind.CATEGORICAL:
            assert ref_col.counts is not None
            assert cur_col.counts is not None
            fd.psi = psi_from_counts(ref_col.counts, cur_col.counts, config.psi)
        else:
            assert ref_col.valid is not None
            assert cur_col.valid is not None
            fd.psi = psi_numeric(ref_col.valid, cur_col.valid, config.psi)
        fd.psi_band = psi_band(fd.psi, config.psi)

    prediction = None
    if has_prediction:
        ref_col, cur_col = ref_cols[prediction_column], cur_cols[prediction_column]
        assert ref_col.valid is not None
        assert cur_col.valid is not None
        score = scores[prediction_column]
        p = 1.0 if math.isnan(score) else score
        psi = psi_numeric(ref_col.valid, cur_col.valid, config.psi)
        prediction = FeatureDrift(
            feature=prediction_column,
            kind=FeatureKind.NUMERIC,
            status=FeatureStatus.COMPUTED,
            test_name=pred_method,
            statistic=_finite(_statistic(pred_method, ref_col, cur_col, score, config.psi.floor)),
            p_value=p,
            threshold=config.alpha,
            drifted=p < config.alpha,
            psi=psi,
            psi_band=psi_band(psi, config.psi),
            **_quality(ref_col, cur_col, FeatureKind.NUMERIC),
        )

    features = [results[c] for c in columns]
    computed = [f for f in features if f.status is FeatureStatus.COMPUTED]
    drifted = [f for f in computed if f.drifted]
    return DriftComputation(
        features=features,
        prediction_drift=prediction,
        drift_share=len(drifted) / len(computed) if computed else 0.0,
        dataset_drift=bool(drifted),
        rule=rule_text(config.alpha, config.correction, len(family)),
        snapshot=snapshot,
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _run_evidently(
    ref_cols: Mapping[str, _Column],
    cur_cols: Mapping[str, _Column],
    tested: Mapping[str, tuple[FeatureKind, str]],
    config: DriftConfig,
) -> tuple[dict[str, float], Any, dict[str, tuple[pd.Series, pd.Series]]]:
    """One Evidently report of ``ValueDrift`` per tested column.

    Returns:
        ``{column: value}``, the snapshot, and the ``(reference, current)`` category counts our
        chi-square counted during the report (:data:`_CAPTURED_COUNTS`).
    """
    if not tested:
        return {}, None, {}
    ev = _evidently()
    names = list(tested)
    numeric = [c for c in names if tested[c][0] is FeatureKind.NUMERIC]
    categorical = [c for c in names if tested[c][0] is FeatureKind.CATEGORICAL]
    definition = ev.DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ref = ev.Dataset.from_pandas(
        pd.DataFrame({c: ref_cols[c].series for c in names}), data_definition=definition
    )
    cur = ev.Dataset.from_pandas(
        pd.DataFrame({c: cur_cols[c].series for c in names}), data_definition=definition
    )
    metrics = [
        ev.metrics.ValueDrift(
            column=c,
            method=tested[c][1],
            threshold=config.alpha if tested[c][1] in P_VALUE_TESTS else config.distance_threshold,
        )
        for c in names
    ]
    with warnings.catch_warnings():
        # chi-square with an unseen category divides by a zero expected count: p = 0, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        captured: dict[str, tuple[pd.Series, pd.Series]] = {}
        token = _CAPTURED_COUNTS.set(captured)
        try:
            snapshot = ev.Report(metrics).run(cur, ref)
        finally:
            _CAPTURED_COUNTS.reset(token)
    scores: dict[str, float] = {}
    for item in snapshot.dict()["metrics"]:
        column = item["config"]["column"]
        scores[column] = float(item["value"])
    return scores, snapshot, captured

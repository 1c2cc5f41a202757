"""TEST AND SCRIPT HELPER: reference and current frames built from ``data/german_credit.csv`` for
the tests and the quality / speed scripts (``scripts/`` put this folder on ``sys.path``), and the
German product as the service reads it (``products/german_credit``).

* Columns as the feature-service names them (the CSV's), plus ``probability_of_default`` from a
  fixed, deterministic scorecard-like function (:func:`score`), so prediction drift follows the
  features, and ``creditability`` (``good`` / ``bad``).
* :func:`stratified_split`: a seeded split into a reference half and a current half, stratified
  by ``creditability``.
* :func:`windows`: consecutive ``size``-row windows of a shuffled frame (drawn without
  replacement; a remainder smaller than ``size`` is dropped).
* :func:`shift`: the issue's injected shift: ``credit_amount`` x 1.5, ``age_in_years`` + 10 years,
  30% of the rows' ``purpose`` set to ``business``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from creditrisk_products import Product, load_product
from drift_service.domain import FeatureKind
from drift_service.product import feature_kinds
from drift_service.settings import repo_root

#: The German credit product (``products/german_credit``), as the service loads it.
GERMAN: Product = load_product(repo_root() / "products" / "german_credit")
#: Kinds of its 20 attributes (its ``[drift.features]``).
KINDS: dict[str, FeatureKind] = feature_kinds(GERMAN)
#: Its label column.
LABEL = GERMAN.label.column


def german_credit_path() -> Path:
    """``<repo>/data/german_credit.csv``."""
    return repo_root() / "data" / "german_credit.csv"


def score(frame: pd.DataFrame) -> pd.Series:
    """A deterministic probability of default from a few attributes (a fixed logistic scorecard;
    coefficients chosen by hand, not fitted): longer, larger loans and no / negative checking
    account raise it, age and a critical credit history (other credits paid) lower it."""
    z = (
        -1.6
        + 0.035 * (frame["duration_in_month"] - 20)
        + 0.00008 * (frame["credit_amount"] - 3000)
        - 0.02 * (frame["age_in_years"] - 35)
        + 0.9 * frame["status_of_existing_checking_account"].eq("... < 0 DM")
        + 0.5 * frame["status_of_existing_checking_account"].eq("0 <= ... < 200 DM")
        - 0.6 * frame["credit_history"].str.startswith("critical account")
        + 0.3 * frame["purpose"].eq("business")
    )
    return 1.0 / (1.0 + np.exp(-z.astype(float)))


def load_german_credit(path: Path | None = None) -> pd.DataFrame:
    """The 1,000 applicants with ``probability_of_default`` added."""
    frame = pd.read_csv(path or german_credit_path())
    frame["probability_of_default"] = score(frame)
    return frame


def stratified_split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference half and current half, stratified by the label, shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    reference, current = [], []
    for _, group in frame.groupby(LABEL, sort=True):
        index = rng.permutation(group.index.to_numpy())
        half = len(index) // 2
        reference.append(frame.loc[index[:half]])
        current.append(frame.loc[index[half:]])
    ref = pd.concat(reference)
    cur = pd.concat(current)
    return (
        ref.sample(frac=1.0, random_state=seed).reset_index(drop=True),
        cur.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True),
    )


def windows(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """Consecutive windows of ``size`` rows of an already shuffled frame (without replacement)."""
    for start in range(0, len(frame) - size + 1, size):
        yield frame.iloc[start : start + size].reset_index(drop=True)


def shift(frame: pd.DataFrame, seed: int, purpose_share: float = 0.3) -> pd.DataFrame:
    """The injected shift: credit_amount x 1.5, age + 10 years, ``purpose_share`` of purposes
    set to ``business``; the score is recomputed from the shifted features."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["credit_amount"] = (out["credit_amount"] * 1.5).round().astype(int)
    out["age_in_years"] = out["age_in_years"] + 10
    chosen = rng.random(len(out)) < purpose_share
    out.loc[chosen, "purpose"] = "business"
    out["probability_of_default"] = score(out)
    return out

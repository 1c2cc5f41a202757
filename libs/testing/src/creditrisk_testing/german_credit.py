"""TEST FIXTURE (extra ``feature-store``): a training frame built from ``data/german_credit.csv``
the way the feature-service derives it. Not the production path: in production the training frame
comes only from the feature-service's ``GetHistoricalFeatures`` (point-in-time correct, labels
joined on applicant and label time). Tests, the quality script and benchmarks use this to avoid
starting Feast.

Reproduces ``feature_service.ingest`` (issue 3):

* ``applicant_id`` = int64 row number from 1, in file order;
* application time (``event_timestamp``) drawn with ``numpy.random.default_rng(seed)`` uniformly
  over [2023-01-01, 2025-01-01) UTC in whole seconds;
* label ``creditability``: bad = 1, good = 0, known 365 days later (``label_timestamp``);
* on-demand feature ``monthly_installment`` = credit_amount / duration_in_month (float64).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[4]
GERMAN_CREDIT_CSV = REPO_ROOT / "data" / "german_credit.csv"
APPLICATION_START = datetime(2023, 1, 1, tzinfo=UTC)
APPLICATION_END = datetime(2025, 1, 1, tzinfo=UTC)
LABEL_DELAY_DAYS = 365
#: The 20 attributes of ``data/german_credit.csv``, in file order (the label column follows them).
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "status_of_existing_checking_account",
    "duration_in_month",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_account_and_bonds",
    "present_employment_since",
    "installment_rate_in_percentage_of_disposable_income",
    "personal_status_and_sex",
    "other_debtors_or_guarantors",
    "present_residence_since",
    "property",
    "age_in_years",
    "other_installment_plans",
    "housing",
    "number_of_existing_credits_at_this_bank",
    "job",
    "number_of_people_being_liable_to_provide_maintenance_for",
    "telephone",
    "foreign_worker",
)
INT_COLUMNS = (
    "duration_in_month",
    "credit_amount",
    "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since",
    "age_in_years",
    "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)


def german_credit_frame(seed: int = 42, csv: Path = GERMAN_CREDIT_CSV) -> pd.DataFrame:
    """The German credit data as a feature-service training frame (see the module docstring).

    Returns:
        1,000 rows: ``applicant_id`` (int64), the 20 attributes (integers as ``Int64``,
        categoricals as ``string``), ``monthly_installment`` (float64), ``event_timestamp`` and
        ``label_timestamp`` (UTC), ``creditability`` (int64, bad = 1).
    """
    raw = pd.read_csv(csv, dtype="string", keep_default_na=False, na_values=[""])
    frame = pd.DataFrame({"applicant_id": np.arange(1, len(raw) + 1, dtype=np.int64)})
    for column in raw.columns:
        if column == "creditability":
            continue
        frame[column] = raw[column].astype("Int64") if column in INT_COLUMNS else raw[column].astype("string")
    frame["monthly_installment"] = frame["credit_amount"].astype("float64") / frame[
        "duration_in_month"
    ].astype("float64")
    span = int((APPLICATION_END - APPLICATION_START).total_seconds())
    offsets = np.random.default_rng(seed).integers(0, span, size=len(raw), dtype=np.int64)
    frame["event_timestamp"] = pd.Timestamp(APPLICATION_START) + pd.to_timedelta(offsets, unit="s")
    frame["label_timestamp"] = frame["event_timestamp"] + pd.Timedelta(days=LABEL_DELAY_DAYS)
    frame["creditability"] = (
        raw["creditability"].str.strip().str.lower().map({"bad": 1, "good": 0}).astype("int64")
    )
    return frame

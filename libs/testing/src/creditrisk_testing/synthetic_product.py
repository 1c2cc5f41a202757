"""TEST FIXTURE: a second credit product, generated: small-business loans with a learnable signal.

:func:`write_product` writes a complete product folder, ``<folder>/sme_loans/``, as a user would
write one (``docs/products.md``): a ``product.toml``, a standard Feast repository
(``feature_repo/``, text in :mod:`creditrisk_testing.synthetic_repo`) and the raw file
``data/sme_loans.csv``. It is unlike the German product on purpose, so a test that takes it from
ingest to monitoring finds what is still German in the platform:

* entity ``business``, join key ``business_ref`` of type string (values like ``SME-004217``), a
  column of the file (not the row number);
* label view ``loan_outcome``, column ``defaulted`` (1 = default), from the raw column
  ``default_flag`` (``yes`` / ``no``), known 180 days after the application; the label view's
  application time column is ``applied_at``;
* application times in the file (``applied_at``, ISO 8601 with the region's UTC offset), uniform
  over [2024-01-01, 2026-01-01) UTC in whole seconds;
* Float64 and Int64 stored features, two categoricals (``sector``, ``region``); ``sector`` meets
  values in serving that no training row has (:meth:`SyntheticProduct.unseen_sector_values`);
  a few nulls in ``existing_debt``;
* the on-demand feature ``debt_to_revenue`` = (existing_debt + facility_amount) / annual_revenue,
  with the request-time field ``quoted_facility_amount`` (caller-facing ``facility_amount``);
* cost matrix FN 8 / FP 1; one protected attribute, ``owner_gender`` (no effect on the outcome).

The outcome is drawn from a logistic model of the features (the default rate set to 22 % by the
intercept), strong enough for a held-out ROC AUC well above the gate's floor of 0.70. The output is
a function of ``rows`` and ``seed`` only: the same bytes on every run and Python version (every
draw comes from :meth:`random.Random.random`, whose sequence Python keeps stable).

No dependency beyond the standard library (no extra needed).
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from creditrisk_testing import synthetic_repo as repo

APPLICATION_START = datetime(2024, 1, 1, tzinfo=UTC)
APPLICATION_END = datetime(2026, 1, 1, tzinfo=UTC)  # exclusive
TARGET_DEFAULT_RATE = 0.22
#: Scale of the features' effects on the log-odds of default (the signal's strength).
SIGNAL = 1.8
#: sector -> (share of businesses, effect on the log-odds of default).
SECTORS: dict[str, tuple[float, float]] = {
    "retail": (0.24, 0.3),
    "manufacturing": (0.18, -0.2),
    "construction": (0.16, 0.8),
    "hospitality": (0.14, 1.2),
    "professional_services": (0.18, -0.9),
    "agriculture": (0.10, 0.0),
}
#: Sectors no row of the file has: serving sends them (a categorical value unseen in training).
UNSEEN_SECTORS = ("space_logistics", "vertical_farming")
#: region -> (share, effect on the log-odds, UTC offset in hours of its application times).
REGIONS: dict[str, tuple[float, float, int]] = {
    "north": (0.25, -0.3, 0),
    "south": (0.25, 0.3, 1),
    "east": (0.20, 0.1, 2),
    "west": (0.20, -0.1, -5),
    "islands": (0.10, 0.5, 9),
}
GENDERS: dict[str, float] = {"female": 0.36, "male": 0.58, "undisclosed": 0.06}
TERMS = (12, 24, 36, 48, 60)
#: Share of rows whose ``existing_debt`` is missing in the file (the outcome still uses the debt).
DEBT_NULL_SHARE = 0.03
#: The stored numeric features, in file order.
NUMERIC_FEATURES: tuple[str, ...] = (
    "years_trading",
    "employees",
    "annual_revenue",
    "facility_amount",
    "facility_term_months",
    "existing_debt",
    "late_payments_12m",
)
#: The stored categorical model features, in file order (the protected attribute is categorical too).
STORED_CATEGORICAL: tuple[str, ...] = ("sector", "region")
#: The CSV's columns, in order.
CSV_COLUMNS: tuple[str, ...] = (
    repo.JOIN_KEY,
    repo.APPLIED_AT,
    *STORED_CATEGORICAL,
    *NUMERIC_FEATURES,
    repo.PROTECTED,
    repo.LABEL_SOURCE,
)


@dataclass(frozen=True)
class ServingRow:
    """A business never seen in the file, ready to push and to score.

    Attributes:
        key: its ``business_ref`` (unlike every key of the file).
        event_time: when its feature values are valid (UTC).
        features: stored feature values by feature view (``{view: {column: value}}``, the join key
            included): push each through the view's push source ``<view>_push`` before predicting.
        request_values: request-time values by caller-facing name (may be empty).
    """

    key: str
    event_time: datetime
    features: dict[str, dict[str, Any]]
    request_values: dict[str, float]

    def payload(self) -> dict[str, Any]:
        """A predict request's body as JSON-ready data: ``{"business_ref": key, "request_values": {...}}``."""
        return {repo.JOIN_KEY: self.key, "request_values": dict(self.request_values)}


@dataclass(frozen=True)
class SyntheticProduct:
    """A generated product folder and what a test needs to know about it.

    Attributes:
        folder: the product folder (``<folder>/sme_loans``), holding ``product.toml``.
        name: the product's name (``sme_loans``).
        csv: the raw data file.
        rows / seed: what it was generated from.
        join_key / key_type: the entity's join key and its type (``string``).
        label_column / label_view: the label and its (offline-only) view.
        label_source / label_codes: the raw file's label column and its codes.
        application_time_column: the raw file's application time column.
        label_application_time_column: the label view's column holding the application time
            (``[label].application_time_column``; not the German product's name either).
        request_fields: caller-facing request field -> the request source's field.
        features: stored features by kind (``{"numeric": (...), "categorical": (...)}``), the
            protected attribute included.
        on_demand_features: features computed by the on-demand view.
        protected_attributes: features excluded from the model's inputs.
        model_service / fairness_service / label_service: the feature services.
        feast_project / registered_model: the Feast project and MLflow model names.
        maturity_days: days from application to known outcome.
        default_rate: share of rows that defaulted.
        unseen_values: per categorical feature, values no row of the file has.
    """

    folder: Path
    csv: Path
    rows: int
    seed: int
    default_rate: float
    name: str = repo.NAME
    join_key: str = repo.JOIN_KEY
    key_type: str = "string"
    label_column: str = repo.LABEL_COLUMN
    label_view: str = repo.LABEL_VIEW
    label_source: str = repo.LABEL_SOURCE
    label_codes: dict[str, int] = field(default_factory=lambda: dict(repo.LABEL_CODES))
    application_time_column: str = repo.APPLIED_AT
    label_application_time_column: str = repo.LABEL_APPLICATION_TIME
    request_fields: dict[str, str] = field(default_factory=lambda: dict(repo.REQUEST_FIELDS))
    features: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "numeric": NUMERIC_FEATURES,
            "categorical": (*STORED_CATEGORICAL, repo.PROTECTED),
        }
    )
    on_demand_features: tuple[str, ...] = (repo.ODFV_OUTPUT,)
    protected_attributes: tuple[str, ...] = (repo.PROTECTED,)
    model_service: str = repo.MODEL_SERVICE
    fairness_service: str = repo.FAIRNESS_SERVICE
    label_service: str = repo.LABEL_SERVICE
    feast_project: str = repo.FEAST_PROJECT
    registered_model: str = repo.REGISTERED_MODEL
    maturity_days: int = repo.MATURITY_DAYS
    unseen_values: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"sector": UNSEEN_SECTORS})

    @property
    def feature_repo(self) -> Path:
        """The Feast repository's folder."""
        return self.folder / "feature_repo"

    @property
    def model_features(self) -> tuple[str, ...]:
        """The model feature service's features: stored ones (protected excluded), then on-demand."""
        stored = (*self.features["numeric"], *self.features["categorical"])
        return (*(f for f in stored if f not in self.protected_attributes), *self.on_demand_features)

    def unseen_sector_values(self) -> tuple[str, ...]:
        """``sector`` values that no row of the file has (serving sends them)."""
        return self.unseen_values["sector"]

    def serving_rows(self, n: int, *, unseen_every: int = 2, quote_every: int = 3) -> list[ServingRow]:
        """``n`` new businesses (keys not in the file), drawn like the file's, seeded by ``seed``.

        Args:
            n: how many (>= 0).
            unseen_every: row ``i`` with ``i % unseen_every == 0`` has an unseen ``sector``
                (cycling through :meth:`unseen_sector_values`); 0 = none.
            quote_every: row ``i`` with ``i % quote_every == 1`` carries a request-time
                ``facility_amount`` (half the stored one); 0 = none.

        Returns:
            The rows, the same for the same product, ``n`` and arguments.

        Raises:
            ValueError: ``n`` or an ``*_every`` argument is negative.
        """
        if n < 0 or unseen_every < 0 or quote_every < 0:
            raise ValueError("n, unseen_every and quote_every must be >= 0")
        rng = random.Random(self.seed * 1_000_003 + 17)  # noqa: S311 (test data, not secrets)
        now = APPLICATION_END
        out = []
        for i in range(n):
            b = _draw_business(rng)
            if unseen_every and i % unseen_every == 0:
                b["sector"] = UNSEEN_SECTORS[(i // unseen_every) % len(UNSEEN_SECTORS)]
            key = f"SME-{10 * self.rows + i:06d}"
            features = {
                view: {repo.JOIN_KEY: key, **{name: b[name] for name, _ in cols}}
                for view, cols in repo.VIEWS.items()
                if view != repo.LABEL_VIEW
            }
            request: dict[str, float] = {}
            if quote_every and i % quote_every == 1:
                request["facility_amount"] = round(b["facility_amount"] / 2, 2)
            out.append(ServingRow(key, now + timedelta(seconds=i), features, request))
        return out


def write_product(folder: Path, *, rows: int = 2000, seed: int = 7) -> SyntheticProduct:
    """Write the synthetic product under ``folder`` (see the module docstring).

    Args:
        folder: an existing directory; ``folder/sme_loans/`` is (re)written.
        rows: rows of the data file (>= 100: the gate window needs enough labelled rows).
        seed: seed of every draw.

    Returns:
        The product written.

    Raises:
        ValueError: ``rows`` below 100 or ``seed`` negative.
    """
    if rows < 100:
        raise ValueError(f"rows must be >= 100, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    product_dir = Path(folder) / repo.NAME
    (product_dir / "feature_repo").mkdir(parents=True, exist_ok=True)
    (product_dir / "data").mkdir(exist_ok=True)
    (product_dir / "product.toml").write_text(repo.PRODUCT_TOML, encoding="utf-8")
    for name, text in repo.repo_files().items():
        (product_dir / "feature_repo" / name).write_text(text, encoding="utf-8")
    text, rate = _csv_text(rows, seed)
    csv_path = product_dir / "data" / f"{repo.NAME}.csv"
    csv_path.write_bytes(text.encode("utf-8"))
    return SyntheticProduct(folder=product_dir, csv=csv_path, rows=rows, seed=seed, default_rate=rate)


# ---------------------------------------------------------------- the data


def _choice(rng: random.Random, weights: dict[str, Any]) -> str:
    """A key of ``weights`` drawn by its share (the first element of a tuple value, or the value)."""
    u = rng.random()
    total = 0.0
    for key, value in weights.items():
        total += value[0] if isinstance(value, tuple) else value
        if u < total:
            return key
    return next(reversed(weights))


def _normal(rng: random.Random) -> float:
    """A standard normal draw (Box-Muller on two ``random()`` draws)."""
    u1 = 1.0 - rng.random()  # (0, 1]
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * rng.random())


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw by inversion."""
    u = rng.random()
    k, p = 0, math.exp(-lam)
    cumulative = p
    while u > cumulative and k < 50:
        k += 1
        p *= lam / k
        cumulative += p
    return k


def _draw_business(rng: random.Random) -> dict[str, Any]:
    """One business's file values (no key, time or outcome), and ``_debt`` (never null) and
    ``_quality`` (latent) for the outcome."""
    sector = _choice(rng, SECTORS)
    region = _choice(rng, REGIONS)
    quality = _normal(rng)  # latent management quality: fewer late payments, lower leverage
    years = min(60, int(-math.log(1.0 - rng.random()) * 9.0))
    employees = max(1, min(500, round(math.exp(1.8 + 1.0 * _normal(rng)))))
    revenue = round(employees * math.exp(math.log(80_000.0) + 0.45 * _normal(rng)), 2)
    amount = round(revenue * (0.05 + 0.45 * rng.random()), -2) or 100.0
    debt = round(revenue * max(0.0, 0.3 - 0.12 * quality + 0.18 * _normal(rng)), 2)
    late = _poisson(rng, 0.7 * math.exp(-0.6 * quality))
    term = TERMS[min(len(TERMS) - 1, int(rng.random() * len(TERMS)))]
    gender = _choice(rng, GENDERS)
    debt_shown = None if rng.random() < DEBT_NULL_SHARE else debt
    return {
        "sector": sector,
        "region": region,
        "years_trading": years,
        "employees": employees,
        "annual_revenue": revenue,
        "facility_amount": amount,
        "facility_term_months": term,
        "existing_debt": debt_shown,
        "late_payments_12m": late,
        repo.PROTECTED: gender,
        "_debt": debt,
    }


def _log_odds(b: dict[str, Any]) -> float:
    """The outcome's log-odds without the intercept (owner_gender has no effect)."""
    leverage = (b["_debt"] + b["facility_amount"]) / b["annual_revenue"]
    return SIGNAL * float(
        SECTORS[b["sector"]][1]
        + REGIONS[b["region"]][1]
        - 0.09 * min(b["years_trading"], 25)
        - 0.45 * math.log(b["employees"])
        + 2.6 * leverage
        + 0.75 * min(b["late_payments_12m"], 5)
        + 0.02 * (b["facility_term_months"] - 36)
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _intercept(scores: list[float], rate: float) -> float:
    """The intercept at which the mean probability of default is ``rate`` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(80):
        mid = (low + high) / 2
        mean = sum(_sigmoid(mid + s) for s in scores) / len(scores)
        low, high = (mid, high) if mean < rate else (low, mid)
    return (low + high) / 2


def _csv_text(rows: int, seed: int) -> tuple[str, float]:
    """The data file's text and its default rate."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    businesses = [_draw_business(rng) for _ in range(rows)]
    scores = [_log_odds(b) for b in businesses]
    b0 = _intercept(scores, TARGET_DEFAULT_RATE)
    keys = list(range(10 * rows))  # partial Fisher-Yates: distinct keys in random order
    for i in range(rows):
        j = i + int(rng.random() * (len(keys) - i))
        keys[i], keys[j] = keys[j], keys[i]
    span = int((APPLICATION_END - APPLICATION_START).total_seconds())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    defaults = 0
    for i, (b, score) in enumerate(zip(businesses, scores, strict=True)):
        applied = APPLICATION_START + timedelta(seconds=int(rng.random() * span))
        local = applied.astimezone(timezone(timedelta(hours=REGIONS[b["region"]][2])))
        defaulted = rng.random() < _sigmoid(b0 + score)
        defaults += defaulted
        writer.writerow(
            [
                f"SME-{keys[i]:06d}",
                local.isoformat(),
                b["sector"],
                b["region"],
                b["years_trading"],
                b["employees"],
                f"{b['annual_revenue']:.2f}",
                f"{b['facility_amount']:.2f}",
                b["facility_term_months"],
                "" if b["existing_debt"] is None else f"{b['existing_debt']:.2f}",
                b["late_payments_12m"],
                b[repo.PROTECTED],
                "yes" if defaulted else "no",
            ]
        )
    return buffer.getvalue(), defaults / rows

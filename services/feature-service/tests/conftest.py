"""Shared fixtures: one applied store per profile and per purpose, shared by the whole session.

Every session uses its own Feast project names (a random token), hence its own Redis key space,
PostgreSQL schema and registry rows, and its own temporary folders, so parallel runs do not collide;
everything is torn down at the end. The real profile takes the servers from the ``redis_url`` /
``postgres_dsn`` fixtures of ``creditrisk-testing``, which FAIL (never skip) when they are down.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from feature_service.settings import FeatureServiceSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
GERMAN_CSV = REPO_ROOT / "data" / "german_credit.csv"
GERMAN_PRODUCT = REPO_ROOT / "products" / "german_credit"
SESSION_TOKEN = uuid.uuid4().hex[:8]

#: Reference time of the hand-made point-in-time cases.
T = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
#: Hand-made rows are stamped relative to T, except the null cases, stamped recently so that they
#: are inside the 30-day TTL online.
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def loan_row(
    applicant_id: int,
    at: datetime,
    amount: int | None,
    duration: int | None = 12,
    purpose: str | None = "car",
    created: datetime | None = None,
) -> dict[str, Any]:
    """One ``loan_request`` row; ``other_debtors_or_guarantors`` and the installment rate are null."""
    return {
        "applicant_id": applicant_id,
        "duration_in_month": duration,
        "credit_amount": amount,
        "purpose": purpose,
        "installment_rate_in_percentage_of_disposable_income": None,
        "other_debtors_or_guarantors": None,
        "other_installment_plans": "none",
        "event_timestamp": at,
        "created_timestamp": created or at,
    }


#: The hand-made offline rows of ``loan_request``. In every row, the int column
#: ``installment_rate_in_percentage_of_disposable_income`` and the string column
#: ``other_debtors_or_guarantors`` are null (a column null in every row of the batch).
HANDMADE_LOAN_ROWS = [
    # 101: a value stamped later than the entity row must not be seen
    loan_row(101, T - timedelta(days=10), 1000),
    loan_row(101, T + timedelta(days=10), 2000),
    # 102: non-UTC offsets in the entity rows
    loan_row(102, T - timedelta(days=10), 500),
    loan_row(102, T, 600),
    # 103: a late correction (same event time, created 20 days later)
    loan_row(103, T, 700, created=T),
    loan_row(103, T, 777, created=T + timedelta(days=20)),
    # 104: only a row in the entity row's future; 105: only a row older than the 30-day TTL
    loan_row(104, T + timedelta(days=30), 900),
    loan_row(105, T - timedelta(days=60), 800),
    # 201 / 202: nulls in single rows, recent
    loan_row(201, RECENT, None, duration=12, purpose=None),
    loan_row(202, RECENT, 3000, duration=None, purpose="car"),
]


def _quiet() -> None:
    warnings.filterwarnings(
        "ignore", category=RuntimeWarning, message="On demand feature view is an experimental"
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def german_product() -> Any:
    """The German credit product (``products/german_credit``)."""
    from creditrisk_products import load_product

    return load_product(GERMAN_PRODUCT)


def german_layout() -> Any:
    """The German credit product's layout (its Feast repository parsed)."""
    from feature_service.product import load_layout

    return load_layout(german_product())


@pytest.fixture(scope="session")
def layout() -> Any:
    """The German credit product's :class:`~feature_service.schema.ProductLayout`."""
    return german_layout()


@pytest.fixture(scope="session", params=["embedded", pytest.param("real", marks=pytest.mark.real)])
def profile(request: pytest.FixtureRequest) -> str:
    """The profile under test; the real one requires Redis and PostgreSQL (fails if they are down)."""
    if request.param == "real":
        request.getfixturevalue("redis_url")
        request.getfixturevalue("postgres_dsn")
    return str(request.param)


@pytest.fixture(scope="session")
def settings_factory(
    profile: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., FeatureServiceSettings]:
    """Build settings for a purpose on the profile under test, in a project of this session."""

    def make(purpose: str, **overrides: Any) -> FeatureServiceSettings:
        values: dict[str, Any] = {
            "profile": profile,
            "project": f"fst_{purpose}_{SESSION_TOKEN}_{profile[:4]}",
            "data_dir": tmp_path_factory.mktemp(f"{purpose}-{profile}"),
        }
        if profile == "real":
            values["redis_url"] = request.getfixturevalue("redis_url")
            values["postgres_dsn"] = request.getfixturevalue("postgres_dsn")
        values.update(overrides)
        return FeatureServiceSettings(**values)

    return make


@pytest.fixture(scope="session")
def german(settings_factory: Callable[..., FeatureServiceSettings]) -> Iterator[Any]:
    """The German credit data ingested (seed 42), applied and materialized: a ``FeatureStoreCore``."""
    from feature_service.core import FeatureStoreCore
    from feature_service.ingest import ingest

    _quiet()
    settings = settings_factory("german")
    ingest(GERMAN_CSV, settings)
    core = FeatureStoreCore(settings)
    core.writes.materialize(datetime(2022, 1, 1, tzinfo=UTC), datetime.now(UTC))
    yield core
    core.teardown()


@pytest.fixture(scope="session")
def handmade(settings_factory: Callable[..., FeatureServiceSettings]) -> Iterator[Any]:
    """The hand-made cases (30-day TTL) written, applied and materialized: a ``FeatureStoreCore``.

    Tests that write more rows (pushes) use applicant ids >= 300, one range per test.
    """
    import pyarrow as pa
    from feature_service.core import FeatureStoreCore
    from feature_service.offline import arrow_schema, offline_writer

    _quiet()
    settings = settings_factory("handmade", feature_ttl_days=30)
    writer = offline_writer(settings)
    for view in german_layout().views:
        if view.name == "loan_request":
            writer.replace(view, pa.Table.from_pylist(HANDMADE_LOAN_ROWS, schema=arrow_schema(view)))
        else:
            writer.replace(view, arrow_schema(view).empty_table())
    core = FeatureStoreCore(settings)
    core.apply()
    core.writes.materialize(datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC))
    yield core
    core.teardown()

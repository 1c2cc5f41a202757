"""Shared fixtures: the German credit frames, Evidently imported once, stores on both profiles.

The PostgreSQL store (marker ``real``) uses :mod:`creditrisk_testing.sqlstores` over the
``postgres_dsn`` fixture, which fails, never skips, when PostgreSQL is down; every test gets its
own schema (``drift_test_<random>``), dropped at the end, so parallel runs do not collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from creditrisk_testing import sqlstores
from creditrisk_testing.german_credit import ATTRIBUTE_COLUMNS
from creditrisk_testing.sqlstores import SQL_PROFILES
from drift_service.domain import PredictionEvent, ServingMode
from drift_service.settings import DriftServiceSettings
from drift_service.store import Store
from german_frames import load_german_credit, stratified_split

T0 = datetime(2026, 6, 1, tzinfo=UTC)
#: The 20 attributes of the German credit data, in file order.
ATTRIBUTES = list(ATTRIBUTE_COLUMNS)


@pytest.fixture(scope="session")
def german() -> pd.DataFrame:
    """The 1,000 applicants with ``probability_of_default``."""
    return load_german_credit()


@pytest.fixture(scope="session")
def split(german: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference half and current half (seed 7)."""
    return stratified_split(german, 7)


@pytest.fixture(scope="session")
def evidently_loaded() -> None:
    """Import Evidently once per session (6-20 s)."""
    from drift_service.drift import warm_up

    warm_up()


@pytest.fixture(scope="session")
def reference_file(
    split: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The reference half as a Parquet file (with creditability for the reference AUC)."""
    path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    split[0].to_parquet(path)
    return path


@pytest.fixture(params=SQL_PROFILES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes stores on one database (same file / schema): a second call is a 'restart'."""
    with sqlstores.store_factory(request, tmp_path, Store, prefix="drift") as make:
        yield make


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    """A migrated, empty store on the profile of the parameter."""
    return store_factory()


@pytest.fixture
def settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DriftServiceSettings:
    """Embedded settings in a temporary folder, no metrics endpoint; explicit datasets allowed
    under the session's temporary folders (where :func:`reference_file` is)."""
    return DriftServiceSettings(
        data_dir=tmp_path / "data",
        metrics_port=None,
        report_http_port=0,
        warm_up=False,
        min_labels=20,
        dataset_roots=[tmp_path_factory.getbasetemp()],
    )


def events_from_frame(
    frame: pd.DataFrame,
    *,
    model_version: int = 1,
    start: datetime = T0,
    step: timedelta = timedelta(minutes=1),
    model_name: str = "credit-risk",
    prefix: str | None = None,
    applicant_base: int = 0,
) -> list[PredictionEvent]:
    """One prediction event per row, a minute apart."""
    prefix = prefix or uuid.uuid4().hex[:8]
    events = []
    for i, row in enumerate(frame.to_dict("records")):
        features = {
            c: (int(row[c]) if isinstance(row[c], int | float) and c not in ("purpose",) else row[c])
            for c in ATTRIBUTES
        }
        events.append(
            PredictionEvent(
                event_id=f"{prefix}-{i}",
                applicant_id=applicant_base + i,
                features=features,
                probability_of_default=float(row["probability_of_default"]),
                model_name=model_name,
                model_version=model_version,
                event_time=start + i * step,
                mode=ServingMode.CHAMPION,
            )
        )
    return events

"""Fixtures: the German credit training frame (test fixture, not the production path) and a real
``mlflow server`` per profile, started as a subprocess on a free port and stopped by PID.

The servers run MLflow's basic-auth app with the platform's users (training_service.mlflow_auth);
the users' passwords are generated for the session (the same on every server) and the tests act as
the ``training-service`` user (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from creditrisk_products import Product, load_product
from creditrisk_testing.german_credit import REPO_ROOT, german_credit_frame
from creditrisk_testing.products import german_variant
from training_service import mlflow_server
from training_service.mlflow_auth import PLATFORM_USERS, password_variable
from training_service.policy import FeaturePolicy
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import TrainingOutcome, TrainingSpec, train

os.environ.setdefault("OMP_NUM_THREADS", "1")
START_TIMEOUT_S = 180.0  # basic-auth adds its own store to the start; 2 cores shared
#: The platform users' passwords for this session (every server of the session is given them).
PASSWORDS = {user: secrets.token_urlsafe(18) for user in PLATFORM_USERS}
os.environ.update({password_variable(user): password for user, password in PASSWORDS.items()})
os.environ["MLFLOW_TRACKING_USERNAME"] = "training-service"
os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORDS["training-service"]


@pytest.fixture(scope="session")
def german() -> Product:
    """The German credit product (``products/german_credit``)."""
    return load_product(REPO_ROOT / "products" / "german_credit")


def product_variant(tmp_path: Path, edits: dict[str, str]) -> Product:
    """:func:`creditrisk_testing.products.german_variant`, loaded."""
    return load_product(german_variant(tmp_path, edits))


@pytest.fixture(scope="session")
def policy(german: Product) -> FeaturePolicy:
    """The German product's default feature policy."""
    return FeaturePolicy.default(german)


@pytest.fixture(scope="session")
def credit_frame() -> pd.DataFrame:
    """TEST FIXTURE: German credit as the feature-service would serve it (see testing/german_credit.py)."""
    return german_credit_frame(seed=42)


@pytest.fixture(scope="session")
def trained(credit_frame: pd.DataFrame, german: Product) -> dict[Algorithm, TrainingOutcome]:
    """One trained outcome per algorithm (5 folds x 1 repeat, seed 7)."""
    protocol = EvaluationProtocol(cv_folds=5, cv_repeats=1, test_fraction=0.2, gate_window_days=60)
    return {
        algorithm: train(
            credit_frame,
            TrainingSpec.for_product(german, model=ModelSpec(algorithm), evaluation=protocol, seed=7),
        )
        for algorithm in Algorithm
    }


def _serve(tmp: Path, command: mlflow_server.ServerCommand) -> Iterator[str]:
    proc = mlflow_server.start(command, tmp / "server.log")
    try:
        mlflow_server.wait_healthy(command.url, START_TIMEOUT_S, proc)
        yield command.url
    finally:
        mlflow_server.stop(proc)


@pytest.fixture(scope="session")
def mlflow_embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URI of an ``mlflow server`` on SQLite with served artifacts (embedded profile)."""
    tmp = tmp_path_factory.mktemp("mlflow-embedded")
    command = mlflow_server.server_command(profile="embedded", data_dir=tmp, port=mlflow_server.free_port())
    yield from _serve(tmp, command)


@pytest.fixture(scope="session")
def mlflow_real(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[str]:
    """Tracking URI of an ``mlflow server`` on PostgreSQL (real profile): a database of its own per
    session, dropped at the end. Fails, never skips, when PostgreSQL is down (``postgres_dsn``)."""
    import psycopg

    tmp = tmp_path_factory.mktemp("mlflow-real")
    database = f"mlflow_training_test_{uuid.uuid4().hex[:8]}"
    dsn = mlflow_server.ensure_postgres_database(postgres_dsn, database)
    command = mlflow_server.server_command(
        profile="real", data_dir=tmp, postgres_dsn=dsn, port=mlflow_server.free_port()
    )
    try:
        yield from _serve(tmp, command)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

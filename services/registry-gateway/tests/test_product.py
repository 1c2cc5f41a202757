"""The registry-gateway takes what is product-specific from its product (``product.toml``): the
gate window's label view and label column, the entity key two feature services' rows are matched
on, the gate's thresholds and cost matrix and the default window; an invalid product stops the
process with status 2 naming the file and the key.

Issue 19's bug: promoting a model trained on another label column failed with INTERNAL (the
label column was a constant of the gateway). Here a product with another label column, entity key,
floor and cost matrix goes through the gate's evaluation (scoring stubbed: no MLflow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from creditrisk_kit import FailedPrecondition
from creditrisk_products import Product, load_product
from creditrisk_testing import entrypoints as ep
from creditrisk_testing.german_credit import REPO_ROOT
from creditrisk_testing.products import german_variant
from registry_gateway import gate as gt
from registry_gateway.evaluation import GateEvaluator
from registry_gateway.models import SignatureColumn
from registry_gateway.registry import TAG
from registry_gateway.settings import Settings

#: Another product: the German files under other names, another floor, row minimum, cost matrix
#: and window.
OTHER = {
    'join_key = "applicant_id"': 'join_key = "loan_id"',
    'view = "credit_label"\ncolumn = "creditability"': 'view = "loan_outcome"\ncolumn = "defaulted"',
    "absolute_floor = 0.70": "absolute_floor = 0.60",
    "min_rows = 30": "min_rows = 20",
    "false_negative_cost = 5.0": "false_negative_cost = 2.0",
    "window_days = 60": "window_days = 30",
}
END = datetime(2024, 12, 1, tzinfo=UTC)


@pytest.fixture
def other(tmp_path: Path) -> Product:
    return load_product(german_variant(tmp_path, OTHER))


@pytest.fixture
def german() -> Product:
    return load_product(REPO_ROOT / "products" / "german_credit")


def _rows(key: str, label: str, n: int = 120) -> pd.DataFrame:
    """Labelled rows over the 30 days before END; ``x`` separates the classes well, not perfectly."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            key: np.arange(1, n + 1, dtype=np.int64),
            "event_timestamp": [END - timedelta(days=29, hours=1) + timedelta(hours=5 * i) for i in range(n)],
            label: y.astype(np.float64),
            "label_timestamp": [END for _ in range(n)],
            "x": y * 1.5 + rng.normal(0, 1, n),
        }
    )


class _Features:
    """The gate window's ``labelled_rows`` calls, answered from one frame per feature service."""

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames
        self.views: list[str] = []

    async def labelled_rows(
        self, *, feature_service: str, version: str, label_view: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        self.views.append(label_view)
        frame = self.frames[feature_service]
        times = frame["event_timestamp"]
        return frame[(times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))].reset_index(drop=True)


def _version(version: int, feature_service: str) -> SimpleNamespace:
    return SimpleNamespace(
        name="other-model",
        version=str(version),
        run_id=f"run-{version}",
        source=f"runs:/run-{version}/model",
        tags={
            f"{TAG}feature_service.name": feature_service,
            f"{TAG}feature_service.version": "1",
            f"{TAG}decision_threshold": "0.5",
        },
    )


class _Registry:
    """The registry calls of the gate: versions, the alias holder, the challenger's run."""

    def __init__(self, versions: dict[int, SimpleNamespace], holder: int | None) -> None:
        self.versions = versions
        self.holder = holder
        run = SimpleNamespace(data=SimpleNamespace(params={}, tags={"gate_window.end": END.isoformat()}))
        self.client = SimpleNamespace(get_run=lambda run_id: run)

    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def ready_version(self, name: str, version: int) -> Any:
        return self.versions[version]

    def model_version(self, name: str, version: int) -> Any:
        return self.versions[version]

    def alias_holder(self, name: str, alias: str) -> int | None:
        return self.holder


class _Model:
    """Scores ``x`` through a logistic link; ``noise`` adds seeded noise (a weaker model)."""

    def __init__(self, noise: float) -> None:
        self.noise = noise

    def predict_default(self, model_input: pd.DataFrame) -> np.ndarray:
        x = model_input["x"].to_numpy() + np.random.default_rng(9).normal(0, self.noise, len(model_input))
        return 1.0 / (1.0 + np.exp(-(x - 0.75)))


def _evaluator(product: Product, registry: _Registry, features: _Features) -> GateEvaluator:
    config = Settings(products_dir=product.folder).gate_config(product)
    evaluator = GateEvaluator(registry, features, config, product=product, cache_dir=Path("."))  # type: ignore[arg-type]
    models = {1: _Model(noise=3.0), 2: _Model(noise=0.0)}
    signature = [SignatureColumn("x", "double", True)]
    evaluator._loaded = lambda mv: (models[int(mv.version)], signature)  # type: ignore[method-assign]
    return evaluator


def test_the_gate_config_is_the_products_with_the_platforms_statistics(other: Product) -> None:
    config = Settings(gate_resamples=2000, gate_seed=5).gate_config(other)
    assert (config.absolute_floor, config.min_rows, config.margin) == (0.60, 20, 0.02)
    assert (config.false_negative_cost, config.false_positive_cost) == (2.0, 1.0)
    assert (config.resamples, config.seed, config.confidence_level) == (2000, 5, 0.95)
    assert config == gt.GateConfig.of(other, resamples=2000, seed=5)


async def test_a_product_with_another_label_column_passes_through_the_gate(other: Product) -> None:
    features = _Features({"fs_a": _rows("loan_id", "defaulted"), "fs_b": _rows("loan_id", "defaulted")})
    # a first champion: the floor is the product's
    first = _evaluator(other, _Registry({2: _version(2, "fs_a")}, holder=None), features)
    decision, holder = await first.decide("other-model", 2, "champion")
    assert holder is None
    assert decision.outcome.passed, decision.outcome.reasons
    assert decision.config.absolute_floor == 0.60
    assert decision.outcome.rows == 120
    assert decision.window_end - decision.window_start == timedelta(days=30, microseconds=1)
    assert features.views == ["loan_outcome"]
    # a challenger on another feature service than the champion's: rows matched on loan_id
    versions = {1: _version(1, "fs_b"), 2: _version(2, "fs_a")}
    second = _evaluator(other, _Registry(versions, holder=1), features)
    decision, holder = await second.decide("other-model", 2, "champion")
    assert holder == 1
    assert decision.outcome.champion is not None
    assert decision.outcome.rows == 120
    assert decision.outcome.challenger.roc_auc > decision.outcome.champion.roc_auc
    assert "FN 2 : FP 1" in decision.outcome.rule


async def test_a_label_view_without_the_products_label_column_is_failed_precondition(
    german: Product,
) -> None:
    features = _Features({"fs_a": _rows("loan_id", "defaulted")})
    evaluator = _evaluator(german, _Registry({2: _version(2, "fs_a")}, holder=None), features)
    with pytest.raises(FailedPrecondition) as caught:
        await evaluator.decide("other-model", 2, "champion")
    assert "'creditability'" in caught.value.message
    assert "'applicant_id'" in caught.value.message
    assert "credit_label" in caught.value.message


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_an_invalid_product_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = german_variant(tmp_path, {"absolute_floor = 0.70": "absolute_floor = 1.5"})
    env = ep.service_environment(
        "REGISTRY_GATEWAY_",
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
        feature_service_address=ep.unreachable(),
        audit_db_url=f"sqlite:///{tmp_path / 'audit.db'}",
        products_dir=str(bad.parent),
    )
    done = ep.run_to_exit("registry_gateway", env)
    assert done.returncode == 2, done.stderr
    assert str(bad / "product.toml") in done.stderr
    assert "[gate].absolute_floor" in done.stderr

"""The drift-service takes what is product-specific from its product (issue 19): a product with
other feature kinds, another label column and codes, another entity key and an unmonitored
feature (written into ``tmp_path`` from ``products/german_credit``) is what the core, the servicer
and the MLflow reference use; a missing or invalid product stops the start with status 2 naming
the file and the key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ATTRIBUTES, T0, events_from_frame
from creditrisk.common.v1 import refs_pb2, values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk_products import load_product
from creditrisk_testing import entrypoints as ep
from creditrisk_testing.products import german_variant
from drift_service.__main__ import build
from drift_service.convert import to_timestamp
from drift_service.core import DriftCore, default_resolver
from drift_service.domain import PREDICTION_COLUMN, FeatureKind, Window
from drift_service.reference import ReferenceData
from drift_service.servicer import DriftServiceServicer
from drift_service.settings import DriftServiceSettings, repo_root
from german_frames import GERMAN, KINDS, LABEL

GERMAN_DIR = repo_root() / "products" / "german_credit"
KEY, OTHER_LABEL = "customer_ref", "defaulted"
#: A feature the German product calls numeric, categorical here; one it monitors, off here.
RECAST, UNMONITORED = "duration_in_month", "age_in_years"


@pytest.fixture
def other(tmp_path: Path) -> Path:
    """A product unlike the German one in every name the drift-service reads."""
    return german_variant(
        tmp_path,
        {
            f'join_key = "{GERMAN.entity.join_key}"': f'join_key = "{KEY}"',
            f'column = "{LABEL}"': f'column = "{OTHER_LABEL}"',
            "label_codes = { bad = 1, good = 0 }": "label_codes = { Yes = 1, no = 0 }",
            f'{RECAST} = "numeric"': f'{RECAST} = "categorical"',
            f'{UNMONITORED} = "numeric"': f'{UNMONITORED} = {{ kind = "numeric", monitor = false }}',
        },
    ).parent


@pytest.fixture
def other_core(settings: DriftServiceSettings, other: Path) -> DriftCore:
    core = DriftCore(settings.model_copy(update={"products_dir": other}))
    yield core
    core.close()


def test_the_settings_find_the_german_product_by_default(settings: DriftServiceSettings) -> None:
    core = DriftCore(settings)
    try:
        assert core.product.name == "german_credit"
        assert core.feature_kinds == KINDS
        assert len(KINDS) == 20
    finally:
        core.close()


def test_feature_kinds_label_and_key_come_from_the_product(other_core: DriftCore) -> None:
    assert other_core.product.entity.join_key == KEY
    assert other_core.feature_kinds[RECAST] is FeatureKind.CATEGORICAL
    assert UNMONITORED not in other_core.feature_kinds
    assert set(other_core.feature_kinds) == set(KINDS) - {UNMONITORED}
    reference = pd.DataFrame(
        {
            KEY: [1, 2, 3, 4],
            OTHER_LABEL: ["Yes", "no", " YES ", "no"],
            RECAST: [12, 24, 12, 36],
            UNMONITORED: [30, 40, 50, 60],
            "event_timestamp": pd.date_range("2024-01-01", periods=4, tz="UTC"),
            "label_timestamp": pd.date_range("2025-01-01", periods=4, tz="UTC"),
            PREDICTION_COLUMN: [0.9, 0.2, 0.7, 0.4],
            "extra": [1.0, 2.0, 3.0, 4.0],
        }
    )
    # the key, the label, the times, the score and the unmonitored feature are never compared;
    # a column the product does not list gets its dtype's kind
    assert other_core._kinds(reference) == {RECAST: FeatureKind.CATEGORICAL, "extra": FeatureKind.NUMERIC}
    # the reference AUC reads the product's label column through its label codes
    ref = refs_pb2.DatasetRef(source="memory")
    assert other_core._reference_auc(ReferenceData(reference, ref)) == 1.0
    german_labels = reference.rename(columns={OTHER_LABEL: LABEL})
    assert other_core._reference_auc(ReferenceData(german_labels, ref)) is None  # no label column


def test_a_drift_report_compares_what_the_product_monitors(
    other_core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference, current = split
    reference = reference.assign(**{KEY: np.arange(len(reference))}).rename(columns={LABEL: OTHER_LABEL})
    path = tmp_path_factory.getbasetemp() / "other-reference.parquet"
    reference.to_parquet(path)
    other_core.log_predictions(events_from_frame(current.iloc[:150]))
    (report,) = other_core.compute_drift(Window("credit-risk", T0, T0 + timedelta(days=1)), str(path)).reports
    kinds = {f.feature: f.kind for f in report.features}
    assert set(kinds) == set(ATTRIBUTES) - {UNMONITORED}
    assert kinds[RECAST] is FeatureKind.CATEGORICAL
    assert KEY not in kinds
    assert OTHER_LABEL not in kinds


async def test_logged_values_are_checked_against_the_products_kinds(
    settings: DriftServiceSettings, other_core: DriftCore
) -> None:
    event = pb.PredictionEvent(
        event_id="e-1",
        applicant_id=1,
        features={RECAST: values_pb2.FeatureValue(string_value="long")},
        probability_of_default=0.5,
        model_name="credit-risk",
        model_version=1,
        mode=1,
        event_time=to_timestamp(T0),
    )
    request = pb.LogPredictionsRequest(events=[event])
    accepted = await DriftServiceServicer(other_core).LogPredictions(request, None)
    assert (accepted.accepted, list(accepted.rejected)) == (1, [])
    german = DriftCore(settings)
    try:
        refused = await DriftServiceServicer(german).LogPredictions(request, None)
    finally:
        german.close()
    assert refused.accepted == 0
    assert refused.rejected[0].violations[0].field == f"events[0].features.{RECAST}"


def test_the_mlflow_reference_keeps_the_products_label(settings: DriftServiceSettings, other: Path) -> None:
    wired = settings.model_copy(update={"products_dir": other, "mlflow_tracking_uri": "http://127.0.0.1:1"})
    assert default_resolver(wired).training.label_column == OTHER_LABEL  # type: ignore[union-attr]
    assert default_resolver(wired, GERMAN).training.label_column == LABEL  # type: ignore[union-attr]


BROKEN = {"maturity_days = 365": "maturity_days = -1"}


async def test_an_invalid_product_stops_the_build_naming_file_and_key(
    settings: DriftServiceSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = german_variant(tmp_path, BROKEN).parent
    with pytest.raises(SystemExit) as stopped:
        await build(settings.model_copy(update={"products_dir": broken}))
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert "drift-service: invalid product configuration" in stderr
    assert f"{broken / 'german_credit' / 'product.toml'}: [label].maturity_days" in stderr
    with pytest.raises(SystemExit):
        await build(settings.model_copy(update={"products_dir": tmp_path / "none"}))
    assert "products directory not found" in capsys.readouterr().err


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_an_invalid_product_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    broken = german_variant(tmp_path, BROKEN).parent
    env = ep.service_environment(
        "DRIFT_SERVICE_",
        ep.free_port(),
        products_dir=str(broken),
        data_dir=str(tmp_path / "drift"),
        warm_up="false",
        report_http_port="0",
        metrics_port="0",
        auth_disabled="true",
    )
    done = ep.run_to_exit("drift_service", env)
    assert done.returncode == 2, done.stderr
    assert re.search(r"product\.toml: \[label\]\.maturity_days: .*greater than or equal to 0", done.stderr)
    assert load_product(GERMAN_DIR).label.maturity_days == 365  # the checkout's own is untouched

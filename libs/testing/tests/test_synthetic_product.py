"""creditrisk_testing.synthetic_product: a valid product, a learnable signal, seeded, and not German."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from creditrisk_products import Catalog, FeatureKind, load_catalog, load_product
from creditrisk_testing.german_credit import ATTRIBUTE_COLUMNS
from creditrisk_testing.synthetic_product import (
    APPLICATION_END,
    APPLICATION_START,
    CSV_COLUMNS,
    SyntheticProduct,
    write_product,
)
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[3]
FEAST_PYTHON = ROOT / "services" / "feature-service" / ".venv" / "bin" / "python"
#: Names of the German product that a second product must not reuse (the brief's list).
GERMAN_NAMES = (
    *ATTRIBUTE_COLUMNS,
    "creditability",
    "applicant_id",
    "applicant",
    "loan_request",
    "credit_standing",
    "employment_and_residence",
    "demographics",
    "protected_attributes",
    "credit_label",
    "credit_risk_v1",
    "credit_risk_fairness_v1",
    "credit_risk_labels_v1",
    "credit_risk",
    "loan_affordability",
    "monthly_installment",
    "loan_request_overrides",
    "german_credit",
)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> SyntheticProduct:
    return write_product(tmp_path_factory.mktemp("products"))


@pytest.fixture(scope="module")
def frame(product: SyntheticProduct) -> pd.DataFrame:
    return pd.read_csv(product.csv, dtype={product.join_key: "string"}, keep_default_na=False, na_values=[""])


def test_the_product_loads_and_is_unlike_the_german_one(product: SyntheticProduct) -> None:
    loaded = load_product(product.folder)
    assert loaded.name == product.name == product.folder.name == "sme_loans"
    assert (loaded.entity.name, loaded.entity.join_key, loaded.entity.type) == (
        "business",
        "business_ref",
        "string",
    )
    assert (loaded.label.view, loaded.label.column) == ("loan_outcome", "defaulted")
    assert loaded.label.maturity_days == product.maturity_days == 180
    assert (loaded.decision.false_negative_cost, loaded.decision.false_positive_cost) == (8.0, 1.0)
    assert (loaded.gate.absolute_floor, loaded.gate.min_rows, loaded.gate.window_days) == (0.70, 30, 60)
    assert loaded.features.model_service == product.model_service
    assert loaded.features.fairness_service == product.fairness_service
    assert loaded.features.protected_attributes == product.protected_attributes == ("owner_gender",)
    kinds = loaded.drift.kinds()
    assert {n for n, k in kinds.items() if k is FeatureKind.NUMERIC} == set(product.features["numeric"])
    assert {n for n, k in kinds.items() if k is FeatureKind.CATEGORICAL} == set(
        product.features["categorical"]
    )
    assert loaded.serving.request_fields == product.request_fields
    assert loaded.label.application_time_column == product.label_application_time_column
    assert loaded.ingest.entity_key == product.join_key
    assert loaded.ingest.application_time == product.application_time_column
    assert loaded.ingest.application_time_drawn is None
    assert loaded.ingest.label_source == product.label_source
    assert loaded.ingest.label_codes == product.label_codes
    assert loaded.feature_repo_path == product.feature_repo
    assert (loaded.product.feast_project, loaded.product.registered_model) == (
        product.feast_project,
        product.registered_model,
    )
    german = load_product(ROOT / "products" / "german_credit")
    assert german.entity.join_key != loaded.entity.join_key
    assert german.entity.type != loaded.entity.type
    assert german.label.column != loaded.label.column
    assert german.label.maturity_days != 180
    assert german.decision != loaded.decision
    both = Catalog({german.name: german, loaded.name: loaded})  # distinct Feast projects
    assert both.names == ["german_credit", "sme_loans"]
    assert load_catalog(product.folder.parent).names == ["sme_loans"]


def test_the_file_has_the_columns_keys_times_and_nulls_promised(
    product: SyntheticProduct, frame: pd.DataFrame
) -> None:
    assert tuple(frame.columns) == CSV_COLUMNS
    assert len(frame) == product.rows == 2000
    keys = frame[product.join_key]
    assert keys.is_unique
    assert keys.str.fullmatch(r"SME-\d{6}").all()
    times = [datetime.fromisoformat(t) for t in frame[product.application_time_column]]
    assert all(t.tzinfo is not None for t in times)
    assert {t.utcoffset() for t in times} > {times[0].utcoffset()}  # several offsets
    assert min(times) >= APPLICATION_START
    assert max(times) < APPLICATION_END
    assert (max(times) - min(times)).days > 700
    assert set(frame[product.label_source]) == set(product.label_codes)
    assert 0.15 <= product.default_rate <= 0.30
    assert product.default_rate == pytest.approx((frame[product.label_source] == "yes").mean())
    nulls = frame.isna().sum()
    assert 0 < nulls["existing_debt"] < 0.1 * len(frame)
    assert nulls.drop("existing_debt").sum() == 0
    for column in ("years_trading", "employees", "facility_term_months", "late_payments_12m"):
        assert frame[column].dtype == np.int64, column
    for column in ("annual_revenue", "facility_amount", "existing_debt"):
        assert frame[column].dtype == np.float64, column
    assert (frame["annual_revenue"] > 0).all()
    unseen = product.unseen_sector_values()
    assert unseen
    assert not set(unseen) & set(frame["sector"])
    assert frame["sector"].nunique() >= 5


def _leverage(frame: pd.DataFrame) -> pd.Series:
    return (frame["existing_debt"] + frame["facility_amount"]) / frame["annual_revenue"]


def _model(kind: str, numeric: list[str], categorical: list[str]) -> Any:
    if kind == "logistic":
        columns = make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (OneHotEncoder(handle_unknown="ignore"), categorical),
        )
        return make_pipeline(columns, LogisticRegression(max_iter=2000))
    columns = make_column_transformer(
        (SimpleImputer(strategy="median"), numeric),
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
    )
    return make_pipeline(columns, HistGradientBoostingClassifier(learning_rate=0.05, random_state=0))


def _auc(
    model: Any, x_train: pd.DataFrame, y_train: pd.Series, x_test: pd.DataFrame, y_test: pd.Series
) -> float:
    with threadpool_limits(1):  # on a busy machine OpenMP threads cost more than they save at 2,000 rows
        model.fit(x_train, y_train)
        return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


@pytest.mark.parametrize("kind", ["logistic", "gradient_boosting"])
def test_the_outcome_is_learnable_on_held_out_rows(
    product: SyntheticProduct, frame: pd.DataFrame, kind: str
) -> None:
    numeric = [*product.features["numeric"], "debt_to_revenue"]
    categorical = [c for c in product.features["categorical"] if c not in product.protected_attributes]
    x = frame.assign(debt_to_revenue=_leverage(frame))[numeric + categorical]
    y = (frame[product.label_source] == "yes").astype(int)
    model = _model(kind, numeric, categorical)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    auc = _auc(model, x_train, y_train, x_test, y_test)
    assert auc >= 0.80, f"{kind}: held-out ROC AUC {auc:.3f}"
    # The gate's view: trained before its window (the latest 60 days), scored on the window.
    applied = pd.to_datetime(frame[product.application_time_column], utc=True)
    window = applied >= applied.max() - pd.Timedelta(days=60)
    assert window.sum() >= 30
    assert y[window].sum() >= 10
    gate_auc = _auc(model, x[~window], y[~window], x[window], y[window])
    assert gate_auc >= 0.75, f"{kind}: gate-window ROC AUC {gate_auc:.3f}"


def test_the_protected_attribute_carries_no_signal(frame: pd.DataFrame) -> None:
    rates = (frame["default_flag"] == "yes").groupby(frame["owner_gender"]).mean()
    assert rates.max() - rates.min() < 0.10


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first = write_product(tmp_path / "a", rows=300, seed=11)
    second = write_product(tmp_path / "b", rows=300, seed=11)
    other = write_product(tmp_path / "c", rows=300, seed=12)
    assert _files(first.folder) == _files(second.folder)
    assert set(_files(first.folder)) == {
        "product.toml",
        "data/sme_loans.csv",
        *(
            f"feature_repo/sme_loans_{m}.py"
            for m in ("entities", "sources", "views", "on_demand", "services")
        ),
    }
    assert first.csv.read_bytes() != other.csv.read_bytes()
    assert first.serving_rows(6) == second.serving_rows(6)
    assert 0.15 <= first.default_rate <= 0.30
    assert 0.15 <= other.default_rate <= 0.30


def test_no_german_name_occurs_in_any_file_written(product: SyntheticProduct) -> None:
    for name, data in _files(product.folder).items():
        text = data.decode("utf-8")
        if name == "product.toml":  # the product file's own key, not a name of the German product
            text = re.sub(r"^protected_attributes = ", "", text, flags=re.MULTILINE)
        for german in GERMAN_NAMES:
            assert not re.search(rf"\b{re.escape(german)}\b", text, re.IGNORECASE), (name, german)
        assert "requested_" not in text, name
    module_names = {p.stem for p in product.feature_repo.glob("*.py")}
    german_modules = {p.stem for p in (ROOT / "products" / "german_credit" / "feature_repo").glob("*.py")}
    assert not module_names & german_modules


def test_serving_rows_are_new_businesses_some_with_unseen_sectors(
    product: SyntheticProduct, frame: pd.DataFrame
) -> None:
    rows = product.serving_rows(6)
    assert len(rows) == 6
    assert product.serving_rows(0) == []
    assert not {r.key for r in rows} & set(frame[product.join_key])
    assert len({r.key for r in rows}) == 6
    unseen = set(product.unseen_sector_values())
    sectors = [r.features["business_profile"]["sector"] for r in rows]
    assert {sectors[i] for i in (0, 2, 4)} == unseen
    assert not {sectors[i] for i in (1, 3, 5)} & unseen
    for row in rows:
        assert set(row.features) == {"business_profile", "facility_request", "repayment_record", "ownership"}
        assert all(values[product.join_key] == row.key for values in row.features.values())
        assert row.payload() == {product.join_key: row.key, "request_values": row.request_values}
        json.dumps(row.payload())
    assert [bool(r.request_values) for r in rows] == [False, True, False, False, True, False]
    assert rows[1].request_values["facility_amount"] == pytest.approx(
        rows[1].features["facility_request"]["facility_amount"] / 2, abs=0.01
    )
    assert all(not r.request_values for r in product.serving_rows(4, quote_every=0))
    assert (
        not {r.features["business_profile"]["sector"] for r in product.serving_rows(4, unseen_every=0)}
        & unseen
    )
    with pytest.raises(ValueError, match="must be >= 0"):
        product.serving_rows(-1)


@pytest.mark.parametrize(("rows", "seed"), [(99, 7), (100, -1)])
def test_bad_arguments_are_refused(tmp_path: Path, rows: int, seed: int) -> None:
    with pytest.raises(ValueError, match="must be >= "):
        write_product(tmp_path, rows=rows, seed=seed)


# The Feast check runs in the feature-service's environment (the root environment has no Feast): it
# parses the repository as `feast apply` does (from its folder, on sys.path), applies it to a
# throw-away local registry, writes two businesses to the online store and reads the model's
# feature service, so the on-demand view runs on two rows, with and without a quoted amount.
_FEAST_CHECK = r"""
import json, math, os, sys
from datetime import UTC, datetime
from pathlib import Path

repo, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
os.chdir(repo)
sys.path.insert(0, str(repo))
import pandas as pd
from feast import FeatureStore
from feast.repo_config import RepoConfig
from feast.repo_operations import parse_repo

contents = parse_repo(repo)
out = {
    "entities": {e.name: [e.join_key, e.value_type.name] for e in contents.entities},
    "views": {
        v.name: {
            "fields": {f.name: str(f.dtype) for f in v.schema},
            "online": v.online,
            "ttl_days": v.ttl.days,
            "push": v.stream_source.name if v.stream_source else None,
            "table": v.batch_source.name,
        }
        for v in contents.feature_views
    },
    "odfvs": {
        o.name: {
            "features": {f.name: str(f.dtype) for f in o.features},
            "request": {n: [f.name for f in s.schema] for n, s in o.source_request_sources.items()},
            "mode": o.mode,
        }
        for o in contents.on_demand_feature_views
    },
    "services": {
        s.name: {
            "tags": s.tags,
            "views": {p.name: [f.name for f in p.features] for p in s.feature_view_projections},
        }
        for s in contents.feature_services
    },
}
odfv = contents.on_demand_feature_views[0]
out["udf"] = odfv.feature_transformation.udf(
    {
        "existing_debt": [400.0, float("nan")],
        "annual_revenue": [1000.0, 2000.0],
        "facility_amount": [100.0, 200.0],
        "quoted_facility_amount": [600.0, None],
    }
)
config = RepoConfig(
    project=sys.argv[3],
    registry=str(work / "registry.db"),
    provider="local",
    online_store={"type": "sqlite", "path": str(work / "online.db")},
    offline_store={"type": "file"},
    entity_key_serialization_version=3,
)
store = FeatureStore(config=config)
store.apply(
    [*contents.entities, *contents.data_sources, *contents.feature_views,
     *contents.on_demand_feature_views, *contents.feature_services]
)
now = datetime(2026, 1, 1, tzinfo=UTC)
for view, rows in json.loads(sys.argv[4]).items():
    store.write_to_online_store(view, pd.DataFrame(rows).assign(event_timestamp=now, created_timestamp=now))
out["online"] = store.get_online_features(
    features=store.get_feature_service(sys.argv[5]), entity_rows=json.loads(sys.argv[6])
).to_dict()
print(json.dumps(out))
"""


@pytest.mark.slow  # a Python subprocess importing Feast: tens of seconds
def test_feast_parses_applies_and_serves_the_repository(product: SyntheticProduct, tmp_path: Path) -> None:
    assert FEAST_PYTHON.is_file(), f"{FEAST_PYTHON} missing: run `make setup`"
    rows = product.serving_rows(2)  # row 0: an unseen sector, no quote; row 1: a quote
    pushes = {view: [r.features[view] for r in rows] for view in rows[0].features}
    entity_rows = [{product.join_key: r.key, "quoted_facility_amount": None} for r in rows]
    entity_rows[1]["quoted_facility_amount"] = rows[1].request_values["facility_amount"]
    result = subprocess.run(
        [
            str(FEAST_PYTHON),
            "-c",
            _FEAST_CHECK,
            str(product.feature_repo),
            str(tmp_path),
            product.feast_project,
            json.dumps(pushes),
            product.model_service,
            json.dumps(entity_rows),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["entities"]["business"] == ["business_ref", "STRING"]
    views = out["views"]
    assert set(views) == {
        "business_profile",
        "facility_request",
        "repayment_record",
        "ownership",
        "loan_outcome",
    }
    for name, view in views.items():
        assert view["push"] == f"{name}_push"
        assert view["table"] == f"sme_loans_{name}"
        assert view["fields"]["business_ref"] == "String"
    assert views["loan_outcome"]["online"] is False
    assert views["loan_outcome"]["ttl_days"] == 0
    assert views["loan_outcome"]["fields"]["defaulted"] == "Int64"
    assert views["business_profile"]["fields"]["annual_revenue"] == "Float64"
    assert views["business_profile"]["fields"]["sector"] == "String"
    assert views["repayment_record"]["fields"]["late_payments_12m"] == "Int64"
    assert out["odfvs"] == {
        "leverage": {
            "features": {"debt_to_revenue": "Float64"},
            "request": {"facility_quote": ["quoted_facility_amount"]},
            "mode": "python",
        }
    }
    services = out["services"]
    assert set(services) == {product.model_service, product.fairness_service, "sme_outcomes_v1"}
    assert all(s["tags"] == {"version": "1"} for s in services.values())
    model_features = {f for fs in services[product.model_service]["views"].values() for f in fs}
    assert model_features == {*product.features["numeric"], "sector", "region", "debt_to_revenue"}
    assert model_features == set(product.model_features)
    assert services[product.fairness_service]["views"] == {"ownership": ["owner_gender"]}
    assert services["sme_outcomes_v1"]["views"] == {"loan_outcome": ["defaulted"]}
    assert out["udf"] == {"debt_to_revenue": [1.0, None]}
    online = out["online"]
    assert online["business_ref"] == [r.key for r in rows]
    assert online["sector"][0] in product.unseen_sector_values()
    for i, row in enumerate(rows):
        stored = {k: v for view in row.features.values() for k, v in view.items()}
        amount = row.request_values.get("facility_amount", stored["facility_amount"])
        debt = stored["existing_debt"]
        expected = None if debt is None else (debt + amount) / stored["annual_revenue"]
        got = online["debt_to_revenue"][i]
        assert (got is None) if expected is None else math.isclose(got, expected, rel_tol=1e-9), (i, got)
        assert online["years_trading"][i] == stored["years_trading"]


def test_the_module_runs_without_extras() -> None:
    code = (
        "import sys, tempfile, pathlib\n"
        "from creditrisk_testing.synthetic_product import write_product\n"
        "write_product(pathlib.Path(tempfile.mkdtemp()), rows=100)\n"
        "assert not {'numpy', 'pandas'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

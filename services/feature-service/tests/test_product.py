"""Products: the Feast repository loaded with Feast's parser, the layout, the cross-checks, the CLI.

A second tiny product, written here (string entity key, a float feature, its own on-demand view,
label codes, key and time columns in its file), proves that nothing of the German product is
assumed.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import GERMAN_PRODUCT, german_product
from creditrisk_products import ProductError, load_product
from creditrisk_testing.products import german_variant
from feature_service.product import check_product, layout_of, load_layout, load_repo, main

TINY_TOML = """
[product]
name = "tiny"
feast_project = "tiny_proj"
registered_model = "tiny-model"

[entity]
name = "shop"
join_key = "shop_code"
type = "string"

[features]
model_service = "tiny_model"
fairness_service = "tiny_fair"
protected_attributes = ["region"]
protected_reason = "test"

[label]
view = "outcome"
column = "churned"
application_time_column = "applied_at"
maturity_days = 30

[drift.features]
revenue = "numeric"

[serving.request_fields]
revenue = "req_revenue"

[ingest]
entity_key = "code"
application_time = "when"
label_source = "status"
label_codes = { gone = 1, stayed = 0 }
"""

TINY_REPO = {
    "defs.py": """
        from datetime import timedelta

        from feast import Entity, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
        from feast.types import Float64, Int64, String

        shop = Entity(name="shop", join_keys=["shop_code"], value_type=ValueType.STRING)


        def table(name):
            return FileSource(name=name, path=f"{name}.parquet", timestamp_field="event_timestamp",
                              created_timestamp_column="created_timestamp")


        sales = FeatureView(
            name="sales", entities=[shop], ttl=timedelta(days=90),
            schema=[Field(name="shop_code", dtype=String), Field(name="revenue", dtype=Float64),
                    Field(name="staff", dtype=Int64)],
            source=PushSource(name="sales_push", batch_source=table("shop_sales")),
            description="Sales.",
        )
        region = FeatureView(
            name="region_view", entities=[shop], ttl=timedelta(days=90),
            schema=[Field(name="shop_code", dtype=String), Field(name="region", dtype=String)],
            source=table("shop_region"),
        )
        outcome = FeatureView(
            name="outcome", entities=[shop], ttl=timedelta(0), online=False,
            schema=[Field(name="shop_code", dtype=String), Field(name="churned", dtype=Int64)],
            source=PushSource(name="outcome_push", batch_source=table("shop_outcome")),
        )
        overrides = RequestSource(name="tiny_request", schema=[Field(name="req_revenue", dtype=Float64)])
    """,
    "odfv.py": """
        from typing import Any

        from defs import overrides, sales
        from feast import Field
        from feast.on_demand_feature_view import on_demand_feature_view
        from feast.types import Float64


        @on_demand_feature_view(sources=[sales[["revenue", "staff"]], overrides],
                                schema=[Field(name="revenue_per_staff", dtype=Float64)], mode="python")
        def per_staff(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
            out = []
            requested = inputs.get("req_revenue") or [None] * len(inputs["revenue"])
            for rev, req, staff in zip(inputs["revenue"], requested, inputs["staff"]):
                r = req if req is not None else rev
                out.append(None if r is None or not staff else float(r) / float(staff))
            return {"revenue_per_staff": out}
    """,
    "services.py": """
        from defs import outcome, region, sales
        from feast import FeatureService
        from odfv import per_staff

        tiny_model = FeatureService(name="tiny_model", features=[sales, per_staff], tags={"version": "3"})
        tiny_fair = FeatureService(name="tiny_fair", features=[region])
        tiny_labels = FeatureService(name="tiny_labels", features=[outcome])
    """,
}

TINY_CSV = """code,when,revenue,staff,region,status
a1,2024-01-05T10:00:00,100.5,2,north,gone
b2,2024-02-01T00:00:00+02:00,80,4,south,Stayed
c3,2024-03-01 12:00:00,,1,north,
"""


def write_tiny(folder: Path, toml: str = TINY_TOML) -> Path:
    """The tiny product under ``folder / "tiny"``."""
    product = folder / "tiny"
    (product / "feature_repo").mkdir(parents=True)
    (product / "product.toml").write_text(toml)
    for name, text in TINY_REPO.items():
        (product / "feature_repo" / name).write_text(textwrap.dedent(text))
    return product


@pytest.fixture
def tiny(tmp_path: Path) -> Any:
    return load_product(write_tiny(tmp_path))


def test_a_second_product_loads_with_nothing_german_assumed(tiny: Any) -> None:
    layout = load_layout(tiny)
    assert (layout.product, layout.project, layout.entity_key, layout.entity_kind) == (
        "tiny",
        "tiny_proj",
        "shop_code",
        "string",
    )
    assert [v.name for v in layout.views] == ["sales", "region_view", "outcome"]
    sales = layout.view("sales")
    assert sales.table == "shop_sales"
    assert sales.push
    assert sales.push_source_name == "sales_push"
    assert sales.features == (("revenue", "float"), ("staff", "int"))
    assert sales.columns[0] == "shop_code"
    assert sales.key_kind == "string"
    region = layout.view("region_view")
    assert region.table == "shop_region"
    assert not region.push
    assert layout.label_view.name == "outcome"
    assert not layout.label_view.online
    assert layout.label_view.extras == (("applied_at", "timestamp"),)
    assert [v.name for v in layout.model_views] == ["sales"]
    assert layout.on_demand[0].name == "per_staff"
    assert layout.request_source_fields == {"req_revenue": "float"}
    assert layout.request_aliases == {"revenue": "req_revenue", "req_revenue": "req_revenue"}
    # the repository's modules are forgotten: a second load imports them afresh
    assert "defs" not in sys.modules
    assert "odfv" not in sys.modules
    assert load_layout(tiny) == layout


def test_a_module_name_already_imported_elsewhere_is_refused(tmp_path: Path) -> None:
    product = write_tiny(tmp_path)
    (product / "feature_repo" / "json.py").write_text("x = 1\n")
    with pytest.raises(ProductError, match=r"feature_repo.*'json'.*already imported"):
        load_repo(load_product(product))


def test_unsupported_dtype_names_the_view_and_field(tmp_path: Path) -> None:
    product = write_tiny(tmp_path)
    defs = product / "feature_repo" / "defs.py"
    defs.write_text(
        defs.read_text()
        .replace('Field(name="staff", dtype=Int64)', 'Field(name="staff", dtype=Bytes)')
        .replace("import Float64, Int64, String", "import Bytes, Float64, Int64, String")
    )
    with pytest.raises(ProductError, match=r"feature view 'sales' field 'staff'.*unsupported type"):
        load_layout(load_product(product))


def test_the_tiny_product_ingests_applies_and_serves(tiny: Any, tmp_path: Path) -> None:
    from feature_service.core import FeatureStoreCore
    from feature_service.ingest import ingest
    from feature_service.settings import FeatureServiceSettings

    csv = tmp_path / "tiny.csv"
    csv.write_text(TINY_CSV)
    settings = FeatureServiceSettings(data_dir=tmp_path / "store", products_dir=tiny.folder)
    result = ingest(csv, settings, product=tiny)
    assert result.rows == 3
    assert result.first_application == datetime(2024, 1, 5, 10, tzinfo=UTC)
    assert result.last_application == datetime(2024, 3, 1, 12, tzinfo=UTC)
    core = FeatureStoreCore(settings)
    assert core.settings.feast_project == "tiny_proj"
    assert {v.name for v in core.store.list_feature_views()} == {"sales", "region_view", "outcome"}
    assert core.store.get_feature_view("sales").batch_source.name == "shop_sales"
    core.writes.materialize(datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC))
    online = core.online.get_online_features(
        [{"shop_code": "a1"}, {"shop_code": "b2"}], [None, {"revenue": 8.0}], feature_service="tiny_model"
    )
    values = {s.feature: [row[i].value for row in online.values] for i, s in enumerate(online.features)}
    assert values["revenue"] == [100.5, 80.0]
    assert values["revenue_per_staff"] == [pytest.approx(50.25), pytest.approx(2.0)]
    assert online.feature_service_version == "3"
    labelled = core.historical.labelled_entities("outcome", datetime(2024, 1, 1), datetime(2025, 1, 1))
    # c3's outcome is unknown (empty): no label row, so not a labelled entity
    assert labelled.column("shop_code").to_pylist() == ["a1", "b2"]
    assert labelled.column("churned").to_pylist() == [1, 0]
    assert labelled.column("event_timestamp").to_pylist()[1] == datetime(2024, 1, 31, 22, tzinfo=UTC)
    core.teardown()


# ------------------------------------------------------------------ cross-checks


def _with(product: Any, section: str, **changes: Any) -> Any:
    part = getattr(product, section).model_copy(update=changes)
    return product.model_copy(update={section: part})


GERMAN_REPO: dict[str, Any] = {}


def _problems(product: Any) -> list[tuple[str, str]]:
    if not GERMAN_REPO:
        GERMAN_REPO["repo"] = load_repo(german_product())
    return check_product(product, GERMAN_REPO["repo"])


def test_the_german_product_agrees_with_its_repository() -> None:
    assert _problems(german_product()) == []


@pytest.mark.parametrize(
    ("section", "changes", "key", "message"),
    [
        ("entity", {"name": "customer"}, "[entity].name", "no entity 'customer'"),
        ("entity", {"join_key": "customer_id"}, "[entity].join_key", "has 'applicant_id'"),
        ("entity", {"type": "string"}, "[entity].type", "is INT64"),
        ("features", {"model_service": "nope"}, "[features].model_service", "no feature service 'nope'"),
        ("features", {"fairness_service": "nope"}, "[features].fairness_service", "no feature service"),
        (
            "features",
            {"protected_attributes": ("age_in_years",)},
            "[features].protected_attributes",
            "model service",
        ),
        ("label", {"view": "nope"}, "[label].view", "no feature view 'nope'"),
        ("label", {"view": "demographics"}, "[label].view", "offline-only"),
        ("label", {"column": "nope"}, "[label].column", "not a field"),
        ("label", {"view": "protected_attributes", "column": "foreign_worker"}, "[label].column", "Int64"),
        ("label", {"application_time_column": "creditability"}, "[label].application_time_column", "feature"),
        (
            "serving",
            {"request_fields": {"credit_amount": "nope"}},
            "[serving].request_fields.credit_amount",
            "request source",
        ),
        (
            "serving",
            {"request_fields": {"purposes": "requested_credit_amount"}},
            "[serving].request_fields.purposes",
            "model service",
        ),
        ("ingest", {"entity_key": "purpose"}, "[ingest].entity_key", "feature column"),
        ("ingest", {"application_time": "job"}, "[ingest].application_time", "feature column"),
        ("ingest", {"label_source": "housing"}, "[ingest].label_source", "feature column"),
    ],
)
def test_each_disagreement_is_named(section: str, changes: dict[str, Any], key: str, message: str) -> None:
    problems = _problems(_with(german_product(), section, **changes))
    assert any(k == key and message in m for k, m in problems), problems


def test_protected_attribute_outside_the_fairness_service_and_unknown_drift_feature() -> None:
    from creditrisk_products.definition import DriftFeature, FeatureKind

    product = _with(german_product(), "features", protected_attributes=("purpose",))
    problems = _problems(product)
    assert ("[features].protected_attributes", "'purpose' is a feature of the model service") in problems
    assert (
        "[features].protected_attributes",
        "'purpose' is not a feature of the fairness service",
    ) in problems
    drift = {"shoe_size": DriftFeature(kind=FeatureKind.NUMERIC)}
    problems = _problems(_with(german_product(), "drift", features=drift))
    assert problems == [("[drift].features.shoe_size", "not a feature of the model or fairness service")]


def test_row_numbers_need_an_int_key(tiny: Any) -> None:
    product = _with(tiny, "ingest", entity_key="row_number")
    assert ("[ingest].entity_key", "row numbers need an int64 entity key") in check_product(
        product, load_repo(tiny)
    )
    with pytest.raises(ProductError, match=r"\[ingest\].entity_key"):
        layout_of(product, load_repo(tiny))


# ------------------------------------------------------------------ the CLI


def test_validate_cli_accepts_the_german_product(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GERMAN_PRODUCT)]) == 0
    out = capsys.readouterr().out
    assert "product german_credit" in out
    assert "model service" in out


def test_validate_cli_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = german_variant(
        tmp_path,
        {
            'join_key = "applicant_id"': 'join_key = "client_id"',
            'view = "credit_label"': 'view = "credit_labels"',
        },
    )
    toml = folder / "product.toml"
    assert main(["validate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "[entity].join_key" in err
    assert "[label].view" in err
    assert str(toml) in err


def test_the_service_exits_2_naming_an_invalid_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from feature_service.__main__ import build
    from feature_service.settings import FeatureServiceSettings

    folder = write_tiny(tmp_path, TINY_TOML.replace('model_service = "tiny_model"', 'model_service = "gone"'))
    settings = FeatureServiceSettings(data_dir=tmp_path / "store", products_dir=folder)
    with pytest.raises(SystemExit) as exc:
        build(settings)
    assert exc.value.code == 2
    assert "[features].model_service" in capsys.readouterr().err


# ------------------------------------------------------------------ hostile definitions and files


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('table("shop_region")', "table('r\"; DROP TABLE x; --')", "table .* must match"),
        (
            'source=table("shop_region")',
            'source=__import__("feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source",'
            ' fromlist=["x"]).PostgreSQLSource(name="../../escaped", query="select 1",'
            ' timestamp_field="event_timestamp", created_timestamp_column="created_timestamp")',
            "table '../../escaped' must match",
        ),
        (
            'Field(name="region", dtype=String)',
            'Field(name="region", dtype=String), Field(name="created_timestamp", dtype=Int64)',
            "platform writes",
        ),
        ('Field(name="region", dtype=String)', 'Field(name="applied_at", dtype=String)', "platform writes"),
        ('Field(name="region", dtype=String)', 'Field(name="re gion", dtype=String)', "must match"),
    ],
)
def test_names_that_reach_sql_or_paths_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    product = write_tiny(tmp_path)
    defs = product / "feature_repo" / "defs.py"
    assert old in defs.read_text()
    defs.write_text(defs.read_text().replace(old, new))
    with pytest.raises(ProductError, match=message):
        load_layout(load_product(product))


def test_a_repository_that_exits_is_refused(tmp_path: Path) -> None:
    product = write_tiny(tmp_path)
    (product / "feature_repo" / "quits.py").write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(ProductError, match="cannot be loaded: SystemExit"):
        load_repo(load_product(product))


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (TINY_CSV.replace("100.5,2,", "100.5,99999999999999999999,"), "staff.*within int64.*row 1"),
        (TINY_CSV.replace("100.5,2,", "100.5,1e20,"), "staff.*within int64"),
        (TINY_CSV.replace("80,4", "inf,4"), "revenue.*finite"),
        (TINY_CSV.replace("2024-01-05T10:00:00", "9999-12-31T00:00:00"), "when.*ISO 8601 time in"),
        (TINY_CSV.replace("b2,", " ,"), "code.*not blank.*row 2"),
        (
            TINY_CSV.replace("b2,2024-02-01T00:00:00+02:00", "a1,2024-01-05T10:00:00"),
            "repeat a key and application",
        ),
        (TINY_CSV.splitlines()[0] + "\n", "no rows"),
        ("", "not a readable"),
    ],
)
def test_a_hostile_file_is_named_and_nothing_is_written(
    tiny: Any, tmp_path: Path, csv: str, message: str
) -> None:
    from feature_service.ingest import IngestError, ingest
    from feature_service.settings import FeatureServiceSettings

    path = tmp_path / "bad.csv"
    path.write_text(csv)
    store = tmp_path / "store"
    with pytest.raises(IngestError, match=message):
        ingest(path, FeatureServiceSettings(data_dir=store, products_dir=tiny.folder), product=tiny)
    assert not list(store.rglob("*.parquet"))


def test_a_file_not_utf8_is_named(tiny: Any, tmp_path: Path) -> None:
    from feature_service.ingest import IngestError, ingest
    from feature_service.settings import FeatureServiceSettings

    path = tmp_path / "latin1.csv"
    path.write_bytes(TINY_CSV.replace("north", "nörth").encode("latin-1"))
    with pytest.raises(IngestError, match="UTF-8 CSV"):
        ingest(path, FeatureServiceSettings(data_dir=tmp_path / "s", products_dir=tiny.folder), product=tiny)

"""The product file: the German product loads; each kind of mistake is named by file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from creditrisk_products import Catalog, FeatureKind, ProductError, UnknownProduct, load_catalog, load_product
from creditrisk_products.definition import parse_product

ROOT = Path(__file__).resolve().parents[3]
GERMAN = ROOT / "products" / "german_credit"


def _text(**changes: str) -> str:
    """The German product file with ``section.key`` lines replaced (value as TOML text) or dropped."""
    text = (GERMAN / "product.toml").read_text()
    lines = text.splitlines()
    section = ""
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]")
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else ""
        full = f"{section}.{key}"
        if key and full in changes:
            value = changes[full]
            if value:
                out.append(f"{key} = {value}")
            continue
        out.append(line)
    return "\n".join(out)


def _problems(text: str, tmp_path: Path) -> list[tuple[str, str]]:
    folder = tmp_path / "german_credit"
    folder.mkdir(exist_ok=True)
    with pytest.raises(ProductError) as info:
        parse_product(text, folder / "product.toml", folder)
    assert str(folder / "product.toml") in str(info.value)
    return info.value.problems


def test_german_product_loads() -> None:
    product = load_product(GERMAN)
    assert product.name == "german_credit"
    assert product.entity.join_key == "applicant_id"
    assert product.label.column == "creditability"
    assert product.label.maturity_days == 365
    assert product.decision.false_negative_cost == 5.0
    assert product.features.protected_attributes == ("personal_status_and_sex", "foreign_worker")
    assert product.drift.kinds()["credit_amount"] is FeatureKind.NUMERIC
    assert len(product.drift.kinds()) == 20
    assert product.serving.aliases()["credit_amount"] == "requested_credit_amount"
    assert product.feature_repo_path == GERMAN / "feature_repo"
    assert product.ingest.application_time_drawn is not None
    assert "applicant_id" in product.non_feature_columns


def test_out_of_range_value_names_its_key(tmp_path: Path) -> None:
    problems = _problems(_text(**{"gate.absolute_floor": "1.5"}), tmp_path)
    assert problems[0][0] == "[gate].absolute_floor"
    assert "less than or equal to 1" in problems[0][1]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = _text().replace("[gate]\n", "[gate]\nabsolute_flor = 0.7\n")
    problems = _problems(text, tmp_path)
    assert ("[gate].absolute_flor", "Extra inputs are not permitted") in problems


def test_missing_required_key_and_several_problems_at_once(tmp_path: Path) -> None:
    problems = _problems(_text(**{"entity.join_key": "", "label.maturity_days": "-1"}), tmp_path)
    keys = {k for k, _ in problems}
    assert {"[entity].join_key", "[label].maturity_days"} <= keys


def test_not_toml_names_the_line(tmp_path: Path) -> None:
    problems = _problems("[product]\nname = \n", tmp_path)
    assert problems[0][0] == ""
    assert "line 2" in problems[0][1]


def test_drift_kind_must_be_known(tmp_path: Path) -> None:
    problems = _problems(_text(**{"drift.features.credit_amount": '"ordinal"'}), tmp_path)
    assert problems[0][0] == "[drift].features.credit_amount.kind"


def test_cross_checks(tmp_path: Path) -> None:
    problems = _problems(_text(**{"features.protected_attributes": '["applicant_id"]'}), tmp_path)
    assert "names the join key" in problems[0][1]
    problems = _problems(
        _text(**{"serving.request_fields.duration_in_month": '"requested_credit_amount"'}), tmp_path
    )
    assert "same request source field" in problems[0][1]


def test_ingest_needs_exactly_one_time_source(tmp_path: Path) -> None:
    text = _text(**{"ingest.entity_key": '"row_number"\napplication_time = "applied_at"'})
    problems = _problems(text, tmp_path)
    assert problems[0][0] == "[ingest]"
    assert "exactly one" in problems[0][1]


def test_name_must_match_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "other_name"
    folder.mkdir()
    with pytest.raises(ProductError) as info:
        parse_product(_text(), folder / "product.toml", folder)
    assert info.value.problems[0][0] == "[product].name"


def test_catalog_default_and_unknown(tmp_path: Path) -> None:
    catalog = load_catalog(ROOT / "products")
    assert "german_credit" in catalog.names
    assert load_catalog(GERMAN).get().name == "german_credit"
    with pytest.raises(UnknownProduct, match="unknown product 'nope'"):
        catalog.get("nope")
    german = load_product(GERMAN)
    data = tomllib.loads(_text())
    data["product"]["name"] = "second"
    data["product"]["feast_project"] = "second"
    second = german.model_validate({**data, "folder": tmp_path / "second"})
    with pytest.raises(UnknownProduct, match="name one"):
        Catalog(
            {"german_credit": german, "other": german.model_copy(update={"product": second.product})}
        ).get()


def test_two_products_may_not_share_a_feast_project() -> None:
    german = load_product(GERMAN)
    with pytest.raises(ProductError, match="feast_project"):
        Catalog({"a": german, "b": german.model_copy()})


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="no product file here"):
        load_product(tmp_path)
    with pytest.raises(ProductError, match="products directory not found"):
        load_catalog(tmp_path / "nothing")
    with pytest.raises(ProductError, match="no product gone"):
        load_catalog(ROOT / "products", ["gone"])


def test_settings_find_the_checkout_and_take_an_explicit_folder(tmp_path: Path) -> None:
    from creditrisk_products import ProductSettings, checkout_products_dir

    assert checkout_products_dir(GERMAN / "feature_repo") == ROOT / "products"
    assert checkout_products_dir(tmp_path) is None
    assert ProductSettings().catalog().get().name == "german_credit"
    assert ProductSettings(products_dir=GERMAN).catalog().names == ["german_credit"]
    with pytest.raises(ProductError, match="no product nope"):
        ProductSettings(products=["nope"]).catalog()


def test_served_product_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from creditrisk_kit.settings import EXIT_BAD_CONFIGURATION
    from creditrisk_products import ProductSettings
    from creditrisk_products.settings import EXIT_BAD_CONFIGURATION as OURS

    assert OURS == EXIT_BAD_CONFIGURATION
    assert ProductSettings(products_dir=GERMAN).served_product("svc").name == "german_credit"
    folder = tmp_path / "german_credit"
    folder.mkdir()
    (folder / "feature_repo").mkdir()
    (folder / "product.toml").write_text(_text(**{"gate.min_rows": "1"}))
    with pytest.raises(SystemExit) as info:
        ProductSettings(products_dir=tmp_path).served_product("svc")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "svc: invalid product configuration:" in err
    assert "[gate].min_rows" in err


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"product.feast_project": '"' + "p" * 41 + '"'}, "[product].feast_project"),
        ({"ingest.label_codes": '{ bad = 1, good = 0, " BAD " = 0 }'}, "[ingest]"),
        ({"ingest.application_time_drawn.start": "0001-01-01"}, "[ingest].application_time_drawn.start"),
    ],
)
def test_values_that_would_escape_or_corrupt_are_refused(
    tmp_path: Path, change: dict[str, str], key: str
) -> None:
    problems = _problems(_text(**change), tmp_path)
    assert key in {k for k, _ in problems}, problems


@pytest.mark.parametrize("repo", ['"../.."', '"/etc"', '"a/../../b"', '""'])
def test_a_repository_outside_the_folder_is_refused(tmp_path: Path, repo: str) -> None:
    text = _text().replace("[product]\n", f"[product]\nfeature_repo = {repo}\n")
    assert "[product].feature_repo" in {k for k, _ in _problems(text, tmp_path)}


def test_a_symlinked_repository_outside_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "german_credit"
    folder.mkdir()
    (folder / "product.toml").write_text(_text())
    (folder / "feature_repo").symlink_to(tmp_path)
    with pytest.raises(ProductError, match="outside the product's folder"):
        load_product(folder)


def test_deeply_nested_toml_is_a_product_error(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="nested too deeply"):
        parse_product("x = " + "[" * 100_000 + "]" * 100_000, tmp_path / "product.toml")

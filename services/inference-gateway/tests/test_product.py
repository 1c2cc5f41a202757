"""The inference-gateway takes what is product-specific from its product (issue 19): a product with
another model feature service, entity join key, request fields and registered model (written into
``tmp_path`` from ``products/german_credit``) is what enrichment, the OpenAPI schema and the slots
use; a missing or invalid product stops the start with status 2 naming the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Stack, StartGateway
from creditrisk_products import load_product
from creditrisk_testing import entrypoints as ep
from creditrisk_testing.products import german_variant
from inference_gateway.__main__ import build
from inference_gateway.app import predict_schema

ROOT = Path(__file__).resolve().parents[3]
GERMAN_DIR = ROOT / "products" / "german_credit"
GERMAN = load_product(GERMAN_DIR)
SERVICE, KEY, MODEL_NAME = "other_scoring_v2", "customer_ref", "other-model"


#: Another model feature service and join key; one request field fewer.
OTHER = {
    f'model_service = "{GERMAN.features.model_service}"': f'model_service = "{SERVICE}"',
    f'join_key = "{GERMAN.entity.join_key}"': f'join_key = "{KEY}"',
    '\nduration_in_month = "requested_duration_in_month"': "",
}


async def test_the_german_product_is_served_by_default(gw, stack: Stack) -> None:
    assert gw.gateway.product.name == "german_credit"
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1})
    assert r.status_code == 200, r.text
    assert set(stack.features.feature_services) == {GERMAN.features.model_service}


async def test_feature_service_and_join_key_come_from_the_product(
    start_gateway: StartGateway, stack: Stack, tmp_path: Path
) -> None:
    stack.features.join_key = KEY
    gw = await start_gateway(products_dir=german_variant(tmp_path, OTHER).parent)
    r = await gw.http.post("/v1/predict", json={"applicant_id": 1, "request_values": {"credit_amount": 3000}})
    assert r.status_code == 200, r.text  # the fake refuses any other join key
    assert r.json()["features"]["credit_amount"] == 3000
    assert set(stack.features.feature_services) == {SERVICE}
    # the REST API documents the product's key and request fields
    document = (await gw.http.get("/openapi.json")).json()
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert KEY in body["properties"]["applicant_id"]["description"]
    values = body["properties"]["request_values"]
    assert set(values["properties"]) == {"credit_amount"}
    assert SERVICE in values["description"]
    batch = document["paths"]["/v1/predict:batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["properties"]["requests"]["items"] == body


def test_the_openapi_request_lists_the_german_request_fields() -> None:
    values = predict_schema(GERMAN)["properties"]["request_values"]
    assert set(values["properties"]) == set(GERMAN.serving.request_fields)
    assert "properties" not in predict_schema()["properties"]["request_values"]


async def test_the_slots_serve_the_products_registered_model_unless_set(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    own = f'registered_model = "{GERMAN.product.registered_model}"'
    products = german_variant(tmp_path, {own: f'registered_model = "{MODEL_NAME}"'}).parent
    gw = await start_gateway(wait=False, products_dir=products)
    assert gw.gateway.router.model_name == MODEL_NAME
    pinned = await start_gateway(wait=False, products_dir=products, model_name="pinned")
    assert pinned.gateway.router.model_name == "pinned"


BROKEN = {"maturity_days = 365": "maturity_days = -1"}


def test_an_invalid_product_stops_the_build_naming_file_and_key(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = german_variant(tmp_path, BROKEN).parent
    with pytest.raises(SystemExit) as stopped:
        build(stack.settings(tmp_path, products_dir=broken))
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert "inference-gateway: invalid product configuration" in stderr
    assert f"{broken / 'german_credit' / 'product.toml'}: [label].maturity_days" in stderr


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_an_invalid_product_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    broken = german_variant(tmp_path, BROKEN).parent
    env = ep.service_environment(
        "INFERENCE_GATEWAY_",
        ep.free_port(),
        products_dir=str(broken),
        http_port="0",
        buffer_path=str(tmp_path / "buffer.sqlite3"),
        auth_disabled="true",
    )
    done = ep.run_to_exit("inference_gateway", env)
    assert done.returncode == 2, done.stderr
    assert re.search(r"product\.toml: \[label\]\.maturity_days: .*greater than or equal to 0", done.stderr)

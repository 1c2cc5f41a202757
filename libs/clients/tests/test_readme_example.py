"""The scoring example of ``libs/clients/README.md`` runs as written against an in-process
InferenceService that checks request values the way the inference-gateway does (a name the feature
service does not declare, or a value of another type, is INVALID_ARGUMENT), with the request values
the German credit product declares (``products/german_credit/product.toml``'s
``[serving.request_fields]``, every one INT64 in its Feast request source)."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

import grpc
import pytest
from creditrisk.common.v1 import serving_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk_clients import InferenceClient

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "libs/clients/README.md"
GERMAN = ROOT / "products/german_credit"
README_TARGET = "inference-gateway:50055"

#: The request values of the German product's model feature service and their declared types
#: (checked against the product below).
REQUEST_VALUES = {"credit_amount": "int64_value", "duration_in_month": "int64_value"}


def scoring_example() -> str:
    """The README's Python block that calls ``InferenceClient.predict``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [block for block in blocks if "client.predict(" in block]
    assert len(found) == 1, "the README has one scoring example"
    return found[0]


class _Gateway(ipb_grpc.InferenceServiceServicer):  # type: ignore[misc]
    """Checks each request value's name and type against :data:`REQUEST_VALUES`; the probability of
    default is ``credit_amount / 20_000``, approved below 0.5."""

    async def Predict(self, request: Any, context: Any) -> Any:
        for name, value in request.request_values.items():
            if name not in REQUEST_VALUES:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request_values[{name}] is unknown")
            if value.WhichOneof("kind") != REQUEST_VALUES[name]:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request_values[{name}] must be INT64")
        pd = request.request_values["credit_amount"].int64_value / 20_000
        return ipb.PredictResponse(
            event_id="event-1",
            probability_of_default=pd,
            decision=serving_pb2.DECISION_DECLINE if pd >= 0.5 else serving_pb2.DECISION_APPROVE,
            decision_threshold=0.5,
            client_request_id=request.client_request_id,
        )


@pytest.fixture
async def port(serve: Any) -> int:
    servicer = _Gateway()
    return int(
        await serve(
            "creditrisk.inference.v1.InferenceService",
            lambda server: ipb_grpc.add_InferenceServiceServicer_to_server(servicer, server),
        )
    )


def test_the_example_uses_the_request_values_the_product_declares() -> None:
    from creditrisk_products import load_product

    fields = load_product(GERMAN).serving.request_fields
    assert set(fields) == set(REQUEST_VALUES)
    int64_fields = {
        ast.literal_eval(kw.value)
        for file in sorted((GERMAN / "feature_repo").glob("*.py"))
        for node in ast.walk(ast.parse(file.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Field"
        for kw in node.keywords
        if kw.arg == "name"
        and any(k.arg == "dtype" and getattr(k.value, "id", "") == "Int64" for k in node.keywords)
    }
    assert set(fields.values()) <= int64_fields, "every request source field is declared Int64"
    example = scoring_example()
    assert README_TARGET in example
    for name in re.findall(r'"(\w+)": ', example):
        assert name in REQUEST_VALUES, f"the README sends {name!r}, not a declared request value"


async def test_the_readme_scoring_example_runs_and_prints_the_decision_name(
    port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = scoring_example().replace(README_TARGET, f"127.0.0.1:{port}")
    namespace: dict[str, Any] = {}
    exec("async def example():\n" + textwrap.indent(code, "    "), namespace)
    await namespace["example"]()
    assert capsys.readouterr().out.split() == ["0.2", "DECISION_APPROVE", "event-1"]


async def test_the_old_example_values_are_refused(port: int) -> None:
    async with InferenceClient.connect(f"127.0.0.1:{port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as float_amount:
            await client.predict(42, {"credit_amount": 4000.0, "duration_in_month": 24})
        with pytest.raises(grpc.aio.AioRpcError) as unknown_name:
            await client.predict(42, {"credit_amount": 4000, "duration_months": 24})
    assert float_amount.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert unknown_name.value.code() is grpc.StatusCode.INVALID_ARGUMENT

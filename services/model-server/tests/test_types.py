"""Exact types: what the scorer RECEIVES, through each runtime's real request decoding, in process.

The transports are seldon-core's own Flask app (``get_rest_microservice``) and gRPC servicer
(``SeldonModelGRPC``) around our user model, and MLServer's own request models / gRPC converter
around our runtime; the scorer is wrapped by a spy that records the columns handed to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from mlserver.grpc.converters import ModelInferRequestConverter
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest
from model_server.mlserver_runtime import CreditRiskRuntime
from model_server.seldon_model import CreditRiskModel
from model_server.signature import Column, InvalidInput, cast_value, columns_from_records
from model_server.slot import Slot
from model_server.testing import fixtures as fx
from model_server.testing.clients import v2_json, v2_proto
from seldon_core.metrics import SeldonMetrics
from seldon_core.proto import prediction_pb2
from seldon_core.wrapper import SeldonModelGRPC, get_rest_microservice

ROW = {
    "status_of_existing_checking_account": "... < 0 DM",
    "duration_in_month": 6,
    "credit_amount": 1169,
    "purpose": "radio/television",
    "age_in_years": 67,
    "monthly_installment": 194.83333333333334,
    "telephone": "yes, registered under the customers name",
}


class Spy:
    def __init__(self, scorer: Any) -> None:
        self.scorer, self.kind, self.seen = scorer, scorer.kind, []

    def predict_default(self, columns: Any, n: int) -> np.ndarray:
        self.seen.append({k: v.copy() for k, v in columns.items()})
        return self.scorer.predict_default(columns, n)


@pytest.fixture(scope="module")
def slot(stack: Any, inproc_v1: Any) -> Slot:
    s = Slot(stack.settings())
    s._current = inproc_v1  # the loaded version 1 (no follower thread)
    return s


@pytest.fixture
def spy(slot: Slot) -> Any:
    model = slot.current
    original = model.serving
    model.serving = Spy(original)
    yield model.serving
    model.serving = original


def assert_exact(columns: dict[str, np.ndarray], kinds: dict[str, str], row: dict[str, Any]) -> None:
    for name, kind in kinds.items():
        values = columns[name]
        if kind == "double":
            assert values.dtype == np.float64, name
            expected = float(row[name]) if name in row else None
            assert np.isnan(values[0]) if expected is None else values[0] == expected, name
        else:
            assert values.dtype == object, name
            assert (
                values[0] is None if name not in row else (type(values[0]) is str and values[0] == row[name])
            ), name


def _kinds(slot: Slot) -> dict[str, str]:
    return slot.current.signature


def test_signature_kinds(slot: Slot) -> None:
    kinds = _kinds(slot)
    assert set(kinds.values()) == {"double", "string"}
    assert len(kinds) == 19


def test_seldon_rest_dtypes(slot: Slot, spy: Spy) -> None:
    model = CreditRiskModel()
    model.slot = slot
    app = get_rest_microservice(model, SeldonMetrics())
    r = app.test_client().post("/api/v1.0/predictions", json={"jsonData": ROW}, headers=fx.auth_headers())
    assert r.status_code == 200, r.get_data(as_text=True)
    assert_exact(spy.seen[-1], _kinds(slot), ROW)
    assert r.get_json()["meta"]["tags"]["model_version"] == slot.current.version
    # an unknown route is a 404 (stock seldon-core answers 500), bad input a 400 naming the field
    assert app.test_client().get("/nope").status_code == 404
    bad = app.test_client().post(
        "/api/v1.0/predictions", json={"jsonData": {**ROW, "purpose": 3}}, headers=fx.auth_headers()
    )
    assert bad.status_code == 400
    assert "jsonData.purpose" in bad.get_json()["status"]["info"]


def test_seldon_grpc_dtypes(slot: Slot, spy: Spy) -> None:
    model = CreditRiskModel()
    model.slot = slot
    servicer = SeldonModelGRPC(model, SeldonMetrics())
    msg = json_format.ParseDict({"jsonData": ROW}, prediction_pb2.SeldonMessage())
    # seldon's gRPC jsonData is a protobuf Value: 6 arrives as 6.0; the cast back keeps float64 6.0
    assert json_format.MessageToDict(msg.jsonData)["duration_in_month"] == 6.0
    out = json_format.MessageToDict(servicer.Predict(msg, None))
    assert_exact(spy.seen[-1], _kinds(slot), ROW)
    assert out["meta"]["tags"]["model_version"] == slot.current.version


@pytest.fixture
def runtime(slot: Slot) -> CreditRiskRuntime:
    rt = CreditRiskRuntime(ModelSettings(name="credit-risk", implementation=CreditRiskRuntime))
    rt.slot = slot
    rt.ready = True
    return rt


async def test_mlserver_rest_dtypes(runtime: CreditRiskRuntime, slot: Slot, spy: Spy) -> None:
    request = InferenceRequest.model_validate(v2_json([ROW], _kinds(slot)))
    response = await runtime.predict(request)
    assert_exact(spy.seen[-1], _kinds(slot), ROW)
    assert response.model_version == slot.current.version
    # INT64 for a double column is converted exactly
    body = v2_json([ROW], _kinds(slot))
    for inp in body["inputs"]:
        if inp["name"] == "credit_amount":
            inp["datatype"], inp["data"] = "INT64", [1169]
    await runtime.predict(InferenceRequest.model_validate(body))
    assert spy.seen[-1]["credit_amount"].dtype == np.float64
    assert spy.seen[-1]["credit_amount"][0] == 1169.0


async def test_mlserver_grpc_dtypes(runtime: CreditRiskRuntime, slot: Slot, spy: Spy) -> None:
    request = ModelInferRequestConverter.to_types(v2_proto("credit-risk", [ROW], _kinds(slot)))
    response = await runtime.predict(request)
    assert_exact(spy.seen[-1], _kinds(slot), ROW)
    assert response.model_version == slot.current.version


def test_cast_rules() -> None:
    long, double, string = Column("n", "long"), Column("x", "double"), Column("s", "string")
    assert cast_value(long, 3.0, "n") == 3
    assert type(cast_value(long, 3.0, "n")) is int
    with pytest.raises(InvalidInput, match="'n'"):
        cast_value(long, 3.5, "n")
    with pytest.raises(InvalidInput, match="'s'"):
        cast_value(string, 3, "s")  # never "3" / "3.0" for 3
    with pytest.raises(InvalidInput, match="'x'"):
        cast_value(double, "3", "x")
    with pytest.raises(InvalidInput, match="'x'"):
        cast_value(double, True, "x")
    cols = columns_from_records(
        [{"n": 3.0, "x": 2, "s": "a"}, {"n": 4, "s": None}], [long, double, string], "jsonData"
    )
    assert cols["n"].dtype == np.int64
    assert cols["n"].tolist() == [3, 4]
    assert cols["x"].dtype == np.float64
    assert cols["x"][0] == 2.0
    assert np.isnan(cols["x"][1])
    assert cols["s"].dtype == object
    assert cols["s"].tolist() == ["a", None]
    with pytest.raises(InvalidInput, match=r"jsonData\[1\]\.zzz"):
        columns_from_records([{"n": 1}, {"n": 1, "zzz": 1}], [long, double, string], "jsonData")

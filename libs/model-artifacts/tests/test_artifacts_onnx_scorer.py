"""The ONNX fast scorer agrees with the scikit-learn model it was exported from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

INPUTS = {"credit_amount": "double", "duration_months": "double", "purpose": "string"}
PURPOSES = ["car (new)", "radio/television", "education", "business"]
# float32 inputs and float32 arithmetic inside the graph (scorer.json numeric_tensor "float")
TOLERANCE = 1e-6


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "credit_amount": rng.lognormal(8, 0.7, n).round(),
            "duration_months": rng.integers(6, 60, n).astype("float64"),
            "purpose": pd.Series(rng.choice(PURPOSES, n), dtype=object),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    x = _frame(400, 0)
    logit = 0.0004 * x["credit_amount"] + 0.03 * x["duration_months"] - 3 + (x["purpose"] == "business")
    y = (np.random.default_rng(1).random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["credit_amount", "duration_months"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["purpose"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=0.5, max_iter=1000))]).fit(x, y)


@pytest.fixture(scope="module")
def scorer_dir(fitted: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial = [
        (name, FloatTensorType([None, 1]) if kind == "double" else StringTensorType([None, 1]))
        for name, kind in INPUTS.items()
    ]
    onx = convert_sklearn(
        fitted,
        initial_types=initial,
        options={id(fitted): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    directory = tmp_path_factory.mktemp("fast_scorer")
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    (directory / "scorer.json").write_text(
        json.dumps({"inputs": INPUTS, "numeric_tensor": "float", "tolerance": TOLERANCE})
    )
    return directory


def test_parity_with_the_sklearn_model(fitted: Pipeline, scorer_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(scorer_dir)
    rows = _frame(300, 2)
    rows.loc[::7, "credit_amount"] = np.nan  # missing numbers: imputed on both sides
    rows.loc[::11, "purpose"] = "repairs"  # a category unseen in training: all zeros on both sides
    expected = fitted.predict_proba(rows)[:, list(fitted.classes_).index(1)]
    got = scorer.predict_default({c: rows[c].to_numpy() for c in rows.columns})
    assert got.dtype == np.float64
    assert got.shape == (300,)
    assert float(np.max(np.abs(got - expected))) <= scorer.tolerance == TOLERANCE
    # the same rows as lists with None for a missing number, and one row at a time
    as_lists = {
        c: [None if isinstance(v, float) and np.isnan(v) else v for v in rows[c]] for c in rows.columns
    }
    np.testing.assert_allclose(scorer.predict_default(as_lists), got, rtol=0, atol=0)
    first = {c: as_lists[c][0] for c in rows.columns}
    assert scorer.score(first) == pytest.approx(got[0], abs=0)


def test_a_missing_feature_is_scored_as_missing(fitted: Pipeline, scorer_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(scorer_dir)
    row = {"credit_amount": None, "duration_months": 24.0, "purpose": None}
    frame = pd.DataFrame({"credit_amount": [np.nan], "duration_months": [24.0], "purpose": ["unseen"]})
    expected = float(fitted.predict_proba(frame)[0, 1])
    assert abs(scorer.score(row) - expected) <= TOLERANCE
    assert scorer.score({"duration_months": 24.0}) == scorer.score(row)


def test_signature_check(scorer_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(scorer_dir)
    scorer.check_signature({"credit_amount": "double", "duration_months": "long", "purpose": "string"})
    with pytest.raises(ValueError, match="differ from the model signature"):
        scorer.check_signature({"credit_amount": "double", "purpose": "string"})
    with pytest.raises(ValueError, match="input purpose: kind string does not fit signature double"):
        scorer.check_signature({"credit_amount": "double", "duration_months": "long", "purpose": "double"})


def test_refuses_a_scorer_json_that_does_not_describe_the_graph(scorer_dir: Path) -> None:
    onnx_model = (scorer_dir / "model.onnx").read_bytes()
    with pytest.raises(ValueError, match=r"only in the graph \['purpose'\]"):
        OnnxScorer(onnx_model, {"credit_amount": "double", "duration_months": "double"})
    with pytest.raises(ValueError, match=r"unknown kind .*\['purpose'\]"):
        OnnxScorer(onnx_model, {**INPUTS, "purpose": "category"})
    with pytest.raises(ValueError, match="numeric_tensor 'half'"):
        OnnxScorer(onnx_model, INPUTS, numeric_tensor="half")


def test_refuses_columns_of_unequal_length(scorer_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(scorer_dir)
    with pytest.raises(ValueError, match="column duration_months has 1 values, expected 2"):
        scorer.predict_default({"credit_amount": [1.0, 2.0], "duration_months": [3.0], "purpose": ["a", "b"]})


def _folder(tmp_path: Path, scorer_dir: Path, scorer_json: str, model: bytes | None = None) -> Path:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "scorer.json").write_text(scorer_json)
    (directory / "model.onnx").write_bytes(model or (scorer_dir / "model.onnx").read_bytes())
    return directory


@pytest.mark.parametrize(
    ("scorer_json", "match"),
    [
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"inputs": ["credit_amount"]}', "must map feature names to kinds"),
        ('{"inputs": null}', "must map feature names to kinds"),
        (json.dumps({"inputs": {"credit_amount": 1}}), "must map feature names to kinds"),
        (json.dumps({"inputs": INPUTS, "numeric_tensor": ["float"]}), "numeric_tensor must be a string"),
    ],
)
def test_a_malformed_scorer_json_is_a_value_error(
    tmp_path: Path, scorer_dir: Path, scorer_json: str, match: str
) -> None:
    # The registry-gateway turns ValueError / KeyError into FAILED_PRECONDITION; these were
    # TypeError / AttributeError, an INTERNAL error of RegisterModelVersion.
    with pytest.raises(ValueError, match=match):
        OnnxScorer.from_dir(_folder(tmp_path, scorer_dir, scorer_json))


def test_a_model_onnx_that_does_not_load_is_a_value_error(tmp_path: Path, scorer_dir: Path) -> None:
    folder = _folder(tmp_path, scorer_dir, json.dumps({"inputs": INPUTS}), model=b"not onnx")
    with pytest.raises(ValueError, match="not a model onnxruntime loads"):
        OnnxScorer.from_dir(folder)


def test_an_output_not_of_two_columns_is_refused_at_load() -> None:
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["a"], ["probabilities"])], "g", [a], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ValueError, match=r"has shape \[None, 1\], expected \[N, 2\]"):
        OnnxScorer(model.SerializeToString(), {"a": "double"})  # was an IndexError when scoring


@pytest.mark.parametrize("tolerance", ["Infinity", "NaN", "-1", '"abc"', "[1]", "true"])
def test_a_tolerance_must_be_a_finite_number_not_below_zero(
    tmp_path: Path, scorer_dir: Path, tolerance: str
) -> None:
    # Infinity made the registry-gateway's fidelity check (max |diff| <= tolerance) always pass.
    folder = _folder(tmp_path, scorer_dir, f'{{"inputs": {json.dumps(INPUTS)}, "tolerance": {tolerance}}}')
    with pytest.raises(ValueError, match="tolerance"):
        _ = OnnxScorer.from_dir(folder).tolerance

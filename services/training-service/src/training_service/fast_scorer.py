"""Export of a fitted pipeline to ONNX (skl2onnx) and its fidelity check against scikit-learn.

scikit-learn's ``Pipeline.predict_proba`` on a one-row DataFrame is slow (per-column pandas
indexing and validation); the ONNX graph run by onnxruntime is two orders of magnitude faster
(``scripts/bench_fast_scorer.py``; figures in docs/benchmarks.md, model-server). The runtime side is
:mod:`creditrisk_model_artifacts.onnx_scorer`, a self-contained module the run logs next to the
ONNX model.

Precision: the graph takes numeric inputs as float32 and its tree / linear operators compute in
float32 (onnxruntime's ``TreeEnsembleClassifier`` outputs float only; skl2onnx's ``SimpleImputer``
becomes the float-only ``Imputer`` operator), so the probabilities carry float32 rounding: the
measured largest difference from scikit-learn over every German credit row is ~1e-7 for
logistic regression and gradient boosting (target 1e-6).

Random forest: skl2onnx's ``TreeEnsembleClassifier`` averages the 500 trees' leaf probabilities in
float32 inside onnxruntime; the accumulated rounding reached 2.8e-6 on German credit (over the
target). :func:`export_onnx` therefore casts the tree ensemble's input to double
(:func:`_accumulate_in_double`): onnxruntime then compares and accumulates in double and rounds
once to the float output (measured ~5e-8). Split decisions are unchanged: scikit-learn's trees
themselves compare float32 inputs, which the double cast represents exactly.

Soft-voting ensemble: skl2onnx converts ``VotingClassifier(voting="soft",
flatten_transform=False)`` over the three pipelines into one graph (weighted sum of the members'
probabilities); the random forest member's tree ensemble is cast to double as above (every
``TreeEnsembleClassifier`` of the graph is, the gradient boosting member's too: its splits compare
the same float32 values either way).

A tree split whose threshold lies within float32 rounding of an input
value could flip on other data; :func:`max_abs_difference` is recorded with every run.

Two skl2onnx 1.20 issues are handled here:

* its histogram-gradient-boosting converter passes a Python ``bool`` into an integer attribute
  (``nodes_missing_value_tracks_true``), which protobuf >= 5 rejects: patched during conversion;
* it ignores the categorical bitsets of native categorical splits: the pipelines one-hot encode
  categoricals instead (:mod:`training_service.modelling`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.pipeline import Pipeline

from training_service.modelling import FeatureSchema, predict_default

TOLERANCE = 1e-6
"""Largest acceptable |ONNX - scikit-learn| of the probability of default."""
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@contextlib.contextmanager
def _patched_tree_converter() -> Iterator[None]:
    import skl2onnx.common.tree_ensemble as tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def _accumulate_in_double(onx: Any) -> Any:
    """Insert ``Cast(to=DOUBLE)`` before each ``TreeEnsembleClassifier`` of ``onx`` (in place).

    onnxruntime instantiates the operator for double input with double thresholds and double
    score accumulation (output still float): the average over many trees then carries a single
    float rounding instead of one per tree.
    """
    from onnx import TensorProto, helper

    nodes = []
    for node in onx.graph.node:
        if node.op_type == "TreeEnsembleClassifier":
            as_double = f"{node.input[0]}_as_double"
            nodes.append(
                helper.make_node(
                    "Cast", [node.input[0]], [as_double], to=TensorProto.DOUBLE, name=f"{node.name}_to_double"
                )
            )
            node.input[0] = as_double
        nodes.append(node)
    del onx.graph.node[:]
    onx.graph.node.extend(nodes)
    return onx


def _has_random_forest(model: Any) -> bool:
    """Whether ``model`` (a pipeline, or a voting ensemble of pipelines) contains a random forest."""
    if isinstance(model, VotingClassifier):
        return any(_has_random_forest(member) for member in model.estimators_)
    return isinstance(model, Pipeline) and isinstance(model[-1], RandomForestClassifier)


def export_onnx(pipeline: Pipeline | VotingClassifier, schema: FeatureSchema) -> bytes:
    """The fitted pipeline as a serialized ONNX model: one ``[N, 1]`` input per feature (float32
    for ``double`` features, string for ``string`` ones), outputs ``label`` and ``probabilities``
    (``[N, 2]``, column 1 = P(default))."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [
        (name, FloatTensorType([None, 1]) if kind == "double" else StringTensorType([None, 1]))
        for name, kind in schema.features
    ]
    with _patched_tree_converter():
        onx = convert_sklearn(
            pipeline,
            initial_types=initial_types,
            options={id(pipeline): {"zipmap": False}},
            target_opset=TARGET_OPSET,
        )
    if _has_random_forest(pipeline):
        onx = _accumulate_in_double(onx)
    return bytes(onx.SerializeToString())


@dataclass(frozen=True)
class FastScorerArtifact:
    """An exported fast scorer and its fidelity.

    Attributes:
        onnx_model: serialized ONNX model.
        inputs: ``{name: kind}`` of the signature, in order.
        max_abs_diff: largest |ONNX - scikit-learn| P(default) over the checked rows.
        rows_checked: how many rows were compared.
    """

    onnx_model: bytes
    inputs: dict[str, str]
    max_abs_diff: float
    rows_checked: int

    def meta(self) -> dict[str, Any]:
        """``scorer.json`` content."""
        return {
            "inputs": self.inputs,
            "numeric_tensor": "float",
            "output": "probabilities[:, 1] = P(default)",
            "max_abs_diff": self.max_abs_diff,
            "rows_checked": self.rows_checked,
            "tolerance": TOLERANCE,
        }


def max_abs_difference(scorer: OnnxScorer, pipeline: Pipeline, model_input: pd.DataFrame) -> float:
    """Largest |fast scorer - pipeline| of P(default) over the rows of ``model_input``."""
    expected = predict_default(pipeline, model_input)
    columns = {c: model_input[c].tolist() for c in model_input.columns}
    got = scorer.predict_default(columns, len(model_input))
    return float(np.max(np.abs(got - expected))) if len(expected) else 0.0


def build_fast_scorer(
    pipeline: Pipeline, schema: FeatureSchema, check_rows: pd.DataFrame
) -> FastScorerArtifact:
    """Export ``pipeline`` and measure it against scikit-learn on ``check_rows`` (model inputs)."""
    onnx_model = export_onnx(pipeline, schema)
    scorer = OnnxScorer(onnx_model, schema.to_dict())
    diff = max_abs_difference(scorer, pipeline, check_rows)
    return FastScorerArtifact(onnx_model, schema.to_dict(), diff, len(check_rows))

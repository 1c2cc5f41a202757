"""A model folder as the gateway checks it: the signature and metadata of its ``MLmodel``, the
scikit-learn flavor, and a frame in the signature's columns to score it and the fast scorer with.

The digests (keys ``model/<file>`` and ``fast_scorer/<file>``, version tags
``registry.sha256.<key>``), the skops allow-list and the ONNX fast scorer are
:mod:`creditrisk_model_artifacts`, shared with the training-service and the model-server.

The gateway never executes code from an artifact: the fast scorer is run with onnxruntime
following ``scorer.json`` (not the logged ``onnx_scorer.py``); the scikit-learn flavor is loaded
with skops and the trusted types recorded in its ``MLmodel`` (checked against the allow-list).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from creditrisk_model_artifacts import load_sklearn_flavor

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})


@dataclass(frozen=True)
class SignatureColumn:
    """One input column of an MLflow signature."""

    name: str
    type: str  # MLflow DataType name: double, long, string, boolean ...
    required: bool


@dataclass(frozen=True)
class ModelMeta:
    """What the ``MLmodel`` file says (``sklearn_flavor``: its ``sklearn`` flavor, ``{}`` if none)."""

    signature: list[SignatureColumn] | None
    metadata: dict[str, Any]
    sklearn_flavor: dict[str, Any]


def read_mlmodel(model_dir: Path) -> ModelMeta:
    """Signature (inputs), metadata and the sklearn flavor's skops settings of a model folder."""
    from mlflow.models import Model

    model = Model.load(str(model_dir / "MLmodel"))
    signature = None
    if model.signature is not None and model.signature.inputs is not None:
        signature = []
        for spec in model.signature.inputs.inputs:
            kind = getattr(getattr(spec, "type", None), "name", None) or str(getattr(spec, "type", ""))
            signature.append(
                SignatureColumn(str(spec.name), str(kind), bool(getattr(spec, "required", True)))
            )
    flavor = model.flavors.get("sklearn", {})
    return ModelMeta(
        signature=signature,
        metadata=dict(model.metadata or {}),
        sklearn_flavor=dict(flavor),
    )


def to_model_input(frame: pd.DataFrame, signature: list[SignatureColumn]) -> pd.DataFrame:
    """The frame's columns in the signature's order and types (numbers float64 with NaN; strings
    object with None; a column the frame lacks is all missing)."""
    out: dict[str, Any] = {}
    for col in signature:
        values = frame[col.name] if col.name in frame else pd.Series([None] * len(frame), index=frame.index)
        if col.type in NUMERIC_TYPES or col.type == "boolean":
            out[col.name] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            out[col.name] = pd.Series(
                [
                    None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v)
                    for v in values
                ],
                index=frame.index,
                dtype=object,
            )
    return pd.DataFrame(out, index=frame.index)


class SklearnModel:
    """The scikit-learn flavor of a downloaded model folder (skops, exactly its recorded types).

    Raises (from the constructor):
        creditrisk_model_artifacts.UntrustedModel (a ValueError): not skops, or the model trusts
            skops types outside the allow-list.
    """

    def __init__(self, model_dir: Path, meta: ModelMeta) -> None:
        self.meta = meta
        self.pipeline = load_sklearn_flavor(model_dir, meta.sklearn_flavor)

    def predict_default(self, model_input: pd.DataFrame) -> np.ndarray:
        """P(default) (class 1) per row."""
        classes = list(self.pipeline.classes_)
        return np.asarray(self.pipeline.predict_proba(model_input)[:, classes.index(1)], dtype=np.float64)


def frame_columns(model_input: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{column: values}`` of a model-input frame, as the fast scorer takes them."""
    return {str(name): model_input[name].to_numpy() for name in model_input.columns}

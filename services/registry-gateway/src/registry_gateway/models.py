"""Model artifacts: download, sha256 digests, the signature, loading the scikit-learn flavor and
the ONNX fast scorer, and scoring a frame with both.

Digest keys (``artifact_digests`` and the version tags ``registry.sha256.<key>``):

* ``model/<file>`` for every file of the registered model's artifact folder (the version's
  ``source``: ``MLmodel``, ``model.skops``, ``conda.yaml``, ``python_env.yaml``,
  ``requirements.txt``, ``input_example.json``, ``serving_input_example.json`` ...);
* ``fast_scorer/<file>`` for every file of the run's ``fast_scorer`` artifact folder
  (``model.onnx``, ``scorer.json``, ``onnx_scorer.py``) when the run logged one.

The gateway never executes code from an artifact: the fast scorer is run here with onnxruntime
following ``scorer.json`` (not the logged ``onnx_scorer.py``); the scikit-learn flavor is loaded
with skops and the trusted types recorded in its ``MLmodel`` (checked against an allow-list).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FAST_SCORER_DIR = "fast_scorer"
DIGEST_TAG_PREFIX = "registry.sha256."
TRUSTED_TYPES_ALLOWED: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)
"""skops types the gateway accepts beyond skops' defaults (the training-service's allow-list)."""
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})


def sha256_tree(root: Path, prefix: str) -> dict[str, str]:
    """``{prefix/relative path: sha256 hex}`` of every file under ``root``, sorted by key."""
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[f"{prefix}/{path.relative_to(root).as_posix()}"] = digest.hexdigest()
    return out


@dataclass(frozen=True)
class SignatureColumn:
    """One input column of an MLflow signature."""

    name: str
    type: str  # MLflow DataType name: double, long, string, boolean ...
    required: bool


@dataclass(frozen=True)
class ModelMeta:
    """What the ``MLmodel`` file says."""

    signature: list[SignatureColumn] | None
    metadata: dict[str, Any]
    trusted_types: list[str]
    serialization_format: str


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
        trusted_types=list(flavor.get("skops_trusted_types") or []),
        serialization_format=str(flavor.get("serialization_format", "")),
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
    """The scikit-learn flavor of a downloaded model folder.

    Raises (from the constructor):
        ValueError: the model needs skops types outside :data:`TRUSTED_TYPES_ALLOWED`.
    """

    def __init__(self, model_dir: Path, meta: ModelMeta) -> None:
        import mlflow.sklearn

        unexpected = sorted(set(meta.trusted_types) - TRUSTED_TYPES_ALLOWED)
        if unexpected:
            raise ValueError(f"the model trusts skops types outside the allow-list: {unexpected}")
        self.meta = meta
        self.pipeline = mlflow.sklearn.load_model(str(model_dir))

    def predict_default(self, model_input: pd.DataFrame) -> np.ndarray:
        """P(default) (class 1) per row."""
        classes = list(self.pipeline.classes_)
        return np.asarray(self.pipeline.predict_proba(model_input)[:, classes.index(1)], dtype=np.float64)


class OnnxFastScorer:
    """The run's ONNX fast scorer (``fast_scorer/model.onnx`` + ``scorer.json``) under onnxruntime."""

    def __init__(self, directory: Path) -> None:
        import onnxruntime as ort

        self.meta: dict[str, Any] = json.loads((directory / "scorer.json").read_text())
        self.inputs: dict[str, str] = dict(self.meta["inputs"])
        numeric = {"float": np.float32, "double": np.float64}[self.meta.get("numeric_tensor", "float")]
        self._numeric = numeric
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            (directory / "model.onnx").read_bytes(), options, providers=["CPUExecutionProvider"]
        )
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "probabilities" if "probabilities" in outputs else outputs[-1]

    @property
    def tolerance(self) -> float | None:
        """The recorded tolerance of |ONNX - scikit-learn|."""
        value = self.meta.get("tolerance")
        return None if value is None else float(value)

    def predict_default(self, model_input: pd.DataFrame) -> np.ndarray:
        """P(default) per row of a model-input frame."""
        feed: dict[str, np.ndarray] = {}
        for name, kind in self.inputs.items():
            values = model_input[name].tolist() if name in model_input else [None] * len(model_input)
            if kind == "double":
                feed[name] = np.array([[np.nan if v is None else v] for v in values], dtype=self._numeric)
            else:
                feed[name] = np.array([["" if v is None else str(v)] for v in values], dtype=object)
        return np.asarray(self._session.run([self._output], feed)[0][:, 1], dtype=np.float64)


def digest_tags(digests: Mapping[str, str]) -> dict[str, str]:
    """The version tags recording ``digests``."""
    return {f"{DIGEST_TAG_PREFIX}{key}": value for key, value in digests.items()}


def digests_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``artifact_digests`` from a version's tags."""
    return {k[len(DIGEST_TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(DIGEST_TAG_PREFIX)}

"""The two scoring paths of a verified version.

* :class:`OnnxScorer` (serving path, default): the run's ONNX fast scorer run with onnxruntime
  exactly as ``fast_scorer/scorer.json`` describes it (inputs by name and kind, numeric tensor
  type, output ``probabilities[:, 1]``), by :mod:`creditrisk_model_artifacts.onnx_scorer`; the
  logged ``onnx_scorer.py`` is never executed - the registry-gateway does the same.
* :class:`ReferenceScorer`: the scikit-learn flavor loaded with skops and exactly the trusted
  types recorded in ``MLmodel``, each checked against
  :data:`creditrisk_model_artifacts.TRUSTED_TYPES_ALLOWED` first.

Both take the typed columns of :mod:`model_server.signature` and return P(default) as float64.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from creditrisk_model_artifacts import load_sklearn_flavor
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer as _OnnxScorer


class Scorer(Protocol):
    """P(default) of typed columns (one numpy array per signature column, all of length ``n``)."""

    kind: str

    def predict_default(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray: ...


class OnnxScorer(_OnnxScorer):
    """The ONNX fast scorer of a ``fast_scorer`` folder, its inputs checked against the signature.

    Raises (constructor):
        ValueError: ``scorer.json`` names inputs other than the signature's, an unknown kind, or a
            kind that does not fit its column; ``model.onnx`` has other inputs.
        KeyError / OSError: ``scorer.json`` without ``inputs``; a file missing.
    """

    kind = "fast"

    def __init__(self, directory: Path, signature: Mapping[str, str]) -> None:
        meta = json.loads((directory / "scorer.json").read_text())
        super().__init__(
            (directory / "model.onnx").read_bytes(), meta["inputs"], meta.get("numeric_tensor", "float"), meta
        )
        self.check_signature(signature)


class ReferenceScorer:
    """The scikit-learn flavor (skops) of a model folder.

    Raises (constructor):
        creditrisk_model_artifacts.UntrustedModel (a ValueError): not skops, or trusted types
            outside the allow-list.
    """

    kind = "reference"

    def __init__(self, model_dir: Path, flavor: Mapping[str, Any]) -> None:
        self.pipeline = load_sklearn_flavor(model_dir, flavor)
        self._positive = list(self.pipeline.classes_).index(1)

    def predict_default(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """P(default) per row (a pandas frame with the typed columns, as the training side builds it)."""
        import pandas as pd

        frame = pd.DataFrame({name: values for name, values in columns.items()})
        return np.asarray(self.pipeline.predict_proba(frame)[:, self._positive], dtype=np.float64)

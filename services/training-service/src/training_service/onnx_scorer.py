"""One-row ONNX scorer of a credit-risk model: probability of default from raw feature values.

SELF-CONTAINED: imports only numpy and onnxruntime, so the model-server can load it without the
training-service package. The training run logs this very file next to the ONNX model
(``fast_scorer/onnx_scorer.py``, ``fast_scorer/model.onnx``, ``fast_scorer/scorer.json``).

Inputs follow the model signature: every feature is optional; ``double`` features take an int,
float or None (None -> NaN); ``string`` features take a str or None (None -> ``""``, which the
exported one-hot encoder treats like an unknown category: all zeros, as scikit-learn does for a
missing category it did not see in training).

Usage::

    scorer = FastScorer.from_dir("fast_scorer")        # or FastScorer(onnx_bytes, inputs)
    p = scorer.score({"credit_amount": 1169, "purpose": "radio/television", ...})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

#: ONNX input element types per signature kind. Doubles travel as float32 (see scorer.json).
_DTYPES = {"float": np.float32, "double": np.float64}


class FastScorer:
    """Scores one applicant with onnxruntime (one intra-op thread, no Python-side pandas).

    Args:
        onnx_model: the serialized ONNX model.
        inputs: ``{feature name: "double" | "string"}`` in signature order.
        numeric_tensor: element type of the numeric inputs in the ONNX graph (``float`` or ``double``).
    """

    def __init__(self, onnx_model: bytes, inputs: Mapping[str, str], numeric_tensor: str = "float") -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        self._inputs = dict(inputs)
        self._numeric = _DTYPES[numeric_tensor]
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "probabilities" if "probabilities" in outputs else outputs[-1]

    @classmethod
    def from_dir(cls, directory: str | Path) -> FastScorer:
        """Load ``model.onnx`` and ``scorer.json`` from a downloaded ``fast_scorer`` artifact folder."""
        directory = Path(directory)
        meta = json.loads((directory / "scorer.json").read_text())
        return cls(
            (directory / "model.onnx").read_bytes(), meta["inputs"], meta.get("numeric_tensor", "float")
        )

    def _feed(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        for name, kind in self._inputs.items():
            value = row.get(name)
            if kind == "double":
                feed[name] = np.array([[np.nan if value is None else value]], dtype=self._numeric)
            else:
                feed[name] = np.array([["" if value is None else str(value)]], dtype=object)
        return feed

    def score(self, row: Mapping[str, Any]) -> float:
        """Probability of default of one applicant (missing keys count as missing values)."""
        probabilities = self._session.run([self._output], self._feed(row))[0]
        return float(probabilities[0, 1])

    def score_batch(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Probabilities of default of several rows given column-wise (lists or arrays, None allowed)."""
        feed: dict[str, np.ndarray] = {}
        for name, kind in self._inputs.items():
            values = list(columns[name])
            if kind == "double":
                feed[name] = np.array([[np.nan if v is None else v] for v in values], dtype=self._numeric)
            else:
                feed[name] = np.array([["" if v is None else str(v)] for v in values], dtype=object)
        return np.asarray(self._session.run([self._output], feed)[0][:, 1], dtype=np.float64)

"""The two scoring paths of a verified version.

* :class:`OnnxScorer` (serving path, default): the run's ONNX fast scorer run with onnxruntime
  exactly as ``fast_scorer/scorer.json`` describes it (inputs by name and kind, numeric tensor
  type, output ``probabilities[:, 1]``); the logged ``onnx_scorer.py`` is never executed - the
  registry-gateway does the same.
* :class:`ReferenceScorer`: the scikit-learn flavor loaded with skops and exactly the trusted
  types recorded in ``MLmodel``, each checked against :data:`TRUSTED_TYPES_ALLOWED` first.

Both take the typed columns of :mod:`model_server.signature` and return P(default) as float64.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

TRUSTED_TYPES_ALLOWED: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)
"""skops types accepted beyond skops' defaults (the training-service's and the gateway's allow-list)."""
_ONNX_NUMERIC = {"float": np.float32, "double": np.float64}


class Scorer(Protocol):
    """P(default) of typed columns (one numpy array per signature column, all of length ``n``)."""

    kind: str

    def predict_default(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray: ...


class OnnxScorer:
    """The ONNX fast scorer of a ``fast_scorer`` folder under onnxruntime (one thread).

    Raises (constructor):
        ValueError: ``scorer.json`` names inputs other than the signature's, or an unknown kind.
    """

    kind = "fast"

    def __init__(self, directory: Path, signature: Mapping[str, str]) -> None:
        import onnxruntime as ort

        self.meta: dict[str, Any] = json.loads((directory / "scorer.json").read_text())
        self.inputs: dict[str, str] = dict(self.meta["inputs"])
        if set(self.inputs) != set(signature):
            raise ValueError("scorer.json inputs differ from the model signature")
        for name, kind in self.inputs.items():
            if kind not in ("double", "string") or (kind == "string") != (signature[name] == "string"):
                raise ValueError(
                    f"scorer.json input {name}: kind {kind} does not fit signature {signature[name]}"
                )
        self._numeric = _ONNX_NUMERIC[self.meta.get("numeric_tensor", "float")]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            (directory / "model.onnx").read_bytes(), options, providers=["CPUExecutionProvider"]
        )
        graph_inputs = {i.name for i in self._session.get_inputs()}
        if graph_inputs != set(self.inputs):
            raise ValueError("model.onnx inputs differ from scorer.json")
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict_default(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """P(default) per row; a missing string is fed as ``""`` (an unknown category), as the
        training-side ``onnx_scorer`` does."""
        feed: dict[str, np.ndarray] = {}
        for name, kind in self.inputs.items():
            values = columns[name]
            if kind == "double":
                feed[name] = values.astype(self._numeric).reshape(n, 1)
            else:
                arr = np.empty((n, 1), dtype=object)
                arr[:, 0] = ["" if v is None else v for v in values]
                feed[name] = arr
        return np.asarray(self._session.run([self._output], feed)[0][:, 1], dtype=np.float64)


class ReferenceScorer:
    """The scikit-learn flavor (skops) of a model folder.

    Raises (constructor):
        ValueError: not skops, or trusted types outside :data:`TRUSTED_TYPES_ALLOWED`.
    """

    kind = "reference"

    def __init__(self, model_dir: Path, flavor: Mapping[str, Any]) -> None:
        import skops.io

        if flavor.get("serialization_format") != "skops":
            raise ValueError(f"the sklearn flavor is not skops: {flavor.get('serialization_format')!r}")
        trusted = [str(t) for t in flavor.get("skops_trusted_types") or []]
        unexpected = sorted(set(trusted) - TRUSTED_TYPES_ALLOWED)
        if unexpected:
            raise ValueError(f"the model trusts skops types outside the allow-list: {unexpected}")
        path = model_dir / str(flavor.get("pickled_model", "model.skops"))
        # exactly the recorded trusted types: anything else in the file makes skops refuse to load
        self.pipeline = skops.io.load(path, trusted=trusted)
        self._column_order: list[str] | None = None
        self._positive = list(self.pipeline.classes_).index(1)

    def predict_default(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """P(default) per row (a pandas frame with the typed columns, as the training side builds it)."""
        import pandas as pd

        frame = pd.DataFrame({name: values for name, values in columns.items()})
        return np.asarray(self.pipeline.predict_proba(frame)[:, self._positive], dtype=np.float64)

"""The ONNX fast scorer of a credit-risk model: probability of default from raw feature values.

SELF-CONTAINED: imports only the standard library, numpy and onnxruntime (the ``onnx`` extra). The
training run logs this very file next to the ONNX model (``fast_scorer/onnx_scorer.py``,
``fast_scorer/model.onnx``, ``fast_scorer/scorer.json``) so that a reader of the run can score
without the platform's packages; the registry-gateway and the model-server never execute the logged
copy, they run this module of their own environment following ``scorer.json``.

``scorer.json``: ``inputs`` (``{feature: "double" | "string"}`` in signature order),
``numeric_tensor`` (element type of the numeric inputs in the graph: ``float`` or ``double``;
default ``float``), ``tolerance`` (largest acceptable |ONNX - scikit-learn| of P(default)) and
measured fidelity. The graph's output ``probabilities`` is ``[N, 2]``, column 1 = P(default).

Inputs follow the model signature: every feature is optional; a ``double`` feature takes a number
or None (None -> NaN); a ``string`` feature takes a str or None (None -> ``""``, which the
exported one-hot encoder treats like an unknown category: all zeros, as scikit-learn does for a
category it did not see in training).

Usage::

    scorer = OnnxScorer.from_dir("fast_scorer")
    p = scorer.score({"amount": 1169, "sector": "retail"})
    ps = scorer.predict_default({"amount": [1169, None], "sector": ["farming", None]})
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

#: ONNX element types of the numeric inputs (``scorer.json`` ``numeric_tensor``).
NUMERIC_TENSORS: dict[str, type[np.floating[Any]]] = {"float": np.float32, "double": np.float64}
#: Input kinds of ``scorer.json``.
INPUT_KINDS = ("double", "string")


class OnnxScorer:
    """An ONNX fast scorer under onnxruntime (one intra-op and one inter-op thread, CPU).

    Args:
        onnx_model: the serialized ONNX model.
        inputs: ``{feature name: "double" | "string"}`` in signature order.
        numeric_tensor: element type of the numeric inputs in the graph (``float`` or ``double``).
        meta: the rest of ``scorer.json`` (``tolerance`` ...), kept as :attr:`meta`.

    Raises:
        ValueError: ``inputs`` not a mapping of names to kinds, an unknown input kind or numeric
            tensor type, ``model.onnx`` not a model onnxruntime loads, graph inputs other than
            ``inputs``, or an output that is not ``[N, 2]``.
    """

    def __init__(
        self,
        onnx_model: bytes,
        inputs: Mapping[str, str],
        numeric_tensor: str = "float",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(inputs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()
        ):
            raise ValueError(f"scorer inputs must map feature names to kinds, got {inputs!r:.200}")
        if not isinstance(numeric_tensor, str):
            raise ValueError(f"numeric_tensor must be a string, got {numeric_tensor!r:.100}")
        self.inputs: dict[str, str] = dict(inputs)
        bad = sorted(name for name, kind in self.inputs.items() if kind not in INPUT_KINDS)
        if bad:
            raise ValueError(f"scorer inputs of unknown kind (not {' or '.join(INPUT_KINDS)}): {bad}")
        if numeric_tensor not in NUMERIC_TENSORS:
            raise ValueError(f"numeric_tensor {numeric_tensor!r} is not one of {sorted(NUMERIC_TENSORS)}")
        self.meta: dict[str, Any] = dict(meta or {})
        self._numeric = NUMERIC_TENSORS[numeric_tensor]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail ...) derive from Exception
            raise ValueError(f"model.onnx is not a model onnxruntime loads: {exc}") from exc
        graph_inputs = {i.name for i in self._session.get_inputs()}
        if graph_inputs != set(self.inputs):
            raise ValueError(
                f"model.onnx inputs differ from the scorer's: only in the graph "
                f"{sorted(graph_inputs - set(self.inputs))}, only in the scorer "
                f"{sorted(set(self.inputs) - graph_inputs)}"
            )
        outputs = {o.name: o for o in self._session.get_outputs()}
        self._output = "probabilities" if "probabilities" in outputs else list(outputs)[-1]
        shape = outputs[self._output].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 2):
            raise ValueError(f"model.onnx output {self._output!r} has shape {shape}, expected [N, 2]")

    @classmethod
    def from_dir(cls, directory: str | Path) -> OnnxScorer:
        """Load ``model.onnx`` and ``scorer.json`` of a downloaded ``fast_scorer`` folder.

        Raises:
            OSError: a file is missing. ValueError / KeyError: ``scorer.json`` is not as described
                (not a JSON object, no ``inputs``, a field of the wrong type).
        """
        directory = Path(directory)
        meta = json.loads((directory / "scorer.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"scorer.json must be a JSON object, got {type(meta).__name__}")
        return cls(
            (directory / "model.onnx").read_bytes(),
            meta["inputs"],
            meta.get("numeric_tensor", "float"),
            meta,
        )

    @property
    def tolerance(self) -> float | None:
        """The recorded tolerance of |ONNX - scikit-learn| (``scorer.json`` ``tolerance``), if any.

        Raises:
            ValueError: a tolerance that is not a finite number >= 0 (``Infinity`` would make every
                fidelity check pass).
        """
        value = self.meta.get("tolerance")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"scorer.json tolerance must be a number, got {value!r:.100}")
        try:
            tolerance = float(value)
        except ValueError:
            raise ValueError(f"scorer.json tolerance must be a number, got {value!r:.100}") from None
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"scorer.json tolerance must be a finite number >= 0, got {value!r:.100}")
        return tolerance

    def check_signature(self, signature: Mapping[str, str]) -> None:
        """Check the scorer's inputs against a model signature ``{column: MLflow type name}``: the
        same names, ``string`` inputs exactly for ``string`` columns.

        Raises:
            ValueError: other names, or a kind that does not fit the column's type.
        """
        if set(self.inputs) != set(signature):
            raise ValueError("scorer.json inputs differ from the model signature")
        for name, kind in self.inputs.items():
            if (kind == "string") != (signature[name] == "string"):
                raise ValueError(
                    f"scorer.json input {name}: kind {kind} does not fit signature {signature[name]}"
                )

    def _column(self, values: Any, kind: str, n: int) -> np.ndarray:
        if kind == "double":
            if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
                return values.astype(self._numeric).reshape(n, 1)
            return np.array([np.nan if v is None else v for v in values], dtype=self._numeric).reshape(n, 1)
        column = np.empty((n, 1), dtype=object)
        column[:, 0] = ["" if v is None else str(v) for v in values]
        return column

    def predict_default(self, columns: Mapping[str, Any], n: int | None = None) -> np.ndarray:
        """P(default) (float64, shape ``[n]``) of rows given column-wise.

        Args:
            columns: ``{feature: values}`` (a sequence or numpy array of length ``n`` per feature,
                None for a missing value); a feature absent from ``columns`` is missing in every row.
            n: the number of rows (default: the length of the first column given).

        Raises:
            ValueError: a column of another length than ``n``; no column and no ``n``.
        """
        if n is None:
            if not columns:
                raise ValueError("no column given: pass n")
            n = len(next(iter(columns.values())))
        feed: dict[str, np.ndarray] = {}
        for name, kind in self.inputs.items():
            values = columns[name] if name in columns else [None] * n
            if len(values) != n:
                raise ValueError(f"column {name} has {len(values)} values, expected {n}")
            feed[name] = self._column(values, kind, n)
        return np.asarray(self._session.run([self._output], feed)[0][:, 1], dtype=np.float64)

    def score(self, row: Mapping[str, Any]) -> float:
        """P(default) of one applicant (a missing key counts as a missing value)."""
        return float(self.predict_default({name: [row.get(name)] for name in self.inputs}, 1)[0])

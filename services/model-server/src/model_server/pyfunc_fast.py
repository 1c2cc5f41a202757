"""The ONNX fast scorer as an MLflow pyfunc model: what ``mlflow models serve`` runs in the
benchmark, so MLflow's own scoring server is compared with the SAME scorer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from model_server.scorers import OnnxScorer
from model_server.signature import Column, columns_from_records


class FastScorerPyfunc(mlflow.pyfunc.PythonModel):
    """P(default) per row of a DataFrame, scored by :class:`~model_server.scorers.OnnxScorer`."""

    def load_context(self, context: Any) -> None:
        directory = Path(context.artifacts["fast_scorer"])
        inputs = json.loads((directory / "scorer.json").read_text())["inputs"]
        self.columns = [Column(n, k) for n, k in inputs.items()]
        self.scorer = OnnxScorer(directory, inputs)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        records = [
            {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
            for row in model_input.to_dict(orient="records")
        ]
        typed = columns_from_records(records, self.columns, "dataframe_records")
        return self.scorer.predict_default(typed, len(records)).tolist()


def save(fast_scorer_dir: Path, path: Path) -> Path:
    """Save the pyfunc model (artifact: the verified ``fast_scorer`` folder) to ``path``."""
    mlflow.pyfunc.save_model(
        str(path), python_model=FastScorerPyfunc(), artifacts={"fast_scorer": str(fast_scorer_dir)}
    )
    return path

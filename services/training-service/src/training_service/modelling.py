"""The scikit-learn pipelines: raw feature values in, probability of default out.

Model input contract (also the MLflow signature, :func:`training_service.tracking.model_signature`):

* numeric features (integers included) are ``double`` and optional: an integer feature that can
  be missing is declared double (MLflow's guidance for integer columns with missing values), so a
  null never fails schema enforcement; the frame column is ``float64`` with NaN for missing;
* categorical features are ``string`` and optional: the frame column is ``object`` holding ``str``
  or ``None``/NaN for missing.

Missing and unseen categories: ``OneHotEncoder(handle_unknown="ignore")`` encodes a missing
(None/NaN, treated as a category of its own when seen in training) or unknown category as all
zeros. Numeric missing values: median imputation for logistic regression and random forest;
histogram gradient boosting routes NaN natively (learned direction per split). The random forest
imputes rather than using scikit-learn's native NaN routing in trees so that the ONNX export
(skl2onnx ``Imputer``) reproduces it exactly.

Histogram gradient boosting uses one-hot encoded categoricals rather than its native categorical
splits: skl2onnx 1.20 ignores the categorical bitsets of ``HistGradientBoostingClassifier`` when
exporting (it would silently produce a wrong fast scorer), and one-hot inputs to trees score as
well on this data (docs/model-quality.md).

Thread use: :func:`limit_threads` sets ``OMP_NUM_THREADS=1`` unless set, before scikit-learn's
OpenMP code first runs; tree models fight for 2 cores otherwise (docs/design.md, "Measured facts").

Soft-voting ensemble: ``VotingClassifier(voting="soft", flatten_transform=False)`` over the three
pipelines (each with its own preprocessing), weights from the ``*_weight`` hyperparameters;
``flatten_transform=False`` because skl2onnx refuses the default (docs/model-quality.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training_service.spec import Algorithm, ParamValue, ensemble_members, estimator_params

Kind = Literal["double", "string"]


def limit_threads() -> None:
    """``OMP_NUM_THREADS=1`` (and OpenBLAS/MKL) unless the operator set them; threadpoolctl limit too."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(os.environ["OMP_NUM_THREADS"]))
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


@dataclass(frozen=True)
class FeatureSchema:
    """The model inputs: names and kinds, in pipeline order.

    Attributes:
        features: ``(name, kind)`` pairs, kind ``double`` or ``string``.
    """

    features: tuple[tuple[str, Kind], ...]

    @property
    def names(self) -> list[str]:
        """All input names in order."""
        return [n for n, _ in self.features]

    @property
    def numeric(self) -> list[str]:
        """Names of the ``double`` inputs."""
        return [n for n, k in self.features if k == "double"]

    @property
    def categorical(self) -> list[str]:
        """Names of the ``string`` inputs."""
        return [n for n, k in self.features if k == "string"]

    @classmethod
    def infer(cls, frame: pd.DataFrame, columns: Sequence[str]) -> FeatureSchema:
        """Kinds from the frame's dtypes: numeric or boolean -> double, anything else -> string."""
        features: list[tuple[str, Kind]] = []
        for name in columns:
            dtype = frame[name].dtype
            kind: Kind = (
                "double"
                if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
                else "string"
            )
            features.append((name, kind))
        return cls(tuple(features))

    def to_dict(self) -> dict[str, str]:
        """``{name: kind}`` in order (JSON friendly)."""
        return dict(self.features)


def to_model_input(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The frame's model inputs in the dtypes of the model input contract (see the module docstring).

    Numeric columns become float64 (NaN for missing, nullable integers included); categorical
    columns become object arrays of ``str`` with ``None`` for missing.
    """
    out: dict[str, Any] = {}
    for name, kind in schema.features:
        column = frame[name]
        if kind == "double":
            out[name] = pd.Series(
                pd.to_numeric(column, errors="raise").astype("float64").to_numpy(na_value=np.nan),
                index=frame.index,
            )
        else:
            values = column.astype(object).to_numpy()
            cleaned = [
                None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
                for v in values
            ]
            # dtype=object explicitly: pandas 3 would otherwise infer its ``str`` dtype
            out[name] = pd.Series(cleaned, index=frame.index, dtype=object)
    return pd.DataFrame(out, index=frame.index)


def build_pipeline(
    algorithm: Algorithm, hyperparameters: Mapping[str, ParamValue], schema: FeatureSchema, seed: int
) -> Any:
    """An unfitted pipeline for ``algorithm`` (a ``VotingClassifier`` of pipelines for the ensemble).

    Args:
        algorithm: the learning algorithm.
        hyperparameters: resolved hyperparameters (:func:`training_service.spec.validate_hyperparameters`).
        schema: the model inputs.
        seed: random state of the estimator.

    Returns:
        ``Pipeline([("prep", ColumnTransformer), ("model", estimator)])``; ``predict_proba(X)[:, 1]``
        is the probability of default (class 1 = bad).
    """
    if algorithm is Algorithm.SOFT_VOTING_ENSEMBLE:
        members = ensemble_members(hyperparameters)
        return VotingClassifier(
            [(m.value.lower(), build_pipeline(m, params, schema, seed)) for m, _, params in members],
            voting="soft",
            # an array: skl2onnx's converter calls ``weights.sum()``
            weights=np.array([w for _, w, _ in members], dtype=np.float64),
            flatten_transform=False,
        )
    params = estimator_params(algorithm, hyperparameters, seed)
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    if algorithm is Algorithm.LOGISTIC_REGRESSION:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        prep = ColumnTransformer(
            [("num", numeric, schema.numeric), ("cat", onehot, schema.categorical)],
            remainder="drop",
        )
        estimator: Any = LogisticRegression(solver="lbfgs", **params)
    elif algorithm is Algorithm.HIST_GRADIENT_BOOSTING:
        prep = ColumnTransformer(
            [("num", "passthrough", schema.numeric), ("cat", onehot, schema.categorical)],
            remainder="drop",
        )
        estimator = HistGradientBoostingClassifier(**params)
    elif algorithm is Algorithm.RANDOM_FOREST:
        prep = ColumnTransformer(
            [("num", SimpleImputer(strategy="median"), schema.numeric), ("cat", onehot, schema.categorical)],
            remainder="drop",
        )
        estimator = RandomForestClassifier(**params)
    else:  # pragma: no cover - exhaustive over the enum
        raise ValueError(f"unknown algorithm {algorithm}")
    return Pipeline([("prep", prep), ("model", estimator)])


def predict_default(pipeline: Pipeline, model_input: pd.DataFrame) -> np.ndarray:
    """Probability of default (class 1) per row, float64, shape ``(n,)``."""
    classes = list(pipeline.classes_)
    return np.asarray(pipeline.predict_proba(model_input)[:, classes.index(1)], dtype=np.float64)

"""p50 / p99 latency of one-row scoring: the ONNX fast scorer vs scikit-learn's predict_proba.

Trains each algorithm with its defaults on the German credit test fixture, then scores single rows
(dicts of raw values, as the model-server receives them) many times.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_fast_scorer.py [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer
from creditrisk_products import load_product
from creditrisk_testing.german_credit import REPO_ROOT, german_credit_frame
from training_service.modelling import predict_default, to_model_input
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import TrainingSpec, train


def _ms(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    frame = german_credit_frame()
    product = load_product(REPO_ROOT / "products" / "german_credit")
    for algorithm in Algorithm:
        spec = TrainingSpec.for_product(
            product, model=ModelSpec(algorithm), evaluation=EvaluationProtocol(cv_repeats=1), seed=7
        )
        outcome = train(frame, spec)
        assert outcome.fast_scorer is not None
        scorer = OnnxScorer(outcome.fast_scorer.onnx_model, outcome.schema.to_dict())
        x = to_model_input(frame, outcome.schema)
        rows = [
            {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in r.items()}
            for r in x.to_dict("records")
        ]
        onnx_times, sk_times = [], []
        for i in range(args.n):
            row = rows[i % len(rows)]
            start = time.perf_counter()
            scorer.score(row)
            onnx_times.append(time.perf_counter() - start)
        for i in range(min(args.n, 300)):
            one = pd.DataFrame([rows[i % len(rows)]]).astype({c: "float64" for c in outcome.schema.numeric})
            start = time.perf_counter()
            predict_default(outcome.pipeline, one)
            sk_times.append(time.perf_counter() - start)
        o50, o99 = _ms(onnx_times)
        s50, s99 = _ms(sk_times)
        print(
            f"{algorithm.value}: fast scorer p50 {o50:.3f} ms p99 {o99:.3f} ms; "
            f"sklearn predict_proba p50 {s50:.2f} ms p99 {s99:.2f} ms; "
            f"max |onnx - sklearn| over {outcome.fast_scorer.rows_checked} rows "
            f"{outcome.fast_scorer.max_abs_diff:.3g}"
        )


if __name__ == "__main__":
    main()

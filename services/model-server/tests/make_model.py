"""TEST FIXTURE: MLflow runs shaped exactly as the training-service logs them, made by the
training-service's own code in ITS environment (never imported by the model-server)::

    services/training-service/.venv/bin/python tests/make_model.py TRACKING_URI OUT_DIR

Logs two runs (German credit test frame, 2-fold CV, gate window 60 days):

* ``lr``: logistic regression, seed 7 (the scorecard model);
* ``hgb``: histogram gradient boosting (30 iterations), seed 11.

Writes ``OUT_DIR/rows.parquet`` (the model inputs of every German credit row, as the
training-service's ``to_model_input`` builds them) and prints ``{"lr": run_id, "hgb": run_id}`` as
JSON on the last line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from creditrisk_products import load_product
from creditrisk_testing.german_credit import REPO_ROOT, german_credit_frame
from training_service import tracking
from training_service.modelling import to_model_input
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import TrainingSpec, train


def main(uri: str, out_dir: Path) -> None:
    frame = german_credit_frame(42)
    protocol = EvaluationProtocol(cv_folds=2, cv_repeats=1, test_fraction=0.2, gate_window_days=60)
    german = load_product(REPO_ROOT / "products" / "german_credit")
    specs = {
        "lr": TrainingSpec.for_product(
            german, model=ModelSpec(Algorithm.LOGISTIC_REGRESSION), evaluation=protocol, seed=7
        ),
        "hgb": TrainingSpec.for_product(
            german,
            model=ModelSpec(Algorithm.HIST_GRADIENT_BOOSTING, {"max_iter": 30}),
            evaluation=protocol,
            seed=11,
        ),
    }
    out: dict[str, str] = {}
    schema = None
    for name, spec in specs.items():
        outcome = train(frame, spec)
        schema = outcome.schema
        logged = tracking.log_training_run(
            outcome,
            tracking_uri=uri,
            experiment_name="model-server-tests",
            feature_service="credit_risk_v1",
            feature_service_version="1",
            run_name=name,
        )
        out[name] = logged.run_id
    assert schema is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    to_model_input(frame, schema).to_parquet(out_dir / "rows.parquet", index=False)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

"""TEST FIXTURE: MLflow runs shaped exactly as the training-service logs them, made by the
training-service's own code in ITS environment (never imported by the gateway)::

    services/training-service/.venv/bin/python tests/make_runs.py URI [URI ...]

prints ``{uri: {fixture: run_id}}`` as JSON on the last line. Fixtures (German credit test frame,
gate window 60 days, 2-fold CV):

* ``good``: logistic regression, seed 7 (the platform's scorecard model);
* ``equal``: the same spec and seed: identical scores, so delta AUC = 0 exactly;
* ``noise``: gradient boosting trained on permuted labels: no signal (AUC ~0.5 on the window);
* ``mismatch``: the good model logged with the noise model's ONNX fast scorer (fidelity fails).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from creditrisk_products import load_product
from creditrisk_testing.german_credit import REPO_ROOT, german_credit_frame
from training_service import tracking
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import TrainingSpec, train


def main(uris: list[str]) -> None:
    frame = german_credit_frame(42)
    german = load_product(REPO_ROOT / "products" / "german_credit")
    protocol = EvaluationProtocol(cv_folds=2, cv_repeats=1, test_fraction=0.2, gate_window_days=60)
    good_spec = TrainingSpec.for_product(
        german, model=ModelSpec(Algorithm.LOGISTIC_REGRESSION), evaluation=protocol, seed=7
    )
    good = train(frame, good_spec)
    equal = train(frame, good_spec)
    noisy = frame.copy()
    noisy["creditability"] = np.random.default_rng(3).permutation(noisy["creditability"].to_numpy())
    noise = train(
        noisy,
        TrainingSpec.for_product(
            german,
            model=ModelSpec(Algorithm.HIST_GRADIENT_BOOSTING, {"max_iter": 30}),
            evaluation=protocol,
            seed=11,
        ),
    )
    mismatch = dataclasses.replace(good, fast_scorer=noise.fast_scorer)
    out: dict[str, dict[str, str]] = {}
    for uri in uris:
        out[uri] = {}
        for name, outcome in (("good", good), ("equal", equal), ("noise", noise), ("mismatch", mismatch)):
            logged = tracking.log_training_run(
                outcome,
                tracking_uri=uri,
                experiment_name="registry-gateway-tests",
                feature_service="credit_risk_v1",
                feature_service_version="1",
                run_name=name,
            )
            out[uri][name] = logged.run_id
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])

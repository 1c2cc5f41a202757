"""Model quality on the German credit data with the default feature policy.

1. Repeated stratified K-fold CV (default 5 x 5) of each algorithm with its default hyperparameters:
   mean and std of ROC AUC over the folds.
2. Nested CV of the best configuration: outer repeated stratified K-fold; in each outer training
   part an inner stratified K-fold grid search picks the configuration (mean inner ROC AUC), which
   is refit on the outer training part and scored on the outer validation fold. The outer scores
   estimate "the best configuration" honestly (a search tuned and scored on the same folds does not
   count). With ``--tracking-uri`` each outer fold is an MLflow child run of one parent run.
   Outer folds run in parallel (``--jobs``, default 2 processes, one thread each); the folds, the
   inner seeds and hence the figures do not depend on ``--jobs``.
3. The same for ``SOFT_VOTING_ENSEMBLE``: a soft vote (weighted mean of P(default)) of the three
   pipelines (logistic regression scorecard, histogram gradient boosting, random forest). Defaults:
   every member at its platform defaults, equal weights. Nested CV: the SAME outer folds and inner
   seeds; the inner grid (``ENSEMBLE_GRID``: voting weights x one key parameter per member) is
   searched on the inner folds only. Each member configuration is fitted once per inner fold and
   the weightings are applied to its inner-validation probabilities, which is exactly what
   ``VotingClassifier(voting="soft")`` computes (members are fitted independently); the chosen
   configuration is refit as a ``VotingClassifier`` on the outer training part.

Data: the German credit test fixture (``creditrisk_testing.german_credit``), which
reproduces the feature-service's derivation; all 1,000 labelled rows (no gate window, no test
split: this is a study of the algorithms, not a training job).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/quality.py [--repeats 5] [--tracking-uri http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from creditrisk_products import load_product
from creditrisk_testing.german_credit import REPO_ROOT, german_credit_frame
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import StratifiedKFold
from training_service import evaluation as ev
from training_service.modelling import (
    FeatureSchema,
    build_pipeline,
    limit_threads,
    predict_default,
    to_model_input,
)
from training_service.policy import FeaturePolicy
from training_service.spec import Algorithm, ModelSpec
from training_service.training import cross_validated_auc

#: The German credit product's default feature policy (its protected attributes excluded).
POLICY = FeaturePolicy.default(load_product(REPO_ROOT / "products" / "german_credit"))
LABEL = POLICY.columns.label

GRIDS: dict[Algorithm, dict[str, list[Any]]] = {
    Algorithm.LOGISTIC_REGRESSION: {"C": [0.01, 0.03, 0.1, 0.3, 1.0], "class_weight": ["none"]},
    Algorithm.HIST_GRADIENT_BOOSTING: {
        "learning_rate": [0.03, 0.1],
        "max_leaf_nodes": [4, 8],
        "max_iter": [100, 300],
        "l2_regularization": [1.0],
        "max_features": [0.3, 1.0],
    },
    Algorithm.RANDOM_FOREST: {
        "n_estimators": [500],
        "max_features": [0.1, 0.2, 0.33],
        "min_samples_leaf": [1, 3, 5],
    },
}


ENSEMBLE = Algorithm.SOFT_VOTING_ENSEMBLE.value
MEMBERS = (Algorithm.LOGISTIC_REGRESSION, Algorithm.HIST_GRADIENT_BOOSTING, Algorithm.RANDOM_FOREST)
#: Fixed before the ensemble's nested run: weights (lr, hgb, rf) x one key parameter per member
#: ("<ALGORITHM>.<name>"); other member parameters at their platform defaults. 32 configurations.
ENSEMBLE_GRID: dict[str, list[Any]] = {
    "weights": [(1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 1, 2)],
    "LOGISTIC_REGRESSION.C": [0.1, 1.0],
    "HIST_GRADIENT_BOOSTING.max_features": [0.3, 1.0],
    "RANDOM_FOREST.min_samples_leaf": [3, 5],
}


def _member_params(config: dict[str, Any], member: Algorithm) -> dict[str, Any]:
    prefix = member.value + "."
    return {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}


def build_vote(config: dict[str, Any], schema: FeatureSchema, seed: int) -> VotingClassifier:
    """The soft vote of the three member pipelines for one ``ENSEMBLE_GRID`` configuration."""
    members = [
        (m.value.lower(), build_pipeline(m, ModelSpec(m, _member_params(config, m)).resolved(), schema, seed))
        for m in MEMBERS
    ]
    return VotingClassifier(
        members, voting="soft", weights=list(config.get("weights", (1, 1, 1))), flatten_transform=False
    )


def ensemble_default_cv(frame: Any, *, folds: int, repeats: int, seed: int) -> np.ndarray:
    """ROC AUC per fold of the default vote (members at defaults, equal weights), same folds as
    :func:`training_service.training.cross_validated_auc`."""
    limit_threads()
    schema = FeatureSchema.infer(frame, POLICY.model_inputs(frame.columns))
    x = to_model_input(frame, schema)
    y = frame[LABEL].astype(np.int64).to_numpy()
    template = build_vote({}, schema, seed)
    scores = []
    for _, _, fit, val in ev.cv_splits(y, folds, repeats, seed):
        fitted = clone(template).fit(x.iloc[fit], y[fit])
        scores.append(ev.binary_metrics(y[val], predict_default(fitted, x.iloc[val]))["roc_auc"])
    return np.array(scores)


def ensemble_nested_cv(
    frame: Any,
    *,
    outer_folds: int,
    outer_repeats: int,
    inner_folds: int,
    seed: int,
    jobs: int = 1,
    tracking: Any = None,
) -> dict[str, Any]:
    """:func:`nested_cv` for the soft vote: same outer folds and inner seeds, ``ENSEMBLE_GRID``."""
    policy = POLICY
    schema = FeatureSchema.infer(frame, policy.model_inputs(frame.columns))
    x = to_model_input(frame, schema)
    y = frame[LABEL].astype(np.int64).to_numpy()
    configs = _configs(ENSEMBLE_GRID)
    member_keys = {m: [k for k in ENSEMBLE_GRID if k.startswith(m.value + ".")] for m in MEMBERS}

    def member_setting(config: dict[str, Any], m: Algorithm) -> tuple[Any, ...]:
        return tuple(config[k] for k in member_keys[m])

    Outcome = tuple[int, int, dict[str, Any], float, float]

    def one_outer_fold(repeat: int, fold: int, fit: Any, val: Any) -> Outcome:
        limit_threads()
        inner = StratifiedKFold(
            n_splits=inner_folds, shuffle=True, random_state=seed + 1000 + repeat * 100 + fold
        )
        splits = list(inner.split(np.zeros(len(fit)), y[fit]))
        # P(default) on each inner validation part, per member and member setting
        probs: dict[tuple[Algorithm, tuple[Any, ...]], list[np.ndarray]] = {}
        for m in MEMBERS:
            for setting in {member_setting(c, m) for c in configs}:
                names = [k[len(m.value) + 1 :] for k in member_keys[m]]
                params = ModelSpec(m, dict(zip(names, setting, strict=True))).resolved()
                template = build_pipeline(m, params, schema, seed)
                probs[(m, setting)] = [
                    predict_default(clone(template).fit(x.iloc[fit[ifit]], y[fit[ifit]]), x.iloc[fit[ival]])
                    for ifit, ival in splits
                ]
        best, best_auc = configs[0], -1.0
        for config in configs:
            weights = np.asarray(config["weights"], dtype=np.float64)
            aucs = []
            for i, (_, ival) in enumerate(splits):
                stacked = np.stack([probs[(m, member_setting(config, m))][i] for m in MEMBERS])
                vote = np.average(stacked, axis=0, weights=weights)
                aucs.append(ev.binary_metrics(y[fit[ival]], vote)["roc_auc"])
            if np.mean(aucs) > best_auc:
                best, best_auc = config, float(np.mean(aucs))
        model = build_vote(best, schema, seed).fit(x.iloc[fit], y[fit])
        auc = ev.binary_metrics(y[val], predict_default(model, x.iloc[val]))["roc_auc"]
        return repeat, fold, best, best_auc, auc

    results = Parallel(n_jobs=jobs)(
        delayed(one_outer_fold)(*split) for split in ev.cv_splits(y, outer_folds, outer_repeats, seed)
    )
    outer: list[float] = []
    chosen: list[dict[str, Any]] = []
    inner_best: list[float] = []
    for repeat, fold, best, best_auc, auc in results:
        outer.append(auc)
        chosen.append(best)
        inner_best.append(best_auc)
        if tracking is not None:
            with tracking.start_run(run_name=f"{ENSEMBLE.lower()}-outer-r{repeat}-f{fold}", nested=True):
                tracking.log_params(
                    {f"hp.{k}": str(v) for k, v in best.items()} | {"repeat": repeat, "fold": fold}
                )
                tracking.log_metrics({"inner_cv_roc_auc": best_auc, "outer_roc_auc": auc})
    return {"outer_auc": outer, "chosen": chosen, "inner_best_auc": inner_best, "grid_size": len(configs)}


def _configs(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def nested_cv(
    frame: Any,
    algorithm: Algorithm,
    *,
    outer_folds: int,
    outer_repeats: int,
    inner_folds: int,
    seed: int,
    jobs: int = 1,
    tracking: Any = None,
) -> dict[str, Any]:
    """Outer ROC AUC per fold with the configuration chosen by the inner search."""
    policy = POLICY
    schema = FeatureSchema.infer(frame, policy.model_inputs(frame.columns))
    x = to_model_input(frame, schema)
    y = frame[LABEL].astype(np.int64).to_numpy()
    configs = _configs(GRIDS[algorithm])

    Outcome = tuple[int, int, dict[str, Any], float, float]

    def one_outer_fold(repeat: int, fold: int, fit: Any, val: Any) -> Outcome:
        limit_threads()
        inner = StratifiedKFold(
            n_splits=inner_folds, shuffle=True, random_state=seed + 1000 + repeat * 100 + fold
        )
        best, best_auc = configs[0], -1.0
        for config in configs:
            params = ModelSpec(algorithm, config).resolved()
            template = build_pipeline(algorithm, params, schema, seed)
            aucs = []
            for ifit, ival in inner.split(np.zeros(len(fit)), y[fit]):
                model = clone(template).fit(x.iloc[fit[ifit]], y[fit[ifit]])
                aucs.append(
                    ev.binary_metrics(y[fit[ival]], predict_default(model, x.iloc[fit[ival]]))["roc_auc"]
                )
            if np.mean(aucs) > best_auc:
                best, best_auc = config, float(np.mean(aucs))
        params = ModelSpec(algorithm, best).resolved()
        model = build_pipeline(algorithm, params, schema, seed).fit(x.iloc[fit], y[fit])
        auc = ev.binary_metrics(y[val], predict_default(model, x.iloc[val]))["roc_auc"]
        return repeat, fold, best, best_auc, auc

    # outer folds in parallel (one process per core, one thread each); logged in order afterwards
    results = Parallel(n_jobs=jobs)(
        delayed(one_outer_fold)(*split) for split in ev.cv_splits(y, outer_folds, outer_repeats, seed)
    )
    outer: list[float] = []
    chosen: list[dict[str, Any]] = []
    for repeat, fold, best, best_auc, auc in results:
        outer.append(auc)
        chosen.append(best)
        if tracking is not None:
            with tracking.start_run(
                run_name=f"{algorithm.value.lower()}-outer-r{repeat}-f{fold}", nested=True
            ):
                tracking.log_params(
                    {f"hp.{k}": v for k, v in best.items()} | {"repeat": repeat, "fold": fold}
                )
                tracking.log_metrics({"inner_cv_roc_auc": best_auc, "outer_roc_auc": auc})
    return {"outer_auc": outer, "chosen": chosen, "grid_size": len(configs)}


def run_ensemble(frame: Any, args: Any, tracking: Any) -> dict[str, Any]:
    """Defaults CV and nested CV of the soft vote (printed; the JSON entry)."""
    start = time.monotonic()
    aucs = ensemble_default_cv(frame, folds=args.folds, repeats=args.repeats, seed=args.seed)
    default = {
        "mean": float(aucs.mean()),
        "std": float(aucs.std(ddof=1)),
        "folds": len(aucs),
        "seconds": time.monotonic() - start,
    }
    print(
        f"{ENSEMBLE} defaults: ROC AUC {default['mean']:.4f} +- {default['std']:.4f} "
        f"({args.folds}x{args.repeats} CV, {default['seconds']:.0f} s)",
        flush=True,
    )
    start = time.monotonic()
    kwargs = dict(
        outer_folds=args.folds,
        outer_repeats=args.outer_repeats,
        inner_folds=args.inner_folds,
        seed=args.seed,
        jobs=args.jobs,
    )
    if tracking is not None:
        with tracking.start_run(run_name=f"nested-cv-{ENSEMBLE.lower()}") as parent:
            tracking.log_params(
                {
                    "algorithm": ENSEMBLE,
                    "grid": json.dumps(ENSEMBLE_GRID),
                    "outer": f"{args.folds}x{args.outer_repeats}",
                    "inner": args.inner_folds,
                }
            )
            nested = ensemble_nested_cv(frame, tracking=tracking, **kwargs)
            tracking.log_metrics(
                {
                    "nested_roc_auc_mean": float(np.mean(nested["outer_auc"])),
                    "nested_roc_auc_std": float(np.std(nested["outer_auc"], ddof=1)),
                    "default_cv_roc_auc_mean": default["mean"],
                }
            )
            nested["parent_run_id"] = parent.info.run_id
    else:
        nested = ensemble_nested_cv(frame, **kwargs)
    outer = np.array(nested["outer_auc"])
    summary = {
        "mean": float(outer.mean()),
        "std": float(outer.std(ddof=1)),
        "folds": len(outer),
        "outer_auc": nested["outer_auc"],
        "inner_best_auc": nested["inner_best_auc"],
        "grid_size": nested["grid_size"],
        "chosen": nested["chosen"],
        "seconds": time.monotonic() - start,
        "parent_run_id": nested.get("parent_run_id"),
    }
    print(
        f"{ENSEMBLE} nested CV (outer {args.folds}x{args.outer_repeats}, inner {args.inner_folds}-fold "
        f"grid of {nested['grid_size']}): ROC AUC {summary['mean']:.4f} +- {summary['std']:.4f} "
        f"({summary['seconds']:.0f} s)",
        flush=True,
    )
    for auc, config in zip(nested["outer_auc"], nested["chosen"], strict=True):
        print(f"  outer {auc:.4f} <- {config}", flush=True)
    return {"defaults": default, "nested": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--outer-repeats", type=int, default=2)
    parser.add_argument("--inner-folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel outer folds")
    # Algorithm includes SOFT_VOTING_ENSEMBLE (== ENSEMBLE), run by run_ensemble
    parser.add_argument("--algorithms", default=",".join(a.value for a in Algorithm))
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    frame = german_credit_frame(seed=42)
    tracking = None
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
        mlflow.set_experiment("training-service-quality")
        tracking = mlflow
    results: dict[str, Any] = {
        "conditions": {
            "folds": args.folds,
            "repeats": args.repeats,
            "outer_repeats": args.outer_repeats,
            "inner_folds": args.inner_folds,
            "seed": args.seed,
            "rows": len(frame),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "jobs": args.jobs,
            "load_average_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d"),
        }
    }
    for name in args.algorithms.split(","):
        if name == ENSEMBLE:
            results[ENSEMBLE] = run_ensemble(frame, args, tracking)
            continue
        algorithm = Algorithm(name)
        start = time.monotonic()
        aucs = cross_validated_auc(
            frame, ModelSpec(algorithm), folds=args.folds, repeats=args.repeats, seed=args.seed, policy=POLICY
        )
        default = {
            "mean": float(aucs.mean()),
            "std": float(aucs.std(ddof=1)),
            "folds": len(aucs),
            "seconds": time.monotonic() - start,
        }
        print(
            f"{algorithm.value} defaults: ROC AUC {default['mean']:.4f} +- {default['std']:.4f} "
            f"({args.folds}x{args.repeats} CV, {default['seconds']:.0f} s)",
            flush=True,
        )
        start = time.monotonic()
        if tracking is not None:
            with tracking.start_run(run_name=f"nested-cv-{algorithm.value.lower()}") as parent:
                tracking.log_params(
                    {
                        "algorithm": algorithm.value,
                        "grid": json.dumps(GRIDS[algorithm]),
                        "outer": f"{args.folds}x{args.outer_repeats}",
                        "inner": args.inner_folds,
                    }
                )
                nested = nested_cv(
                    frame,
                    algorithm,
                    outer_folds=args.folds,
                    outer_repeats=args.outer_repeats,
                    inner_folds=args.inner_folds,
                    seed=args.seed,
                    jobs=args.jobs,
                    tracking=tracking,
                )
                tracking.log_metrics(
                    {
                        "nested_roc_auc_mean": float(np.mean(nested["outer_auc"])),
                        "nested_roc_auc_std": float(np.std(nested["outer_auc"], ddof=1)),
                        "default_cv_roc_auc_mean": default["mean"],
                    }
                )
                nested["parent_run_id"] = parent.info.run_id
        else:
            nested = nested_cv(
                frame,
                algorithm,
                outer_folds=args.folds,
                outer_repeats=args.outer_repeats,
                inner_folds=args.inner_folds,
                seed=args.seed,
                jobs=args.jobs,
            )
        outer = np.array(nested["outer_auc"])
        nested_summary = {
            "mean": float(outer.mean()),
            "std": float(outer.std(ddof=1)),
            "folds": len(outer),
            "grid_size": nested["grid_size"],
            "chosen": nested["chosen"],
            "seconds": time.monotonic() - start,
            "parent_run_id": nested.get("parent_run_id"),
        }
        print(
            f"{algorithm.value} nested CV (outer {args.folds}x{args.outer_repeats}, "
            f"inner {args.inner_folds}-fold grid of {nested['grid_size']}): "
            f"ROC AUC {nested_summary['mean']:.4f} +- {nested_summary['std']:.4f} "
            f"({nested_summary['seconds']:.0f} s)",
            flush=True,
        )
        results[algorithm.value] = {"defaults": default, "nested": nested_summary}
    results["conditions"]["load_average_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()

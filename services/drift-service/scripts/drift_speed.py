"""Speed of the drift computation against Evidently called directly, side by side in one run.

Reference: the 1,000 German credit applicants (20 attributes + ``probability_of_default``: 21
columns). Current: 10,000 and 100,000 rows drawn with replacement from them (seeded). For each
size, interleaved ``--repeats`` times, the median wall time of:

* ``service``: ``drift_service.drift.compute_drift`` (normalisation, data quality, one Evidently
  report of ``ValueDrift`` per column, statistics, PSI, Holm) - what ComputeDrift does after
  reading the window, without the HTML file;
* ``evidently_valuedrift``: Evidently alone on the same frames: ``Report([ValueDrift(column=c,
  method=<same test>) ...]).run(Dataset.from_pandas(...), ...)`` - the like-for-like baseline;
* ``evidently_preset``: Evidently's ``DataDriftPreset(num_method="ks", cat_method="chisquare")``;
* ``html``: writing the service's Evidently HTML report (separately).

Overhead = service / evidently_valuedrift (target <= 1.2x).

    cd services/drift-service && uv run python scripts/drift_speed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from drift_service.domain import FeatureKind
from drift_service.drift import P_VALUE_TESTS, DriftConfig, _evidently, compute_drift, warm_up

# The German test frames and product (tests/german_frames.py), shared with the suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from german_frames import KINDS as GERMAN_CREDIT_FEATURE_KINDS
from german_frames import load_german_credit

SCORE = "probability_of_default"


def evidently_valuedrift(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> None:
    ev = _evidently()
    kinds = GERMAN_CREDIT_FEATURE_KINDS
    numeric = [c for c, k in kinds.items() if k is FeatureKind.NUMERIC] + [SCORE]
    categorical = [c for c, k in kinds.items() if k is FeatureKind.CATEGORICAL]
    definition = ev.DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    metrics = [
        ev.metrics.ValueDrift(
            column=c, method=config.num_method if c in numeric else config.cat_method, threshold=0.05
        )
        for c in numeric + categorical
    ]
    cur = ev.Dataset.from_pandas(current[numeric + categorical], data_definition=definition)
    ref = ev.Dataset.from_pandas(reference[numeric + categorical], data_definition=definition)
    ev.Report(metrics).run(cur, ref).dict()


def evidently_preset(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    ev = _evidently()
    from evidently.presets import DataDriftPreset

    kinds = GERMAN_CREDIT_FEATURE_KINDS
    numeric = [c for c, k in kinds.items() if k is FeatureKind.NUMERIC] + [SCORE]
    categorical = [c for c, k in kinds.items() if k is FeatureKind.CATEGORICAL]
    definition = ev.DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    cur = ev.Dataset.from_pandas(current[numeric + categorical], data_definition=definition)
    ref = ev.Dataset.from_pandas(reference[numeric + categorical], data_definition=definition)
    ev.Report([DataDriftPreset(num_method="ks", cat_method="chisquare")]).run(cur, ref).dict()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json")
    args = parser.parse_args()
    warm_up()
    config = DriftConfig()
    assert config.num_method in P_VALUE_TESTS
    data = load_german_credit()
    reference = data[[*GERMAN_CREDIT_FEATURE_KINDS, SCORE]]
    compute_drift(
        reference, reference.sample(2000, replace=True, random_state=0), GERMAN_CREDIT_FEATURE_KINDS
    )  # warm
    results = {}
    for size in args.sizes:
        current = reference.sample(size, replace=True, random_state=args.seed).reset_index(drop=True)
        times: dict[str, list[float]] = {
            "service": [],
            "evidently_valuedrift": [],
            "evidently_preset": [],
            "html": [],
        }
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = compute_drift(reference, current, GERMAN_CREDIT_FEATURE_KINDS, config)
            times["service"].append(time.perf_counter() - t)
            t = time.perf_counter()
            evidently_valuedrift(reference, current, config)
            times["evidently_valuedrift"].append(time.perf_counter() - t)
            t = time.perf_counter()
            evidently_preset(reference, current)
            times["evidently_preset"].append(time.perf_counter() - t)
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                result.save_html(Path(tmp) / "r.html")
                times["html"].append(time.perf_counter() - t)
        medians = {k: statistics.median(v) for k, v in times.items()}
        results[str(size)] = {
            "median_s": medians,
            "all_s": times,
            "overhead_vs_valuedrift": medians["service"] / medians["evidently_valuedrift"],
            "overhead_vs_preset": medians["service"] / medians["evidently_preset"],
        }
        print(f"{size} rows: {json.dumps(results[str(size)]['median_s'])}", file=sys.stderr)
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "reference_rows": len(reference),
        "columns": reference.shape[1],
        "seed": args.seed,
        "repeats": args.repeats,
        "results": results,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if all(r["overhead_vs_valuedrift"] <= 1.2 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

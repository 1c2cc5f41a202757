"""Quality study of the dataset drift rule on the German credit data (issue 6).

For each of ``--splits`` seeded splits of the 1,000 applicants into a reference half and a current
half (stratified by ``creditability``), every ``--window``-row window of the shuffled current half
(drawn without replacement; 2 windows of 200 per half) is compared with the reference:

* as is -> a dataset drift verdict is a **false alarm** (target <= 5%);
* with the injected shift (credit_amount x 1.5, age + 10 years, 30% of purposes -> business)
  -> a verdict is a **detection** (target >= 95%).

The verdict is the service's own computation (``drift_service.drift.compute_drift``: Evidently 0.7
``ValueDrift`` per column, Holm at alpha 0.05). For comparison, from the same per-column p-values:
Benjamini-Hochberg, no correction ("any column p < 0.05"), and with ``--evidently-defaults`` the
dataset rule of Evidently 0.7.23's ``DataDriftPreset()`` defaults (drift share >= 0.5 with its
automatic tests). Rates carry Wilson 95% intervals.

    cd services/drift-service && uv run python scripts/drift_quality.py --splits 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from drift_service.decision import decide
from drift_service.domain import FeatureStatus
from drift_service.drift import P_VALUE_TESTS, DriftConfig, _evidently, compute_drift, warm_up

# The German test frames and product (tests/german_frames.py), shared with the suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from german_frames import KINDS as GERMAN_CREDIT_FEATURE_KINDS
from german_frames import load_german_credit, shift, stratified_split, windows


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdicts(result, alpha: float) -> dict[str, bool]:
    """The dataset verdict under several rules, from one computation's per-column p-values."""
    computed = [
        f for f in result.features if f.status is FeatureStatus.COMPUTED and f.test_name in P_VALUE_TESTS
    ]
    ps = [f.p_value if f.p_value is not None else 1.0 for f in computed]
    unseen = any(f.unseen_category_count > 0 for f in computed)
    return {
        "holm": result.dataset_drift,
        "bh": decide(ps, alpha, "bh").any or unseen,
        "uncorrected_any": any(p < alpha for p in ps) or unseen,
    }


def evidently_default(reference, current, columns) -> bool:
    ev = _evidently()
    from evidently.presets import DataDriftPreset

    snapshot = ev.Report([DataDriftPreset(columns=columns)]).run(current[columns], reference[columns])
    for item in snapshot.dict()["metrics"]:
        if item["config"]["type"].endswith("DriftedColumnsCount"):
            return item["value"]["share"] >= 0.5
    raise RuntimeError("no DriftedColumnsCount in the preset's result")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--splits", type=int, default=50)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument(
        "--seed", type=int, default=0, help="first split seed; splits use seed .. seed+splits-1"
    )
    parser.add_argument(
        "--evidently-defaults", action="store_true", help="also run DataDriftPreset() defaults"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    started = time.perf_counter()
    warm_up()
    import_s = time.perf_counter() - started
    config = DriftConfig()
    kinds = GERMAN_CREDIT_FEATURE_KINDS
    columns = sorted(kinds)
    data = load_german_credit()
    counts: dict[str, dict[str, int]] = {"null": {}, "shift": {}}
    fired_columns: dict[str, int] = {}
    n = 0
    t0 = time.perf_counter()
    for seed in range(args.seed, args.seed + args.splits):
        reference, current = stratified_split(data, seed)
        for i, window in enumerate(windows(current, args.window)):
            n += 1
            shifted = shift(window, seed * 1000 + i)
            for name, frame in (("null", window), ("shift", shifted)):
                result = compute_drift(reference, frame, kinds, config)
                v = verdicts(result, config.alpha)
                if args.evidently_defaults:
                    v["evidently_default"] = evidently_default(reference, frame, columns)
                for rule, fired in v.items():
                    counts[name][rule] = counts[name].get(rule, 0) + int(fired)
                if name == "null":
                    for f in result.features:
                        if f.drifted:
                            fired_columns[f.feature] = fired_columns.get(f.feature, 0) + 1
        print(f"split {seed}: {n} windows, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    elapsed = time.perf_counter() - t0

    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "splits": args.splits,
        "seeds": f"{args.seed}..{args.seed + args.splits - 1}",
        "window_rows": args.window,
        "windows": n,
        "alpha": config.alpha,
        "rules": {},
        "false_alarm_columns": dict(sorted(fired_columns.items(), key=lambda kv: -kv[1])),
        "seconds_per_window": elapsed / (2 * n),
        "evidently_import_s": import_s,
    }
    for rule in counts["null"]:
        fa, det = counts["null"][rule], counts["shift"][rule]
        figures["rules"][rule] = {
            "false_alarms": fa,
            "false_alarm_rate": fa / n,
            "false_alarm_ci95": wilson(fa, n),
            "detections": det,
            "detection_rate": det / n,
            "detection_ci95": wilson(det, n),
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    holm = figures["rules"]["holm"]
    return 0 if holm["false_alarm_rate"] <= 0.05 and holm["detection_rate"] >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())

"""A smaller version of the quality study (``scripts/drift_quality.py``) in the suite.

6 seeded stratified splits (seeds 100-105) of the German credit data into a reference half and a
current half; every 200-row window of each shuffled current half (2 per half, drawn without
replacement) -> n = 12 windows, each compared as is and with the injected shift (credit_amount x
1.5, age + 10 years, 30% of purposes -> business).

Thresholds: the study's targets (false alarm rate <= 5%, detection rate >= 95%) widened only by
the binomial error of the smaller count, n = 12, at two standard errors of a proportion at the
target: 2 * sqrt(0.05 * 0.95 / 12) = 0.126. So false alarms <= 0.05 + 0.126 = 17.6% (at most 2 of
12) and detections >= 0.95 - 0.126 = 82.4% (at least 10 of 12).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from drift_service.drift import compute_drift
from german_frames import KINDS as GERMAN_CREDIT_FEATURE_KINDS
from german_frames import shift, stratified_split, windows

pytestmark = pytest.mark.usefixtures("evidently_loaded")

TARGET_FALSE_ALARM = 0.05
TARGET_DETECTION = 0.95


@pytest.mark.slow  # a statistical run: many replays
def test_false_alarm_and_detection_rates(german: pd.DataFrame) -> None:
    false_alarms = detections = n = 0
    for seed in range(100, 106):
        reference, current = stratified_split(german, seed)
        for i, window in enumerate(windows(current, 200)):
            n += 1
            false_alarms += compute_drift(reference, window, GERMAN_CREDIT_FEATURE_KINDS).dataset_drift
            detections += compute_drift(
                reference, shift(window, seed * 1000 + i), GERMAN_CREDIT_FEATURE_KINDS
            ).dataset_drift
    assert n == 12
    widening = 2 * math.sqrt(TARGET_FALSE_ALARM * (1 - TARGET_FALSE_ALARM) / n)
    assert false_alarms / n <= TARGET_FALSE_ALARM + widening, f"{false_alarms} false alarms of {n}"
    assert detections / n >= TARGET_DETECTION - widening, f"{detections} detections of {n}"

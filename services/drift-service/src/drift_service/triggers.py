"""The retraining policy: turns a window's drift (and performance) report into a trigger event.

A trigger fires for one model version's window when at least one enabled rule holds, and never on
a report with status INSUFFICIENT_DATA or fewer than ``min_rows`` current rows:

* ``dataset_drift``: the report's dataset verdict (our Holm / BH rule); figure = drift share.
* ``psi_threshold``: a characteristic's PSI above it (default 0.25, the "shifted" band of
  Siddiqi 2006); figure = that PSI, one reason per characteristic.
* ``auc_drop``: the reference AUC (the model on its reference data, or the configured one) minus
  the window's ROC AUC above this margin (default 0.05), on a performance report with status OK.
"""

from __future__ import annotations

from dataclasses import dataclass

from drift_service.domain import (
    DriftReport,
    FeatureStatus,
    PerformanceReport,
    PolicyKind,
    ReportStatus,
    TriggerReason,
)


@dataclass(frozen=True)
class TriggerPolicy:
    """Which rules fire a trigger (None disables a threshold rule)."""

    dataset_drift: bool = True
    psi_threshold: float | None = 0.25
    auc_drop: float | None = 0.05
    min_rows: int = 100


def evaluate(
    policy: TriggerPolicy,
    drift: DriftReport,
    performance: PerformanceReport | None = None,
    reference_auc: float | None = None,
) -> list[TriggerReason]:
    """The reasons the policy fires on one version's window; empty when it does not."""
    reasons: list[TriggerReason] = []
    drift_ok = drift.status is ReportStatus.OK and drift.current_row_count >= policy.min_rows
    if drift_ok and policy.dataset_drift and drift.dataset_drift:
        drifted = [f.feature for f in drift.features if f.drifted]
        reasons.append(
            TriggerReason(
                kind=PolicyKind.DATASET_DRIFT,
                figure=drift.drift_share,
                threshold=0.0,
                message=f"dataset drift: {len(drifted)} column(s) significant after the adjustment "
                f"({', '.join(drifted)}); drift share {drift.drift_share:.3f}",
            )
        )
    if drift_ok and policy.psi_threshold is not None:
        for f in drift.features:
            if f.status is FeatureStatus.COMPUTED and f.psi is not None and f.psi > policy.psi_threshold:
                reasons.append(
                    TriggerReason(
                        kind=PolicyKind.PSI,
                        feature=f.feature,
                        figure=f.psi,
                        threshold=policy.psi_threshold,
                        message=f"PSI of {f.feature} is {f.psi:.3f} > {policy.psi_threshold:g}",
                    )
                )
    if (
        policy.auc_drop is not None
        and performance is not None
        and performance.status is ReportStatus.OK
        and performance.roc_auc is not None
        and reference_auc is not None
        and performance.labelled_count >= 1
    ):
        drop = reference_auc - performance.roc_auc
        if drop > policy.auc_drop:
            reasons.append(
                TriggerReason(
                    kind=PolicyKind.AUC_DROP,
                    figure=drop,
                    threshold=policy.auc_drop,
                    message=f"ROC AUC {performance.roc_auc:.3f} is {drop:.3f} below the reference "
                    f"{reference_auc:.3f} (margin {policy.auc_drop:g})",
                )
            )
    return reasons

"""Domain types of the drift-service: what the core takes and returns, free of protobuf.

The gRPC transport (:mod:`drift_service.convert`) maps these to and from the contract
``creditrisk.drift.v1``; the store (:mod:`drift_service.store`) persists them. Times are always
timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from creditrisk_products import FeatureKind as ProductFeatureKind

#: Name of the score column, in events, reference datasets and the prediction-drift report.
PREDICTION_COLUMN = "probability_of_default"

#: A feature value as stored: int, float, str, bool or None (null).
FeatureScalar = int | float | str | bool | None


#: Kind of a monitored column (decides the statistical test and the PSI binning): the products'
#: own ``numeric`` / ``categorical`` (a product's ``[drift.features]``).
FeatureKind = ProductFeatureKind


class ServingMode(enum.IntEnum):
    """How the inference-gateway used a prediction (numbered as ``common.v1.ServingMode``)."""

    UNSPECIFIED = 0
    CHAMPION = 1
    SHADOW = 2
    CANARY = 3


class ReportStatus(enum.StrEnum):
    """Whether a report had enough data for its figures to mean anything."""

    OK = "ok"
    INSUFFICIENT_DATA = "insufficient_data"


class FeatureStatus(enum.StrEnum):
    """Whether one column's drift figures were computed."""

    COMPUTED = "computed"
    EMPTY = "empty"


class PsiBand(enum.StrEnum):
    """PSI band: < 0.1 stable, 0.1-0.25 watch, > 0.25 shifted (Siddiqi, *Credit Risk Scorecards*, 2006)."""

    UNSPECIFIED = "unspecified"
    STABLE = "stable"
    WATCH = "watch"
    SHIFTED = "shifted"


class PolicyKind(enum.StrEnum):
    """Which retraining policy fired."""

    DATASET_DRIFT = "dataset_drift"
    PSI = "psi"
    AUC_DROP = "auc_drop"


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now_utc() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PredictionEvent:
    """One prediction logged by the inference-gateway (validated: see :mod:`drift_service.convert`).

    Attributes:
        event_id: unique id of the prediction (UUID text); the idempotency key.
        applicant_id: entity key of the applicant.
        features: feature values the model was given, by feature name (None = null).
        probability_of_default: score in [0, 1].
        decision: ``common.v1.Decision`` number.
        decision_threshold: threshold in [0, 1].
        model_name: registered model name.
        model_version: model version number (>= 1).
        serving_slot: ``common.v1.ServingSlot`` number.
        mode: how the prediction was used.
        event_time: time of the application it decides; windows select on it.
        trace_id: W3C trace id (may be empty).
        primary_event_id: for a shadow prediction, the returned prediction of the same request.
        missing_features: names of the features that were imputed.
    """

    event_id: str
    applicant_id: int
    features: dict[str, FeatureScalar]
    probability_of_default: float
    model_name: str
    model_version: int
    event_time: datetime
    decision: int = 0
    decision_threshold: float = 0.5
    serving_slot: int = 0
    mode: ServingMode = ServingMode.CHAMPION
    trace_id: str = ""
    primary_event_id: str = ""
    missing_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroundTruthLabel:
    """A ground-truth label: 1 = bad (defaulted), 0 = good.

    Exactly one key: ``event_id``, or ``applicant_id`` with ``application_time`` (the label then
    joins the latest returned, i.e. non-shadow, prediction of the applicant at or before that time).
    """

    label: int
    observed_time: datetime
    event_id: str | None = None
    applicant_id: int | None = None
    application_time: datetime | None = None

    @property
    def key(self) -> str:
        """The label's identity: a label sent again for the same key replaces the earlier one."""
        if self.event_id is not None:
            return f"event:{self.event_id}"
        assert self.application_time is not None
        return f"applicant:{self.applicant_id}@{utc(self.application_time).isoformat()}"


@dataclass(frozen=True)
class Window:
    """A monitoring window: predictions of a model over the event-time range [start, end).

    Attributes:
        model_name: registered model name.
        model_version: one version, or None for every version with predictions in the range (each
            computed on its own: a range straddling a champion swap gives one report per version).
        start: first instant inside (inclusive).
        end: first instant after (exclusive).
    """

    model_name: str
    start: datetime
    end: datetime
    model_version: int | None = None


@dataclass(frozen=True)
class DatasetRef:
    """Where a reference dataset came from (``common.v1.DatasetRef``)."""

    source: str
    digest: str = ""


@dataclass
class FeatureDrift:
    """Drift and data quality of one column (see ``creditrisk.drift.v1.FeatureDrift``)."""

    feature: str
    kind: FeatureKind
    status: FeatureStatus
    test_name: str = ""
    statistic: float = 0.0
    p_value: float | None = None
    threshold: float = 0.0
    drifted: bool = False
    psi: float | None = None
    psi_band: PsiBand = PsiBand.UNSPECIFIED
    missing_share: float = 0.0
    reference_missing_share: float = 0.0
    unseen_category_count: int = 0
    out_of_range_share: float | None = None


@dataclass
class DriftReport:
    """A data and prediction drift report of one model version over a window."""

    id: str
    window: Window
    model_version: int
    status: ReportStatus
    reference: DatasetRef
    reference_row_count: int
    current_row_count: int
    features: list[FeatureDrift] = field(default_factory=list)
    drift_share: float = 0.0
    dataset_drift: bool = False
    dataset_drift_rule: str = ""
    prediction_drift: FeatureDrift | None = None
    html_report_url: str = ""
    create_time: datetime = field(default_factory=now_utc)
    status_message: str = ""


@dataclass(frozen=True)
class CalibrationBin:
    """One calibration bin of predicted PD: [lower, upper) (the last bin closed)."""

    lower: float
    upper: float
    count: int
    mean_probability_of_default: float
    observed_default_rate: float


@dataclass
class PerformanceReport:
    """Performance of one model version over the labelled predictions of a window."""

    window: Window
    model_version: int
    status: ReportStatus
    prediction_count: int
    labelled_count: int
    label_coverage_share: float
    roc_auc: float | None = None
    ks: float | None = None
    default_rate: float | None = None
    mean_probability_of_default: float | None = None
    calibration_bins: list[CalibrationBin] = field(default_factory=list)
    create_time: datetime = field(default_factory=now_utc)
    status_message: str = ""


@dataclass(frozen=True)
class TriggerReason:
    """One reason a trigger fired, with the figure and the threshold it crossed."""

    kind: PolicyKind
    figure: float
    threshold: float
    message: str
    feature: str = ""


@dataclass
class TriggerEvent:
    """A retraining trigger raised by the policy over one model version's window."""

    id: str
    trigger_time: datetime
    window: Window
    model_name: str
    model_version: int
    reasons: list[TriggerReason]
    drift_report_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LogResult:
    """Outcome of a logging batch: counts and the rejected items (index, id, violations)."""

    accepted: int = 0
    duplicates: int = 0
    joined: int = 0
    unmatched: int = 0
    rejected: tuple[RejectedItem, ...] = ()


@dataclass(frozen=True)
class RejectedItem:
    """One invalid item of a batch: its index, its event id if any, and ``(field, reason)`` pairs."""

    index: int
    event_id: str
    violations: tuple[tuple[str, str], ...]


# --- JSON round trip of the stored reports ----------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def to_json(obj: Any) -> dict[str, Any]:
    """A domain dataclass as a JSON-ready dict (datetimes as ISO 8601, enums as values)."""
    return _encode(asdict(obj))


def _window(d: dict[str, Any]) -> Window:
    return Window(
        model_name=d["model_name"],
        start=datetime.fromisoformat(d["start"]),
        end=datetime.fromisoformat(d["end"]),
        model_version=d.get("model_version"),
    )


def _feature(d: dict[str, Any]) -> FeatureDrift:
    return FeatureDrift(
        **{
            **d,
            "kind": FeatureKind(d["kind"]),
            "status": FeatureStatus(d["status"]),
            "psi_band": PsiBand(d["psi_band"]),
        }
    )


def drift_report_from_json(d: dict[str, Any]) -> DriftReport:
    """Inverse of :func:`to_json` for :class:`DriftReport`."""
    return DriftReport(
        **{
            **d,
            "window": _window(d["window"]),
            "status": ReportStatus(d["status"]),
            "reference": DatasetRef(**d["reference"]),
            "features": [_feature(f) for f in d["features"]],
            "prediction_drift": _feature(d["prediction_drift"]) if d.get("prediction_drift") else None,
            "create_time": datetime.fromisoformat(d["create_time"]),
        }
    )


def performance_report_from_json(d: dict[str, Any]) -> PerformanceReport:
    """Inverse of :func:`to_json` for :class:`PerformanceReport`."""
    return PerformanceReport(
        **{
            **d,
            "window": _window(d["window"]),
            "status": ReportStatus(d["status"]),
            "calibration_bins": [CalibrationBin(**b) for b in d["calibration_bins"]],
            "create_time": datetime.fromisoformat(d["create_time"]),
        }
    )


def trigger_event_from_json(d: dict[str, Any]) -> TriggerEvent:
    """Inverse of :func:`to_json` for :class:`TriggerEvent`."""
    return TriggerEvent(
        **{
            **d,
            "trigger_time": datetime.fromisoformat(d["trigger_time"]),
            "window": _window(d["window"]),
            "reasons": [TriggerReason(**{**r, "kind": PolicyKind(r["kind"])}) for r in d["reasons"]],
        }
    )

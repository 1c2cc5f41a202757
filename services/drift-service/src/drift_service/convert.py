"""Conversion between the contract (``creditrisk.drift.v1``) and the domain types, with the
validation of requests.

Invalid *items* of a logging batch (a prediction event or a label) do not fail the call: the valid
rest is stored and each invalid item comes back in ``rejected`` with its index, its event id and
the fields at fault, named by their path in the request (``events[3].features.<feature name>``).
This is the contract's choice ("invalid events are rejected one by one; the rest are stored"): a
gateway logging at least once must not lose 499 good events over one bad one, and cannot fix the
bad one by retrying. Whole-request problems (an empty batch, a missing window) fail the call with
INVALID_ARGUMENT naming the field; an oversize batch with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from creditrisk.common.v1 import error_pb2, refs_pb2, time_range_pb2
from creditrisk.common.v1 import refs_pb2 as _refs  # noqa: F401  (DatasetRef, ModelRef)
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk_kit import InvalidArgument, ResourceExhausted, from_proto_timestamp
from google.protobuf import timestamp_pb2

from drift_service.domain import (
    DriftReport,
    FeatureDrift,
    FeatureKind,
    FeatureScalar,
    FeatureStatus,
    GroundTruthLabel,
    PerformanceReport,
    PolicyKind,
    PredictionEvent,
    PsiBand,
    RejectedItem,
    ReportStatus,
    ServingMode,
    TriggerEvent,
    Window,
)

MAX_EVENT_ID_CHARS = 128

_KIND = {FeatureKind.NUMERIC: pb.FEATURE_KIND_NUMERIC, FeatureKind.CATEGORICAL: pb.FEATURE_KIND_CATEGORICAL}
_STATUS = {
    FeatureStatus.COMPUTED: pb.FEATURE_DRIFT_STATUS_COMPUTED,
    FeatureStatus.EMPTY: pb.FEATURE_DRIFT_STATUS_EMPTY,
}
_BAND = {
    PsiBand.UNSPECIFIED: pb.PSI_BAND_UNSPECIFIED,
    PsiBand.STABLE: pb.PSI_BAND_STABLE,
    PsiBand.WATCH: pb.PSI_BAND_WATCH,
    PsiBand.SHIFTED: pb.PSI_BAND_SHIFTED,
}
_REPORT_STATUS = {
    ReportStatus.OK: pb.REPORT_STATUS_OK,
    ReportStatus.INSUFFICIENT_DATA: pb.REPORT_STATUS_INSUFFICIENT_DATA,
}
_POLICY = {
    PolicyKind.DATASET_DRIFT: pb.POLICY_KIND_DATASET_DRIFT,
    PolicyKind.PSI: pb.POLICY_KIND_PSI,
    PolicyKind.AUC_DROP: pb.POLICY_KIND_AUC_DROP,
}


# --- times ---------------------------------------------------------------------------------------


def to_datetime(ts: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A client's protobuf Timestamp as an aware UTC datetime.

    Raises:
        InvalidArgument: naming ``field`` (or ``field.nanos``) when out of range
            (``creditrisk_kit.from_proto_timestamp``).
    """
    return from_proto_timestamp(ts, field=field)


def _time_in_range(ts: timestamp_pb2.Timestamp, path: str, violations: list[tuple[str, str]]) -> None:
    """Adds a violation when ``ts`` (set) is out of range: one item of a batch fails on its own."""
    try:
        from_proto_timestamp(ts, field=path)
    except InvalidArgument as exc:
        violations.append((exc.field, exc.reason))


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def time_range(message: time_range_pb2.TimeRange, field: str, present: bool) -> tuple[datetime, datetime]:
    """``[start, end)`` of a required TimeRange.

    Raises:
        InvalidArgument: naming ``field`` (or its ``.start`` / ``.end``) when missing or inverted.
    """
    if not present:
        raise InvalidArgument(field, "required")
    if not message.HasField("start"):
        raise InvalidArgument(f"{field}.start", "required")
    if not message.HasField("end"):
        raise InvalidArgument(f"{field}.end", "required")
    start, end = to_datetime(message.start, f"{field}.start"), to_datetime(message.end, f"{field}.end")
    if end <= start:
        raise InvalidArgument(f"{field}.end", "must be after start")
    return start, end


def optional_range(
    message: time_range_pb2.TimeRange, field: str, present: bool
) -> tuple[datetime | None, datetime | None]:
    """An optional filter range: unset -> ``(None, None)``; set -> validated like :func:`time_range`."""
    if not present:
        return None, None
    return time_range(message, field, True)


def window(message: pb.Window, field: str, present: bool) -> Window:
    """The domain window of a request.

    Raises:
        InvalidArgument: for a missing window, model name or time range, or an inverted range.
    """
    if not present:
        raise InvalidArgument(field, "required")
    if not message.model_name:
        raise InvalidArgument(f"{field}.model_name", "required")
    version = message.model_version if message.HasField("model_version") else None
    if version is not None and version < 1:
        raise InvalidArgument(f"{field}.model_version", "must be >= 1")
    start, end = time_range(message.time_range, f"{field}.time_range", message.HasField("time_range"))
    return Window(model_name=message.model_name, model_version=version, start=start, end=end)


# --- logging batches -----------------------------------------------------------------------------


def _check_batch(count: int, field: str, max_items: int) -> None:
    if count == 0:
        raise InvalidArgument(field, "at least one item is required")
    if count > max_items:
        raise ResourceExhausted(f"{field}: {count} items exceed the limit of {max_items} per call")


def _feature_value(
    name: str, value: object, path: str, kinds: Mapping[str, FeatureKind], violations: list[tuple[str, str]]
) -> FeatureScalar:
    kind = value.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind is None:
        violations.append((path, "no value set: set one branch of FeatureValue (null_value for a null)"))
        return None
    if kind == "null_value":
        return None
    raw = getattr(value, kind)
    if kind == "double_value" and not math.isfinite(raw):
        violations.append((path, "NaN and infinities are not allowed"))
        return None
    expected = kinds.get(name)
    if expected is FeatureKind.NUMERIC and kind not in ("int64_value", "double_value"):
        violations.append((path, f"expected INT64 or DOUBLE for a numeric feature, got {kind}"))
        return None
    if expected is FeatureKind.CATEGORICAL and kind not in ("string_value", "bool_value"):
        violations.append((path, f"expected STRING or BOOL for a categorical feature, got {kind}"))
        return None
    return raw


def _unit_interval(value: float, path: str, violations: list[tuple[str, str]]) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        violations.append((path, "must be a number in [0, 1]"))


def prediction_events(
    request: pb.LogPredictionsRequest, kinds: Mapping[str, FeatureKind], max_items: int
) -> tuple[list[PredictionEvent], list[RejectedItem]]:
    """The valid events of a batch and the rejected ones.

    Raises:
        InvalidArgument: for an empty batch.
        ResourceExhausted: for a batch over ``max_items``.
    """
    _check_batch(len(request.events), "events", max_items)
    valid, rejected = [], []
    for i, e in enumerate(request.events):
        at = f"events[{i}]"
        v: list[tuple[str, str]] = []
        if not e.event_id:
            v.append((f"{at}.event_id", "required"))
        elif len(e.event_id) > MAX_EVENT_ID_CHARS:
            v.append((f"{at}.event_id", f"longer than {MAX_EVENT_ID_CHARS} characters"))
        if not e.model_name:
            v.append((f"{at}.model_name", "required"))
        if e.model_version < 1:
            v.append((f"{at}.model_version", "must be >= 1"))
        if not e.HasField("event_time"):
            v.append((f"{at}.event_time", "required"))
        else:
            _time_in_range(e.event_time, f"{at}.event_time", v)
        _unit_interval(e.probability_of_default, f"{at}.probability_of_default", v)
        _unit_interval(e.decision_threshold, f"{at}.decision_threshold", v)
        features = {
            name: _feature_value(name, value, f"{at}.features.{name}", kinds, v)
            for name, value in sorted(e.features.items())
        }
        if v:
            rejected.append(RejectedItem(index=i, event_id=e.event_id, violations=tuple(v)))
            continue
        valid.append(
            PredictionEvent(
                event_id=e.event_id,
                applicant_id=e.applicant_id,
                features=features,
                probability_of_default=e.probability_of_default,
                decision=int(e.decision),
                decision_threshold=e.decision_threshold,
                model_name=e.model_name,
                model_version=e.model_version,
                serving_slot=int(e.serving_slot),
                mode=ServingMode(int(e.mode))
                if int(e.mode) in ServingMode._value2member_map_
                else ServingMode.UNSPECIFIED,
                event_time=to_datetime(e.event_time, f"{at}.event_time"),
                trace_id=e.trace_id,
                primary_event_id=e.primary_event_id,
                missing_features=tuple(e.missing_features),
            )
        )
    return valid, rejected


def ground_truth(
    request: pb.LogGroundTruthRequest, max_items: int
) -> tuple[list[GroundTruthLabel], list[RejectedItem]]:
    """The valid labels of a batch and the rejected ones.

    Raises:
        InvalidArgument: for an empty batch.
        ResourceExhausted: for a batch over ``max_items``.
    """
    _check_batch(len(request.labels), "labels", max_items)
    valid, rejected = [], []
    for i, g in enumerate(request.labels):
        at = f"labels[{i}]"
        v: list[tuple[str, str]] = []
        key = g.WhichOneof("key")
        if key is None:
            v.append((f"{at}.key", "required: event_id or applicant"))
        elif key == "event_id" and not g.event_id:
            v.append((f"{at}.event_id", "required"))
        elif key == "event_id" and len(g.event_id) > MAX_EVENT_ID_CHARS:
            v.append((f"{at}.event_id", f"longer than {MAX_EVENT_ID_CHARS} characters"))
        elif key == "applicant" and not g.applicant.HasField("application_time"):
            v.append((f"{at}.applicant.application_time", "required"))
        elif key == "applicant":
            _time_in_range(g.applicant.application_time, f"{at}.applicant.application_time", v)
        if not g.HasField("label"):
            v.append((f"{at}.label", "required (0 = good, 1 = bad)"))
        elif g.label not in (0, 1):
            v.append((f"{at}.label", "must be 0 (good) or 1 (bad)"))
        if not g.HasField("observed_time"):
            v.append((f"{at}.observed_time", "required"))
        else:
            _time_in_range(g.observed_time, f"{at}.observed_time", v)
        if v:
            rejected.append(
                RejectedItem(index=i, event_id=g.event_id if key == "event_id" else "", violations=tuple(v))
            )
            continue
        valid.append(
            GroundTruthLabel(
                label=g.label,
                observed_time=to_datetime(g.observed_time, f"{at}.observed_time"),
                event_id=g.event_id if key == "event_id" else None,
                applicant_id=g.applicant.applicant_id if key == "applicant" else None,
                application_time=to_datetime(g.applicant.application_time, f"{at}.applicant.application_time")
                if key == "applicant"
                else None,
            )
        )
    return valid, rejected


def rejected_items(items: list[RejectedItem]) -> list[pb.RejectedItem]:
    """Rejected items as protos."""
    return [
        pb.RejectedItem(
            index=r.index,
            event_id=r.event_id,
            violations=[error_pb2.FieldViolation(field=f, description=d) for f, d in r.violations],
        )
        for r in items
    ]


# --- reports -------------------------------------------------------------------------------------


def window_proto(w: Window) -> pb.Window:
    """The window as a proto."""
    message = pb.Window(model_name=w.model_name)
    if w.model_version is not None:
        message.model_version = w.model_version
    message.time_range.start.CopyFrom(to_timestamp(w.start))
    message.time_range.end.CopyFrom(to_timestamp(w.end))
    return message


def feature_drift_proto(f: FeatureDrift) -> pb.FeatureDrift:
    """One column's drift as a proto."""
    message = pb.FeatureDrift(
        feature=f.feature,
        kind=_KIND[f.kind],
        test_name=f.test_name,
        statistic=f.statistic,
        threshold=f.threshold,
        drifted=f.drifted,
        psi_band=_BAND[f.psi_band],
        missing_share=f.missing_share,
        reference_missing_share=f.reference_missing_share,
        unseen_category_count=f.unseen_category_count,
        status=_STATUS[f.status],
    )
    if f.p_value is not None:
        message.p_value = f.p_value
    if f.psi is not None:
        message.psi = f.psi
    if f.out_of_range_share is not None:
        message.out_of_range_share = f.out_of_range_share
    return message


def drift_report_proto(r: DriftReport) -> pb.DriftReport:
    """A drift report as a proto."""
    message = pb.DriftReport(
        id=r.id,
        window=window_proto(r.window),
        model_version=r.model_version,
        status=_REPORT_STATUS[r.status],
        reference=refs_pb2.DatasetRef(source=r.reference.source, digest=r.reference.digest),
        reference_row_count=r.reference_row_count,
        current_row_count=r.current_row_count,
        features=[feature_drift_proto(f) for f in r.features],
        drift_share=r.drift_share,
        dataset_drift=r.dataset_drift,
        dataset_drift_rule=r.dataset_drift_rule,
        html_report_url=r.html_report_url,
        create_time=to_timestamp(r.create_time),
        status_message=r.status_message,
    )
    if r.prediction_drift is not None:
        message.prediction_drift.CopyFrom(feature_drift_proto(r.prediction_drift))
    return message


def performance_report_proto(r: PerformanceReport) -> pb.PerformanceReport:
    """A performance report as a proto."""
    message = pb.PerformanceReport(
        window=window_proto(r.window),
        model_version=r.model_version,
        status=_REPORT_STATUS[r.status],
        prediction_count=r.prediction_count,
        labelled_count=r.labelled_count,
        label_coverage_share=r.label_coverage_share,
        calibration_bins=[
            pb.CalibrationBin(
                lower=b.lower,
                upper=b.upper,
                count=b.count,
                mean_probability_of_default=b.mean_probability_of_default,
                observed_default_rate=b.observed_default_rate,
            )
            for b in r.calibration_bins
        ],
        create_time=to_timestamp(r.create_time),
        status_message=r.status_message,
    )
    for name in ("roc_auc", "ks", "default_rate", "mean_probability_of_default"):
        value = getattr(r, name)
        if value is not None:
            setattr(message, name, value)
    return message


def trigger_event_proto(t: TriggerEvent) -> pb.TriggerEvent:
    """A trigger event as a proto."""
    return pb.TriggerEvent(
        id=t.id,
        trigger_time=to_timestamp(t.trigger_time),
        window=window_proto(t.window),
        reasons=[
            pb.TriggerReason(
                kind=_POLICY[r.kind],
                feature=r.feature,
                figure=r.figure,
                threshold=r.threshold,
                message=r.message,
            )
            for r in t.reasons
        ],
        drift_report_ids=list(t.drift_report_ids),
        registered_model=refs_pb2.ModelRef(name=t.model_name, version=t.model_version),
    )

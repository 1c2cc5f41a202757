"""Conversions between the gRPC contract (``creditrisk.registry.v1``) and the core's domain types
(:mod:`registry_gateway.domain`, :class:`~registry_gateway.audit.AuditRecord`).

Kept apart from :mod:`registry_gateway.servicer` so that each RPC there stays a few lines, and from
the core so that it never builds or reads a message. Readers of a request raise
:class:`~creditrisk_kit.InvalidArgument` naming the field (the audit time range; paging is
:mod:`creditrisk_kit.pages`); the core checks the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime

from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_kit import InvalidArgument, from_proto_timestamp
from google.protobuf import timestamp_pb2

from registry_gateway import audit as au
from registry_gateway import gate as gt
from registry_gateway.domain import (
    AliasSnapshot,
    GateDecision,
    ModelVersionInfo,
    RegisteredModelInfo,
    RegisterRequest,
    VersionSelector,
)

_STATUS = {
    "PENDING_REGISTRATION": pb.MODEL_VERSION_STATUS_PENDING_REGISTRATION,
    "FAILED_REGISTRATION": pb.MODEL_VERSION_STATUS_FAILED_REGISTRATION,
    "READY": pb.MODEL_VERSION_STATUS_READY,
}
_SIG_VALUE_TYPE = {"double": 2, "float": 2, "long": 1, "integer": 1, "string": 3, "boolean": 4}


def ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A time as a Timestamp (a naive time is UTC); None stays None."""
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return message


# --- requests -----------------------------------------------------------------------------------


def register_request(request: pb.RegisterModelVersionRequest) -> RegisterRequest:
    """What RegisterModelVersion asks (an unset ``feature_service`` reads as empty)."""
    return RegisterRequest(
        run_id=request.run_id,
        artifact_path=request.artifact_path,
        registered_model_name=request.registered_model_name,
        feature_service_name=request.feature_service.name,
        feature_service_version=request.feature_service.version,
        tags=dict(request.tags),
        description=request.description,
    )


def version_selector(ref: refs_pb2.ModelRef) -> VersionSelector:
    """A ``ModelRef``: name and version number or alias."""
    return VersionSelector(
        name=ref.name, which=ref.WhichOneof("version_selector"), version=ref.version, alias=ref.alias
    )


def audit_filter(request: pb.ListAuditRecordsRequest) -> au.AuditFilter:
    """The filters of ListAuditRecords (a time range must end after it starts)."""
    start = end = None
    if request.HasField("time_range"):
        start = from_proto_timestamp(request.time_range.start, field="time_range.start")
        end = from_proto_timestamp(request.time_range.end, field="time_range.end")
        if end <= start:
            raise InvalidArgument("time_range", "end must be after start")
    return au.AuditFilter(
        model_name=request.model_name,
        actions=[int(a) for a in request.actions],
        actor=request.actor,
        alias=request.alias,
        start=start,
        end=end,
    )


# --- results ------------------------------------------------------------------------------------


def model_version(info: ModelVersionInfo) -> pb.ModelVersion:
    """A model version as its message."""
    message = pb.ModelVersion(
        name=info.name,
        version=info.version,
        aliases=info.aliases,
        run_id=info.run_id,
        source=info.source,
        status=_STATUS.get(info.status, pb.MODEL_VERSION_STATUS_UNSPECIFIED),
        create_time=ts(info.create_time),
        update_time=ts(info.update_time),
        description=info.description,
        tags=info.tags,
        artifact_digests=info.artifact_digests,
        registered_by=info.registered_by,
    )
    message.metrics.update(info.metrics)
    lineage = info.lineage
    message.lineage.CopyFrom(
        pb.Lineage(
            run_id=lineage.run_id,
            experiment_id=lineage.experiment_id,
            training_dataset=refs_pb2.DatasetRef(
                source=lineage.dataset_source, digest=lineage.dataset_digest
            ),
            feature_service=refs_pb2.FeatureServiceRef(
                name=lineage.feature_service_name, version=lineage.feature_service_version
            ),
            code_version=lineage.code_version,
        )
    )
    for col in info.signature:
        message.signature.inputs.append(
            pb.SignatureColumn(
                name=col.name, value_type=_SIG_VALUE_TYPE.get(col.type, 0), required=col.required
            )
        )
    if info.decision_threshold is not None:
        message.decision_threshold = info.decision_threshold
    return message


def registered_model(info: RegisteredModelInfo) -> pb.RegisteredModel:
    """A registered model as its message."""
    return pb.RegisteredModel(
        name=info.name,
        description=info.description,
        tags=info.tags,
        aliases=info.aliases,
        latest_version=info.latest_version,
        create_time=ts(info.create_time),
        update_time=ts(info.update_time),
    )


def alias_change(record: au.AuditRecord) -> pb.AliasChange:
    """An alias change (its audit record) as its message."""
    change = pb.AliasChange(
        model_name=record.model_name,
        alias=record.alias,
        change_time=ts(record.time),
        actor=record.actor,
        sequence=record.alias_seq or 0,
        action=record.action,
        audit_record_id=record.id,
    )
    if record.from_version is not None:
        change.from_version = record.from_version
    if record.to_version is not None:
        change.to_version = record.to_version
    return change


def audit_record(record: au.AuditRecord) -> pb.AuditRecord:
    """An audit record as its message."""
    message = pb.AuditRecord(
        id=record.id,
        time=ts(record.time),
        actor=record.actor,
        role=record.role,
        action=record.action,
        model_name=record.model_name,
        alias=record.alias,
        figures=record.figures,
        reason=record.reason,
        trace_id=record.trace_id,
    )
    if record.from_version is not None:
        message.from_version = record.from_version
    if record.to_version is not None:
        message.to_version = record.to_version
    return message


def watch_response(item: AliasSnapshot | au.AuditRecord) -> pb.WatchAliasesResponse:
    """One item of WatchAliases: the snapshot or a change."""
    if isinstance(item, AliasSnapshot):
        bindings = [
            pb.AliasBinding(model_name=b.model_name, alias=b.alias, version=b.version) for b in item.bindings
        ]
        return pb.WatchAliasesResponse(snapshot=pb.AliasSnapshot(aliases=bindings, sequence=item.sequence))
    return pb.WatchAliasesResponse(change=alias_change(item))


def gate_result(decision: GateDecision) -> pb.GateResult:
    """The gate's decision as its ``GateResult`` (the rule's settings included)."""
    o, config = decision.outcome, decision.config

    def score(s: gt.Score) -> pb.GateScore:
        return pb.GateScore(
            version=s.version,
            roc_auc=s.roc_auc,
            decision_threshold=s.decision_threshold,
            expected_cost=s.expected_cost,
        )

    result = pb.GateResult(
        rule=o.rule,
        model_name=decision.model_name,
        alias=decision.alias,
        challenger=score(o.challenger),
        metric="roc_auc",
        confidence_level=config.confidence_level,
        resamples=config.resamples,
        seed=config.seed,
        non_inferiority_margin=config.margin,
        window=time_range_pb2.TimeRange(start=ts(decision.window_start), end=ts(decision.window_end)),
        window_row_count=o.rows,
        false_negative_cost=config.false_negative_cost,
        false_positive_cost=config.false_positive_cost,
        passed=o.passed,
        reasons=o.reasons,
        evaluate_time=ts(decision.evaluate_time),
    )
    if o.champion is not None:
        result.champion.CopyFrom(score(o.champion))
        result.delta, result.ci_lower, result.ci_upper = o.delta, o.ci_lower, o.ci_upper  # type: ignore[assignment]
    else:
        result.absolute_floor = config.absolute_floor
    return result

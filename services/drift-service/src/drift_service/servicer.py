"""The gRPC transport of the drift-service: ``creditrisk.drift.v1.DriftService`` (grpc.aio).

Each RPC converts the request (:mod:`drift_service.convert`, which validates it), calls
:class:`~drift_service.core.DriftCore` in a worker thread (SQLAlchemy and Evidently are
synchronous; ``asyncio.to_thread`` carries the trace context), and converts the result. Domain
errors carry their status; the kit's ``ErrorInterceptor`` maps them. Who may call what is
:data:`POLICY` (the kit's auth interceptor checks it before the servicer runs); reads of reports
are in the access log (:mod:`drift_service.access`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk.drift.v1 import drift_service_pb2_grpc as pb_grpc
from creditrisk_kit import InvalidArgument, ServiceError
from creditrisk_kit.auth import MethodPolicy, Role, current_principal
from creditrisk_kit.pages import decode_page_token, encode_page_token, page_limit

from drift_service import access, convert, metrics
from drift_service.core import DriftCore

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DriftService"].full_name

POLICY = MethodPolicy.for_service(
    SERVICE_NAME,
    {
        "LogPredictions": Role.LOG_PREDICTIONS,
        "LogGroundTruth": Role.WRITE_LABELS,
        "ComputeDrift": Role.READ_MONITORING,
        "GetDriftReport": Role.READ_MONITORING,
        "ListDriftReports": Role.READ_MONITORING,
        "GetPerformance": Role.READ_MONITORING,
        "ListTriggerEvents": Role.READ_MONITORING,
        "GetTriggerEvent": Role.READ_MONITORING,
    },
)
"""What each RPC needs (the kit's auth, default deny): logging predictions ``log_predictions``
(the inference-gateway), labels ``write_labels``, drift computation and every read
``read_monitoring``."""
DEFAULT_PAGE = 50
MAX_REPORT_PAGE = 200
MAX_TRIGGER_PAGE = 1000


class DriftServiceServicer(pb_grpc.DriftServiceServicer):
    """Every RPC of ``DriftService`` over one core."""

    def __init__(self, core: DriftCore) -> None:
        self.core = core
        self.settings = core.settings

    async def LogPredictions(
        self, request: pb.LogPredictionsRequest, context: Any
    ) -> pb.LogPredictionsResponse:
        events, rejected = convert.prediction_events(
            request, self.core.feature_kinds, self.settings.max_batch_items
        )
        metrics.EVENTS_RECEIVED.labels("rejected").inc(len(rejected))
        accepted, duplicates = await asyncio.to_thread(self.core.log_predictions, events)
        return pb.LogPredictionsResponse(
            accepted=accepted, duplicates=duplicates, rejected=convert.rejected_items(rejected)
        )

    async def LogGroundTruth(
        self, request: pb.LogGroundTruthRequest, context: Any
    ) -> pb.LogGroundTruthResponse:
        labels, rejected = convert.ground_truth(request, self.settings.max_batch_items)
        metrics.LABELS_RECEIVED.labels("rejected").inc(len(rejected))
        joined, unmatched = await asyncio.to_thread(self.core.log_ground_truth, labels)
        return pb.LogGroundTruthResponse(
            joined=joined, unmatched=unmatched, rejected=convert.rejected_items(rejected)
        )

    async def ComputeDrift(self, request: pb.ComputeDriftRequest, context: Any) -> pb.ComputeDriftResponse:
        window = convert.window(request.window, "window", request.HasField("window"))
        uri = request.dataset_uri if request.WhichOneof("reference") == "dataset_uri" else None
        if uri is not None and not uri:
            raise InvalidArgument("dataset_uri", "must not be empty")
        outcome = await asyncio.to_thread(self.core.compute_drift, window, uri)
        access.log_read(current_principal(), "ComputeDrift", [r.id for r in outcome.reports])
        return pb.ComputeDriftResponse(
            reports=[convert.drift_report_proto(r) for r in outcome.reports],
            trigger_events=[convert.trigger_event_proto(t) for t in outcome.triggers],
        )

    async def GetDriftReport(
        self, request: pb.GetDriftReportRequest, context: Any
    ) -> pb.GetDriftReportResponse:
        if not request.report_id:
            raise InvalidArgument("report_id", "required")
        try:
            report = await asyncio.to_thread(self.core.get_drift_report, request.report_id)
        except ServiceError as exc:
            outcome = exc.grpc_status_code().name
            access.log_read(current_principal(), "GetDriftReport", [request.report_id], outcome)
            raise
        access.log_read(current_principal(), "GetDriftReport", [report.id])
        return pb.GetDriftReportResponse(report=convert.drift_report_proto(report))

    async def ListDriftReports(
        self, request: pb.ListDriftReportsRequest, context: Any
    ) -> pb.ListDriftReportsResponse:
        limit = page_limit(request.page_size, default=DEFAULT_PAGE, maximum=MAX_REPORT_PAGE)
        before = decode_page_token(request.page_token, int)  # the previous page's last sequence
        start, end = convert.optional_range(request.time_range, "time_range", request.HasField("time_range"))
        version = request.model_version if request.HasField("model_version") else None
        reports, last = await asyncio.to_thread(
            self.core.list_drift_reports,
            model_name=request.model_name,
            model_version=version,
            start=start,
            end=end,
            before=before,
            limit=limit,
        )
        access.log_read(current_principal(), "ListDriftReports", [r.id for r in reports])
        return pb.ListDriftReportsResponse(
            reports=[convert.drift_report_proto(r) for r in reports],
            next_page_token=encode_page_token(last) if last is not None else "",
        )

    async def GetPerformance(
        self, request: pb.GetPerformanceRequest, context: Any
    ) -> pb.GetPerformanceResponse:
        window = convert.window(request.window, "window", request.HasField("window"))
        reports = await asyncio.to_thread(self.core.get_performance, window)
        return pb.GetPerformanceResponse(reports=[convert.performance_report_proto(r) for r in reports])

    async def ListTriggerEvents(
        self, request: pb.ListTriggerEventsRequest, context: Any
    ) -> pb.ListTriggerEventsResponse:
        limit = page_limit(request.page_size, default=DEFAULT_PAGE, maximum=MAX_TRIGGER_PAGE)
        before = decode_page_token(request.page_token, int)  # the previous page's last sequence
        start, end = convert.optional_range(request.time_range, "time_range", request.HasField("time_range"))
        triggers, last = await asyncio.to_thread(
            self.core.list_trigger_events,
            model_name=request.model_name,
            start=start,
            end=end,
            before=before,
            limit=limit,
        )
        return pb.ListTriggerEventsResponse(
            trigger_events=[convert.trigger_event_proto(t) for t in triggers],
            next_page_token=encode_page_token(last) if last is not None else "",
        )

    async def GetTriggerEvent(
        self, request: pb.GetTriggerEventRequest, context: Any
    ) -> pb.GetTriggerEventResponse:
        if not request.trigger_event_id:
            raise InvalidArgument("trigger_event_id", "required")
        trigger = await asyncio.to_thread(self.core.get_trigger_event, request.trigger_event_id)
        return pb.GetTriggerEventResponse(trigger_event=convert.trigger_event_proto(trigger))

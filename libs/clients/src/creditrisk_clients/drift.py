"""Client of the drift-service (contract ``creditrisk.drift.v1.DriftService``).

:class:`DriftServiceClient`, one method per RPC, answering the contract's messages:

* ``LogPredictions`` / ``LogGroundTruth`` -> the response (accepted / duplicates, joined /
  unmatched, and the ``rejected`` items with their field violations: a rejected item is not an
  error of the call);
* ``ComputeDrift`` -> the reports and the trigger events the policy raised; ``GetPerformance`` ->
  the performance reports; ``GetDriftReport`` / ``GetTriggerEvent`` -> the one message;
* ``ListDriftReports`` / ``ListTriggerEvents`` -> one page: ``(items, next page token or "")``.

:func:`window` builds the ``Window`` (model, optional version, event-time range) the analyses take.
Errors are mapped by :class:`~creditrisk_clients.errors.DownstreamErrors` (default: UNAVAILABLE ->
``Unavailable``, DEADLINE_EXCEEDED -> ``DeadlineExceeded``; NOT_FOUND, INVALID_ARGUMENT,
FAILED_PRECONDITION stay ``grpc.aio.AioRpcError`` unless the caller gives handlers).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import grpc.aio
from creditrisk.common.v1 import time_range_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc

from creditrisk_clients.base import ContractClient, TokenProvider
from creditrisk_clients.errors import DownstreamErrors

#: The default mapping of the drift-service's errors (see :mod:`creditrisk_clients.errors`).
DRIFT_ERRORS = DownstreamErrors("the drift-service")


def time_range(start: datetime, end: datetime) -> time_range_pb2.TimeRange:
    """The ``TimeRange`` ``[start, end)`` (timezone-aware datetimes).

    Raises:
        ValueError: A naive datetime, or ``end`` not after ``start``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a timezone (naive datetimes are ambiguous)")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    out = time_range_pb2.TimeRange()
    out.start.FromDatetime(start)
    out.end.FromDatetime(end)
    return out


def window(model_name: str, start: datetime, end: datetime, version: int = 0) -> dpb.Window:
    """The predictions of ``model_name`` with event times in ``[start, end)``; of one ``version``
    when >= 1 (0: every version in the window, one report each).

    Raises:
        ValueError: An empty model name, a negative version, or a bad range (see :func:`time_range`).
    """
    if not model_name:
        raise ValueError("model_name is empty")
    if version < 0:
        raise ValueError(f"version={version} must be >= 0 (0 = every version in the window)")
    out = dpb.Window(model_name=model_name, time_range=time_range(start, end))
    if version:
        out.model_version = version
    return out


class DriftServiceClient(ContractClient):
    """Async client of ``creditrisk.drift.v1.DriftService`` (see the module docstring).

    Every method takes ``timeout_s`` (deadline in seconds; None: the channel's default, if any) and
    ``errors`` (how this call's errors are raised; None: the client's).

    Args:
        channel: A ``grpc.aio`` channel to the drift-service (a kit ``aio_channel``).
        errors: How the drift-service's errors are raised.
        owns_channel: Close ``channel`` in :meth:`close`.
        token: The caller's bearer credential or a provider of it (``ContractClient``).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        errors: DownstreamErrors = DRIFT_ERRORS,
        owns_channel: bool = False,
        token: TokenProvider = "",
    ) -> None:
        super().__init__(channel, errors=errors, owns_channel=owns_channel, token=token)
        self._stub = dpb_grpc.DriftServiceStub(channel)

    async def log_predictions(
        self,
        events: Iterable[dpb.PredictionEvent],
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> dpb.LogPredictionsResponse:
        """Record prediction events (idempotent by ``event_id``): ``accepted``, ``duplicates`` and
        the ``rejected`` items (index, event id, field violations)."""
        request = dpb.LogPredictionsRequest(events=events)
        response: dpb.LogPredictionsResponse = await self.unary(
            self._stub.LogPredictions, request, timeout_s=timeout_s, errors=errors
        )
        return response

    async def log_ground_truth(
        self,
        labels: Iterable[dpb.GroundTruth],
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> dpb.LogGroundTruthResponse:
        """Record observed outcomes (by event id or applicant key): ``joined``, ``unmatched`` and
        the ``rejected`` items."""
        request = dpb.LogGroundTruthRequest(labels=labels)
        response: dpb.LogGroundTruthResponse = await self.unary(
            self._stub.LogGroundTruth, request, timeout_s=timeout_s, errors=errors
        )
        return response

    async def compute_drift(
        self,
        drift_window: dpb.Window,
        *,
        dataset_uri: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> dpb.ComputeDriftResponse:
        """Drift of ``drift_window`` against each version's training dataset (or ``dataset_uri``):
        one report per model version, and the trigger events the retraining policy raised.

        A window with too few rows is a report of status INSUFFICIENT_DATA, not an error.

        Raises:
            As ``errors`` maps INVALID_ARGUMENT (no model name or range), NOT_FOUND (unknown
            version, unreadable reference) and the rest.
        """
        request = dpb.ComputeDriftRequest(window=drift_window)
        if dataset_uri:
            request.dataset_uri = dataset_uri
        response: dpb.ComputeDriftResponse = await self.unary(
            self._stub.ComputeDrift, request, timeout_s=timeout_s, errors=errors
        )
        return response

    async def get_performance(
        self,
        performance_window: dpb.Window,
        *,
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> list[dpb.PerformanceReport]:
        """The performance reports (ROC AUC, KS, calibration...) of the window's labelled
        predictions, one per model version."""
        request = dpb.GetPerformanceRequest(window=performance_window)
        response = await self.unary(self._stub.GetPerformance, request, timeout_s=timeout_s, errors=errors)
        return list(response.reports)

    async def get_drift_report(
        self, report_id: str, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> dpb.DriftReport:
        """The drift report ``report_id`` (NOT_FOUND for an unknown id, as ``errors`` maps)."""
        request = dpb.GetDriftReportRequest(report_id=report_id)
        response = await self.unary(self._stub.GetDriftReport, request, timeout_s=timeout_s, errors=errors)
        report: dpb.DriftReport = response.report
        return report

    async def list_drift_reports(
        self,
        *,
        model_name: str = "",
        model_version: int = 0,
        created: time_range_pb2.TimeRange | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[dpb.DriftReport], str]:
        """One page of drift reports, newest first, and the next page's token ("" on the last).

        Args:
            model_name / model_version / created: Filters (empty, 0, None: no filter).
            page_size / page_token: Paging (0: the server's default size).
        """
        request = dpb.ListDriftReportsRequest(
            page_size=page_size, page_token=page_token, model_name=model_name, time_range=created
        )
        if model_version:
            request.model_version = model_version
        response = await self.unary(self._stub.ListDriftReports, request, timeout_s=timeout_s, errors=errors)
        return list(response.reports), str(response.next_page_token)

    async def get_trigger_event(
        self, trigger_event_id: str, *, timeout_s: float | None = None, errors: DownstreamErrors | None = None
    ) -> dpb.TriggerEvent:
        """The trigger event ``trigger_event_id`` (NOT_FOUND for an unknown id, as ``errors`` maps)."""
        request = dpb.GetTriggerEventRequest(trigger_event_id=trigger_event_id)
        response = await self.unary(self._stub.GetTriggerEvent, request, timeout_s=timeout_s, errors=errors)
        event: dpb.TriggerEvent = response.trigger_event
        return event

    async def list_trigger_events(
        self,
        *,
        model_name: str = "",
        triggered: time_range_pb2.TimeRange | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        errors: DownstreamErrors | None = None,
    ) -> tuple[list[dpb.TriggerEvent], str]:
        """One page of trigger events, newest first, and the next page's token ("" on the last)."""
        request = dpb.ListTriggerEventsRequest(
            page_size=page_size, page_token=page_token, model_name=model_name, time_range=triggered
        )
        response = await self.unary(self._stub.ListTriggerEvents, request, timeout_s=timeout_s, errors=errors)
        return list(response.trigger_events), str(response.next_page_token)

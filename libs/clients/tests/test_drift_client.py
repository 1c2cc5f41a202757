"""DriftServiceClient against an in-process DriftService on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk_clients import DownstreamErrors, DriftServiceClient, dependency_status, invalid_argument
from creditrisk_clients.drift import window
from creditrisk_kit import InvalidArgument, Unavailable

START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)


class _Drift(dpb_grpc.DriftServiceServicer):  # type: ignore[misc]
    """Keeps logged events; rejects events without a model name; one report per computed window."""

    def __init__(self) -> None:
        self.events: dict[str, dpb.PredictionEvent] = {}
        self.requests: list[Any] = []
        self.down = False

    async def LogPredictions(self, request: Any, context: Any) -> Any:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        response = dpb.LogPredictionsResponse()
        for index, event in enumerate(request.events):
            if not event.model_name:
                response.rejected.add(index=index, event_id=event.event_id)
            elif event.event_id in self.events:
                response.duplicates += 1
            else:
                self.events[event.event_id] = event
                response.accepted += 1
        return response

    async def LogGroundTruth(self, request: Any, context: Any) -> Any:
        joined = sum(1 for label in request.labels if label.event_id in self.events)
        return dpb.LogGroundTruthResponse(joined=joined, unmatched=len(request.labels) - joined)

    async def ComputeDrift(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        if not request.window.model_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "window.model_name is required")
        report = dpb.DriftReport(id="report-1", window=request.window, drift_share=0.25, dataset_drift=True)
        event = dpb.TriggerEvent(id="trigger-1", drift_report_ids=["report-1"])
        return dpb.ComputeDriftResponse(reports=[report], trigger_events=[event])

    async def GetPerformance(self, request: Any, context: Any) -> Any:
        report = dpb.PerformanceReport(window=request.window, labelled_count=40, roc_auc=0.78)
        return dpb.GetPerformanceResponse(reports=[report])

    async def GetDriftReport(self, request: Any, context: Any) -> Any:
        if request.report_id != "report-1":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"drift report {request.report_id!r}")
        return dpb.GetDriftReportResponse(report=dpb.DriftReport(id="report-1"))

    async def ListDriftReports(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return dpb.ListDriftReportsResponse(reports=[dpb.DriftReport(id="report-1")], next_page_token="next")

    async def GetTriggerEvent(self, request: Any, context: Any) -> Any:
        return dpb.GetTriggerEventResponse(trigger_event=dpb.TriggerEvent(id=request.trigger_event_id))

    async def ListTriggerEvents(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return dpb.ListTriggerEventsResponse(trigger_events=[dpb.TriggerEvent(id="trigger-1")])


@pytest.fixture
async def drift(serve: Any) -> AsyncIterator[tuple[_Drift, DriftServiceClient]]:
    servicer = _Drift()
    port = await serve(
        "creditrisk.drift.v1.DriftService",
        lambda server: dpb_grpc.add_DriftServiceServicer_to_server(servicer, server),
    )
    client = DriftServiceClient.connect(f"127.0.0.1:{port}")
    yield servicer, client
    await client.close()


async def test_logs_report_accepted_duplicates_and_rejected_items(drift: Any) -> None:
    _servicer, client = drift
    events = [
        dpb.PredictionEvent(event_id="e1", model_name="credit-risk", probability_of_default=0.1),
        dpb.PredictionEvent(event_id="e2", model_name=""),
    ]
    first = await client.log_predictions(events)
    assert (first.accepted, first.duplicates) == (1, 0)
    assert [(r.index, r.event_id) for r in first.rejected] == [(1, "e2")]
    again = await client.log_predictions(events[:1])
    assert (again.accepted, again.duplicates) == (0, 1)
    labels = [dpb.GroundTruth(event_id="e1", label=1), dpb.GroundTruth(event_id="nope", label=0)]
    answer = await client.log_ground_truth(labels)
    assert (answer.joined, answer.unmatched) == (1, 1)


async def test_drift_and_performance_of_a_window(drift: Any) -> None:
    servicer, client = drift
    computed = await client.compute_drift(window("credit-risk", START, END, version=3))
    assert computed.reports[0].dataset_drift
    assert computed.trigger_events[0].drift_report_ids == ["report-1"]
    sent = servicer.requests[-1]
    assert sent.window.model_version == 3
    assert sent.WhichOneof("reference") is None
    assert sent.window.time_range.start.ToDatetime(tzinfo=UTC) == START
    await client.compute_drift(window("credit-risk", START, END), dataset_uri="s3://ref/part.parquet")
    sent = servicer.requests[-1]
    assert not sent.window.HasField("model_version")
    assert sent.dataset_uri == "s3://ref/part.parquet"
    [performance] = await client.get_performance(window("credit-risk", START, END))
    assert (performance.labelled_count, performance.roc_auc) == (40, pytest.approx(0.78))


async def test_reports_and_trigger_events(drift: Any) -> None:
    servicer, client = drift
    assert (await client.get_drift_report("report-1")).id == "report-1"
    reports, token = await client.list_drift_reports(model_name="credit-risk", model_version=2, page_size=5)
    assert [r.id for r in reports] == ["report-1"]
    assert token == "next"
    sent = servicer.requests[-1]
    assert (sent.model_name, sent.model_version, sent.page_size) == ("credit-risk", 2, 5)
    assert (await client.get_trigger_event("trigger-9")).id == "trigger-9"
    events, token = await client.list_trigger_events(model_name="credit-risk")
    assert [e.id for e in events] == ["trigger-1"]
    assert token == ""


async def test_errors_map_as_the_caller_says(drift: Any) -> None:
    servicer, client = drift
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.get_drift_report("report-9")
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    errors = DownstreamErrors(
        "the drift-service", on={grpc.StatusCode.INVALID_ARGUMENT: invalid_argument("window")}
    )
    with pytest.raises(InvalidArgument, match=r"window\.model_name is required"):
        await client.compute_drift(dpb.Window(), errors=errors)
    servicer.down = True
    with pytest.raises(Unavailable, match="the drift-service is unavailable") as down:
        await client.log_predictions([dpb.PredictionEvent(event_id="e3", model_name="m")], timeout_s=5)
    assert dependency_status(down.value) is grpc.StatusCode.UNAVAILABLE


def test_window_checks_its_arguments() -> None:
    assert not window("credit-risk", START, END).HasField("model_version")
    with pytest.raises(ValueError, match="model_name is empty"):
        window("", START, END)
    with pytest.raises(ValueError, match="must be >= 0"):
        window("credit-risk", START, END, version=-1)
    with pytest.raises(ValueError, match="must be after start"):
        window("credit-risk", END, START)
    with pytest.raises(ValueError, match="timezone"):
        window("credit-risk", datetime(2025, 1, 1), END)


async def test_connect_passes_its_options_to_the_constructor_and_refuses_unknown_ones() -> None:
    client = DriftServiceClient.connect("127.0.0.1:1", token="drift-caller", default_timeout_s=None)
    try:
        assert client.metadata == (("authorization", "Bearer drift-caller"),)
    finally:
        await client.close()
    with pytest.raises(TypeError, match="historical_timeout_s"):
        DriftServiceClient.connect("127.0.0.1:1", historical_timeout_s=5.0)

"""The gRPC surface in-process: the kit's ServiceRunner on port 0 and the generated stub."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pandas as pd
import pytest
from conftest import ATTRIBUTES, T0
from creditrisk.common.v1 import values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk.drift.v1 import drift_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, aio_channel
from drift_service.convert import to_timestamp
from drift_service.core import DriftCore
from drift_service.servicer import SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings
from german_frames import shift
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.usefixtures("evidently_loaded")


@dataclass
class Served:
    runner: ServiceRunner
    channel: grpc.aio.Channel
    stub: pb_grpc.DriftServiceStub


@pytest.fixture
async def served(settings: DriftServiceSettings) -> AsyncIterator[Served]:
    settings = settings.model_copy(
        update={"host": "127.0.0.1", "port": 0, "grace_period_s": 1.0, "max_batch_items": 1000}
    )
    core = DriftCore(settings, report_base_url="http://reports.test")
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: pb_grpc.add_DriftServiceServicer_to_server(
            DriftServiceServicer(core), server
        ),
        readiness_checks={"event store": core.ready},
        instrument=False,
        reflection=False,
    )
    await runner.start()
    # One readiness round before the tests run: the background loop's first round may not have
    # finished yet on a loaded machine (health would still say NOT_SERVING).
    await runner.check_readiness()
    channel = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=120, instrument=False, retry=None)
    try:
        yield Served(runner, channel, pb_grpc.DriftServiceStub(channel))
    finally:
        await channel.close()
        await runner.stop()
        core.close()


def feature_value(value: object) -> values_pb2.FeatureValue:
    if isinstance(value, str):
        return values_pb2.FeatureValue(string_value=value)
    return values_pb2.FeatureValue(int64_value=int(value))  # type: ignore[arg-type]


def event_proto(
    row: dict, i: int, *, prefix: str = "e", version: int = 1, minutes: int = 0
) -> pb.PredictionEvent:
    return pb.PredictionEvent(
        event_id=f"{prefix}-{i}",
        applicant_id=i,
        features={c: feature_value(row[c]) for c in ATTRIBUTES},
        probability_of_default=float(row["probability_of_default"]),
        decision=1,
        decision_threshold=0.5,
        model_name="credit-risk",
        model_version=version,
        mode=1,
        serving_slot=1,
        event_time=to_timestamp(T0 + timedelta(minutes=minutes + i)),
    )


def events(frame: pd.DataFrame, **kw: object) -> list[pb.PredictionEvent]:
    return [event_proto(row, i, **kw) for i, row in enumerate(frame.to_dict("records"))]  # type: ignore[arg-type]


def window_proto(version: int | None = None, minutes: int = 10_000) -> pb.Window:
    w = pb.Window(model_name="credit-risk")
    if version is not None:
        w.model_version = version
    w.time_range.start.CopyFrom(to_timestamp(T0))
    w.time_range.end.CopyFrom(to_timestamp(T0 + timedelta(minutes=minutes)))
    return w


async def expect_error(call: object, code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    assert text in (info.value.details() or "")


async def test_health_serving_when_the_store_answers(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_log_predictions_stores_the_valid_rest_and_rejects_naming_fields(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    good = events(split[1].iloc[:3])
    no_id = event_proto(split[1].iloc[3].to_dict(), 3)
    no_id.event_id = ""
    wrong_type = event_proto(split[1].iloc[4].to_dict(), 4)
    wrong_type.features["credit_amount"].CopyFrom(values_pb2.FeatureValue(string_value="a lot"))
    nan = event_proto(split[1].iloc[5].to_dict(), 5)
    nan.features["age_in_years"].CopyFrom(values_pb2.FeatureValue(double_value=math.nan))
    unset = event_proto(split[1].iloc[6].to_dict(), 6)
    unset.features["purpose"].CopyFrom(values_pb2.FeatureValue())
    untimed = event_proto(split[1].iloc[7].to_dict(), 7)
    untimed.ClearField("event_time")
    untimed.probability_of_default = 1.5
    null_ok = event_proto(split[1].iloc[8].to_dict(), 8)
    null_ok.features["telephone"].CopyFrom(values_pb2.FeatureValue(null_value=struct_pb2.NULL_VALUE))
    batch = [*good, no_id, wrong_type, nan, unset, untimed, null_ok]
    response = await served.stub.LogPredictions(pb.LogPredictionsRequest(events=batch))
    assert response.accepted == 4
    assert response.duplicates == 0
    rejected = {
        r.index: (r.event_id, [(v.field, v.description) for v in r.violations]) for r in response.rejected
    }
    assert rejected[3] == ("", [("events[3].event_id", "required")])
    assert rejected[4][1][0][0] == "events[4].features.credit_amount"
    assert "INT64 or DOUBLE" in rejected[4][1][0][1]
    assert rejected[5][1] == [("events[5].features.age_in_years", "NaN and infinities are not allowed")]
    assert rejected[6][1][0][0] == "events[6].features.purpose"
    assert {f for f, _ in rejected[7][1]} == {"events[7].event_time", "events[7].probability_of_default"}
    # redelivery: stored once
    again = await served.stub.LogPredictions(pb.LogPredictionsRequest(events=good))
    assert again.accepted == 0
    assert again.duplicates == 3


async def test_empty_batches_are_invalid(served: Served) -> None:
    await expect_error(
        served.stub.LogPredictions(pb.LogPredictionsRequest()), grpc.StatusCode.INVALID_ARGUMENT, "'events'"
    )
    await expect_error(
        served.stub.LogGroundTruth(pb.LogGroundTruthRequest()), grpc.StatusCode.INVALID_ARGUMENT, "'labels'"
    )


async def test_oversize_batch_is_resource_exhausted(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    many = pb.LogPredictionsRequest(events=events(split[1].iloc[:1]) * 1001)
    await expect_error(served.stub.LogPredictions(many), grpc.StatusCode.RESOURCE_EXHAUSTED, "1001 items")


async def test_ground_truth_joined_unmatched_and_rejected(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    await served.stub.LogPredictions(pb.LogPredictionsRequest(events=events(split[1].iloc[:3])))
    labels = [
        pb.GroundTruth(event_id="e-0", label=1, observed_time=to_timestamp(T0)),
        pb.GroundTruth(
            applicant=pb.ApplicantKey(
                applicant_id=1, application_time=to_timestamp(T0 + timedelta(minutes=1))
            ),
            label=0,
            observed_time=to_timestamp(T0),
        ),
        pb.GroundTruth(event_id="not-yet", label=0, observed_time=to_timestamp(T0)),
        pb.GroundTruth(event_id="e-2", observed_time=to_timestamp(T0)),  # label missing
        pb.GroundTruth(event_id="e-2", label=2, observed_time=to_timestamp(T0)),
        pb.GroundTruth(label=1, observed_time=to_timestamp(T0)),  # no key
    ]
    response = await served.stub.LogGroundTruth(pb.LogGroundTruthRequest(labels=labels))
    assert (response.joined, response.unmatched) == (2, 1)
    fields = {r.index: [v.field for v in r.violations] for r in response.rejected}
    assert fields == {3: ["labels[3].label"], 4: ["labels[4].label"], 5: ["labels[5].key"]}


async def test_compute_drift_reports_triggers_and_reads(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    current = split[1]
    await served.stub.LogPredictions(pb.LogPredictionsRequest(events=events(current.iloc[:150], prefix="a")))
    shifted = shift(current.iloc[150:350].reset_index(drop=True), 5)
    await served.stub.LogPredictions(
        pb.LogPredictionsRequest(events=events(shifted, prefix="b", version=2, minutes=150))
    )
    response = await served.stub.ComputeDrift(
        pb.ComputeDriftRequest(window=window_proto(), dataset_uri=str(reference_file))
    )
    v1, v2 = response.reports
    assert (v1.model_version, v2.model_version) == (1, 2)
    assert v1.status == pb.REPORT_STATUS_OK
    assert not v1.dataset_drift
    assert v2.dataset_drift
    assert v2.drift_share > 0
    assert "Holm" in v2.dataset_drift_rule
    assert [f.feature for f in v2.features] == sorted(ATTRIBUTES)
    age = next(f for f in v2.features if f.feature == "age_in_years")
    assert age.HasField("p_value")
    assert age.HasField("psi")
    assert age.psi_band == pb.PSI_BAND_SHIFTED
    assert age.kind == pb.FEATURE_KIND_NUMERIC
    assert age.status == pb.FEATURE_DRIFT_STATUS_COMPUTED
    purpose = next(f for f in v2.features if f.feature == "purpose")
    assert not purpose.HasField("out_of_range_share")
    assert v2.prediction_drift.feature == "probability_of_default"
    assert v2.html_report_url.endswith(f"/reports/{v2.id}.html")
    assert v2.reference.source == str(reference_file)
    assert v2.reference_row_count == len(split[0])
    (trigger,) = response.trigger_events
    assert trigger.registered_model.name == "credit-risk"
    assert trigger.registered_model.version == 2
    assert list(trigger.drift_report_ids) == [v2.id]
    assert pb.POLICY_KIND_DATASET_DRIFT in [r.kind for r in trigger.reasons]

    got = await served.stub.GetDriftReport(pb.GetDriftReportRequest(report_id=v2.id))
    assert got.report == v2
    page = await served.stub.ListDriftReports(
        pb.ListDriftReportsRequest(page_size=1, model_name="credit-risk")
    )
    assert [r.id for r in page.reports] == [v2.id]
    assert page.next_page_token
    rest = await served.stub.ListDriftReports(
        pb.ListDriftReportsRequest(page_size=1, page_token=page.next_page_token)
    )
    assert [r.id for r in rest.reports] == [v1.id]
    assert not rest.next_page_token
    only_v1 = await served.stub.ListDriftReports(pb.ListDriftReportsRequest(model_version=1))
    assert [r.id for r in only_v1.reports] == [v1.id]
    triggers = await served.stub.ListTriggerEvents(pb.ListTriggerEventsRequest(model_name="credit-risk"))
    assert [t.id for t in triggers.trigger_events] == [trigger.id]
    one = await served.stub.GetTriggerEvent(pb.GetTriggerEventRequest(trigger_event_id=trigger.id))
    assert one.trigger_event == trigger

    perf = await served.stub.GetPerformance(pb.GetPerformanceRequest(window=window_proto()))
    assert [p.model_version for p in perf.reports] == [1, 2]
    assert perf.reports[0].status == pb.REPORT_STATUS_INSUFFICIENT_DATA
    assert perf.reports[0].prediction_count == 150
    assert not perf.reports[0].HasField("roc_auc")


async def test_insufficient_window_is_not_an_error(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    await served.stub.LogPredictions(pb.LogPredictionsRequest(events=events(split[1].iloc[:20])))
    response = await served.stub.ComputeDrift(
        pb.ComputeDriftRequest(window=window_proto(), dataset_uri=str(reference_file))
    )
    (report,) = response.reports
    assert report.status == pb.REPORT_STATUS_INSUFFICIENT_DATA
    assert report.status_message == "20 rows < minimum 100"
    assert not report.dataset_drift
    assert not response.trigger_events


async def test_request_errors_name_the_field(
    served: Served, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    await served.stub.LogPredictions(pb.LogPredictionsRequest(events=events(split[1].iloc[:2])))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect_error(served.stub.ComputeDrift(pb.ComputeDriftRequest()), invalid, "'window'")
    no_name = window_proto()
    no_name.model_name = ""
    await expect_error(
        served.stub.ComputeDrift(pb.ComputeDriftRequest(window=no_name)), invalid, "'window.model_name'"
    )
    inverted = window_proto(minutes=-5)
    await expect_error(
        served.stub.GetPerformance(pb.GetPerformanceRequest(window=inverted)),
        invalid,
        "'window.time_range.end'",
    )
    await expect_error(
        served.stub.ListDriftReports(pb.ListDriftReportsRequest(page_size=-1)), invalid, "'page_size'"
    )
    await expect_error(
        served.stub.ListTriggerEvents(pb.ListTriggerEventsRequest(page_token="garbage")),
        invalid,
        "'page_token'",
    )
    not_found = grpc.StatusCode.NOT_FOUND
    await expect_error(
        served.stub.ComputeDrift(
            pb.ComputeDriftRequest(window=window_proto(version=7), dataset_uri=str(reference_file))
        ),
        not_found,
        "credit-risk/7",
    )
    await expect_error(
        served.stub.ComputeDrift(
            pb.ComputeDriftRequest(
                window=window_proto(), dataset_uri=str(reference_file.parent / "no-such.parquet")
            )
        ),
        not_found,
        "reference dataset",
    )
    await expect_error(  # outside DRIFT_SERVICE_DATASET_ROOTS: refused before anything is looked at
        served.stub.ComputeDrift(
            pb.ComputeDriftRequest(window=window_proto(), dataset_uri="/no/such.parquet")
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "DRIFT_SERVICE_DATASET_ROOTS",
    )
    await expect_error(
        served.stub.ComputeDrift(
            pb.ComputeDriftRequest(window=window_proto(), dataset_uri="s3://bucket/ref.parquet")
        ),
        invalid,
        "scheme 's3' not accepted",
    )
    await expect_error(
        served.stub.ComputeDrift(
            pb.ComputeDriftRequest(window=window_proto(), training_dataset=pb.TrainingDatasetReference())
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "registry-gateway",
    )
    await expect_error(
        served.stub.GetDriftReport(pb.GetDriftReportRequest(report_id="nope")), not_found, "'nope'"
    )
    await expect_error(
        served.stub.GetTriggerEvent(pb.GetTriggerEventRequest(trigger_event_id="nope")), not_found, "'nope'"
    )

"""Client timestamps out of range: a batch item fails on its own, a window names its field."""

from __future__ import annotations

import pytest
from creditrisk.common.v1 import time_range_pb2
from creditrisk.drift.v1 import drift_service_pb2 as pb
from creditrisk_kit import InvalidArgument
from drift_service import convert
from google.protobuf.timestamp_pb2 import Timestamp

T = Timestamp(seconds=1_709_285_400)


def _event(event_id: str, event_time: Timestamp) -> pb.PredictionEvent:
    return pb.PredictionEvent(
        event_id=event_id,
        model_name="credit-risk",
        model_version=1,
        probability_of_default=0.2,
        decision_threshold=0.5,
        event_time=event_time,
    )


def test_an_event_out_of_range_is_rejected_alone() -> None:
    request = pb.LogPredictionsRequest(
        events=[
            _event("ok", T),
            _event("nanos", Timestamp(seconds=T.seconds, nanos=-1)),
            _event("far", Timestamp(seconds=253_402_300_800)),
        ]
    )
    valid, rejected = convert.prediction_events(request, {}, max_items=10)
    assert [e.event_id for e in valid] == ["ok"]
    assert [(r.index, r.violations[0][0]) for r in rejected] == [
        (1, "events[1].event_time.nanos"),
        (2, "events[2].event_time"),
    ]


def test_labels_out_of_range_are_rejected_alone() -> None:
    request = pb.LogGroundTruthRequest(
        labels=[
            pb.GroundTruth(event_id="ok", label=1, observed_time=T),
            pb.GroundTruth(event_id="bad", label=0, observed_time=Timestamp(seconds=-(10**11))),
            pb.GroundTruth(
                applicant=pb.ApplicantKey(applicant_id=7, application_time=Timestamp(nanos=10**9)),
                label=0,
                observed_time=T,
            ),
        ]
    )
    valid, rejected = convert.ground_truth(request, max_items=10)
    assert [g.event_id for g in valid] == ["ok"]
    assert [(r.index, r.violations[0][0]) for r in rejected] == [
        (1, "labels[1].observed_time"),
        (2, "labels[2].applicant.application_time.nanos"),
    ]


def test_a_window_out_of_range_names_its_end() -> None:
    message = time_range_pb2.TimeRange(start=T, end=Timestamp(seconds=10**12))
    with pytest.raises(InvalidArgument) as caught:
        convert.time_range(message, "window.time_range", present=True)
    assert caught.value.field == "window.time_range.end"

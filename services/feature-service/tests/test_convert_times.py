"""Client timestamps out of range are INVALID_ARGUMENT naming the field, never INTERNAL."""

from __future__ import annotations

import pytest
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk_kit import InvalidArgument
from feature_service import convert
from google.protobuf.timestamp_pb2 import Timestamp

T = Timestamp(seconds=1_709_285_400)


def _row(**times: Timestamp) -> pb.PushRow:
    return pb.PushRow(values={"applicant_id": values_pb2.FeatureValue(int64_value=1)}, **times)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (_row(event_timestamp=Timestamp(seconds=T.seconds, nanos=-1)), "rows[1].event_timestamp.nanos"),
        (_row(event_timestamp=Timestamp(seconds=10**12)), "rows[1].event_timestamp"),
        (_row(event_timestamp=T, created_timestamp=Timestamp(seconds=-(10**11))), "rows[1].created_timestamp"),
    ],
)
def test_a_push_row_out_of_range_names_its_field(row: pb.PushRow, field: str) -> None:
    request = pb.PushRequest(push_source="loan_request_push", rows=[_row(event_timestamp=T), row])
    with pytest.raises(InvalidArgument) as caught:
        convert.push_rows(request)
    assert caught.value.field == field


def test_a_range_out_of_range_names_its_end() -> None:
    value = time_range_pb2.TimeRange(start=Timestamp(seconds=-(10**10)), end=T)
    with pytest.raises(InvalidArgument) as caught:
        convert.time_range(value, "application_time_range", present=True)
    assert caught.value.field == "application_time_range.start"

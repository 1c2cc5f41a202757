"""An audit query's time range out of range is INVALID_ARGUMENT naming the end, never INTERNAL."""

from __future__ import annotations

import pytest
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_kit import InvalidArgument
from google.protobuf.timestamp_pb2 import Timestamp
from registry_gateway.convert import audit_filter


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (Timestamp(nanos=-1), Timestamp(seconds=1), "time_range.start.nanos"),
        (Timestamp(seconds=1), Timestamp(seconds=10**12), "time_range.end"),
        (Timestamp(seconds=2_000_000_000), Timestamp(seconds=1_000_000_000), "time_range"),
    ],
)
def test_audit_time_range_errors_name_the_field(start: Timestamp, end: Timestamp, field: str) -> None:
    request = pb.ListAuditRecordsRequest()
    request.time_range.start.CopyFrom(start)
    request.time_range.end.CopyFrom(end)
    with pytest.raises(InvalidArgument) as caught:
        audit_filter(request)
    assert caught.value.field == field

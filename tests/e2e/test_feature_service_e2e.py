"""The feature-service as its own process (embedded profile), called through the client package only.

The stack ingests the German credit data with ``python -m feature_service.ingest`` in the service's
environment, starts ``python -m feature_service`` under the supervisor and waits for gRPC health
SERVING. This test then materializes, reads online features of real applicants, builds a small
point-in-time dataset, and stops the process (SIGTERM: the service drains and exits 0).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import grpc
import pyarrow as pa
import pytest
from creditrisk.common.v1 import arrow_pb2, time_range_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as pb
from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from e2e_stack import GERMAN_CSV, Stack, authed_channel
from google.protobuf import timestamp_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return out


def _arrow_chunk(table: pa.Table, sequence: int) -> pb.GetHistoricalFeaturesRequest:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return pb.GetHistoricalFeaturesRequest(
        entity_rows=arrow_pb2.ArrowChunk(
            arrow_ipc_stream=sink.getvalue().to_pybytes(), row_count=table.num_rows, sequence=sequence
        )
    )


def test_materialize_online_and_historical_over_grpc(stack: Stack) -> None:
    with open(GERMAN_CSV, newline="") as handle:
        applicants = list(csv.DictReader(handle))[:3]
    with authed_channel(stack.target("feature-service")) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)

        materialized = stub.Materialize(
            pb.MaterializeRequest(
                range=time_range_pb2.TimeRange(
                    start=_ts(datetime(2022, 1, 1, tzinfo=UTC)), end=_ts(datetime.now(UTC))
                )
            ),
            timeout=60,
        )
        assert [v.feature_view for v in materialized.views] == [
            "credit_standing",
            "demographics",
            "employment_and_residence",
            "loan_request",
            "protected_attributes",
        ]

        online = stub.GetOnlineFeatures(
            pb.GetOnlineFeaturesRequest(
                feature_service="credit_risk_v1",
                feature_service_version="1",
                entity_rows=[
                    pb.EntityRow(join_keys={"applicant_id": values_pb2.FeatureValue(int64_value=i)})
                    for i in (1, 2, 3)
                ],
            ),
            timeout=10,
        )
        names = [f.name for f in online.features]
        for row, applicant in zip(online.rows, applicants, strict=True):
            values = dict(zip(names, row.values, strict=True))
            assert values["credit_amount"].status == pb.FEATURE_STATUS_PRESENT
            assert values["credit_amount"].value.int64_value == int(applicant["credit_amount"])
            assert values["purpose"].value.string_value == applicant["purpose"]

        entity = pa.table(
            {
                "applicant_id": pa.array([1, 2, 3, 1], pa.int64()),
                "event_timestamp": pa.array(
                    [datetime(2026, 1, 1, tzinfo=UTC)] * 3 + [datetime(2022, 1, 1, tzinfo=UTC)],
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        messages = [
            pb.GetHistoricalFeaturesRequest(
                query=pb.HistoricalFeaturesQuery(
                    features=pb.FeatureRefs(refs=["loan_request:credit_amount"]), max_chunk_rows=2
                )
            ),
            _arrow_chunk(entity.slice(0, 2), 0),
            _arrow_chunk(entity.slice(2), 1),
        ]
        chunks = []
        for message in stub.GetHistoricalFeatures(iter(messages), timeout=60):
            if message.WhichOneof("payload") == "chunk":
                chunks.append(pa.ipc.open_stream(message.chunk.arrow_ipc_stream).read_all())
            elif message.WhichOneof("payload") == "summary":
                assert message.summary.row_count == 4
        result = pa.concat_tables(chunks)
        assert len(chunks) == 2
        # before any application (2022): no value, and the row is kept
        assert result.column("credit_amount").to_pylist() == [
            *(int(a["credit_amount"]) for a in applicants),
            None,
        ]


def test_stop_drains_and_exits_cleanly(stack: Stack) -> None:
    stack.target("feature-service")
    assert stack.stop("feature-service") == 0


def test_catalogue_push_and_incremental_materialization(stack: Stack) -> None:
    """The other RPCs across processes: List/Get services and views, Push, MaterializeIncremental."""
    with authed_channel(stack.target("feature-service")) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)

        services = stub.ListFeatureServices(pb.ListFeatureServicesRequest(page_size=1), timeout=10)
        assert len(services.feature_services) == 1
        assert services.next_page_token
        credit = stub.GetFeatureService(pb.GetFeatureServiceRequest(name="credit_risk_v1"), timeout=10)
        assert credit.feature_service.version == "1"
        inputs = {f.name for p in credit.feature_service.projections for f in p.features}
        assert {"credit_amount", "monthly_installment"} <= inputs
        assert not inputs & {"personal_status_and_sex", "foreign_worker"}  # the default feature policy
        views = stub.ListFeatureViews(pb.ListFeatureViewsRequest(page_size=100), timeout=10)
        assert "loan_request" in {v.name for v in views.feature_views}
        loan = stub.GetFeatureView(pb.GetFeatureViewRequest(name="loan_request"), timeout=10)
        assert {f.name for f in loan.feature_view.features} >= {"credit_amount", "purpose"}
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetFeatureView(pb.GetFeatureViewRequest(name="ghost_view"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "ghost_view" in (missing.value.details() or "")

        now = datetime.now(UTC)
        value = values_pb2.FeatureValue
        pushed = stub.Push(
            pb.PushRequest(
                push_source="loan_request_push",
                target=pb.PUSH_TARGET_ONLINE,
                rows=[
                    pb.PushRow(
                        values={
                            "applicant_id": value(int64_value=900_001),
                            "duration_in_month": value(int64_value=24),
                            "credit_amount": value(int64_value=4_800),
                            "purpose": value(string_value="business"),
                            "installment_rate_in_percentage_of_disposable_income": value(int64_value=2),
                            "other_debtors_or_guarantors": value(string_value="none"),
                            "other_installment_plans": value(string_value="none"),
                        },
                        event_timestamp=_ts(now),
                    )
                ],
            ),
            timeout=30,
        )
        assert pushed.rows_written == 1
        online = stub.GetOnlineFeatures(
            pb.GetOnlineFeaturesRequest(
                features=pb.FeatureRefs(
                    refs=["loan_request:credit_amount", "loan_affordability:monthly_installment"]
                ),
                entity_rows=[pb.EntityRow(join_keys={"applicant_id": value(int64_value=900_001)})],
            ),
            timeout=10,
        )
        by_name = dict(zip([f.name for f in online.features], online.rows[0].values, strict=True))
        assert by_name["credit_amount"].value.int64_value == 4_800
        assert by_name["monthly_installment"].value.double_value == pytest.approx(200.0)

        incremental = stub.MaterializeIncremental(
            pb.MaterializeIncrementalRequest(end_time=_ts(now)), timeout=60
        )
        assert incremental.views

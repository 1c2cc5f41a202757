"""The training-service takes what is product-specific from its product (``product.toml``): the
request defaults (label source, gate window), the feature policy, the cost matrix, the frame's key
and label columns and the fairness feature service; an invalid product stops the process with
status 2 naming the file and the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from conftest import product_variant
from creditrisk.common.v1 import refs_pb2, time_range_pb2
from creditrisk.training.v1 import training_service_pb2 as pb
from creditrisk_products import Product
from creditrisk_testing import entrypoints as ep
from creditrisk_testing.products import german_variant
from google.protobuf import timestamp_pb2
from training_service import convert
from training_service.jobs import TrainingJobs
from training_service.policy import FeaturePolicy, FrameColumns
from training_service.spec import Algorithm, EvaluationProtocol, ModelSpec
from training_service.training import TrainingSpec, train
from training_service.training_set import FeatureServiceInfo, to_frame

#: Another product: the German files under other names, another cost matrix and gate window, no
#: fairness feature service.
OTHER = {
    'join_key = "applicant_id"': 'join_key = "loan_id"',
    'view = "credit_label"\ncolumn = "creditability"\npositive_class = "bad"': (
        'view = "loan_outcome"\ncolumn = "defaulted"\npositive_class = "default"'
    ),
    'fairness_service = "credit_risk_fairness_v1"': 'fairness_service = ""',
    'protected_attributes = ["personal_status_and_sex", "foreign_worker"]': (
        'protected_attributes = ["foreign_worker"]'
    ),
    "false_negative_cost = 5.0": "false_negative_cost = 2.0",
    "window_days = 60": "window_days = 30",
}


@pytest.fixture
def other(tmp_path: Path) -> Product:
    return product_variant(tmp_path, OTHER)


def _ts(year: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(datetime(year, 1, 1, tzinfo=UTC))
    return out


def _spec(**fields: Any) -> pb.TrainingJobSpec:
    return pb.TrainingJobSpec(
        feature_service=refs_pb2.FeatureServiceRef(name="model_features"),
        application_time_range=time_range_pb2.TimeRange(start=_ts(2023), end=_ts(2025)),
        model=pb.ModelSpec(algorithm=pb.ALGORITHM_LOGISTIC_REGRESSION),
        seed=3,
        **fields,
    )


def test_request_defaults_are_the_products(german: Product, other: Product) -> None:
    for product in (german, other):
        job = convert.parse_spec(_spec(), convert.Defaults(), product)
        assert (job.label_view, job.label_column) == (product.label.view, product.label.column)
        assert job.training.evaluation.gate_window_days == product.gate.window_days
        assert job.training.policy == FeaturePolicy.default(product)
        assert job.training.costs.false_negative == product.decision.false_negative_cost
        echoed = convert.echo_spec(job, "1")
        assert echoed.label.feature_view == product.label.view
        assert echoed.excluded_features.reason == product.features.protected_reason
    job = convert.parse_spec(_spec(), convert.Defaults(), other)
    assert job.training.policy.columns == FrameColumns("loan_id", "defaulted", "int64", "default")
    assert job.training.policy.excluded == ("foreign_worker",)
    assert (job.training.costs.false_negative, job.training.costs.false_positive) == (2.0, 1.0)
    # what a request gives wins over the product
    given = _spec(
        label=pb.LabelSource(feature_view="other_labels", label_column="late"),
        evaluation=pb.EvaluationProtocol(gate_window_days=90),
    )
    job = convert.parse_spec(given, convert.Defaults(), other)
    assert (job.label_view, job.label_column) == ("other_labels", "late")
    assert job.training.evaluation.gate_window_days == 90
    # a label column alone keeps the product's view
    job = convert.parse_spec(_spec(label=pb.LabelSource(label_column="late")), convert.Defaults(), other)
    assert (job.label_view, job.label_column) == ("loan_outcome", "late")


def test_another_products_frame_trains_under_its_own_names(
    credit_frame: pd.DataFrame, other: Product
) -> None:
    frame = credit_frame.rename(columns={"applicant_id": "loan_id", "creditability": "defaulted"})
    spec = TrainingSpec.for_product(
        other,
        model=ModelSpec(Algorithm.LOGISTIC_REGRESSION),
        evaluation=EvaluationProtocol(cv_folds=3, cv_repeats=1, gate_window_days=other.gate.window_days),
        seed=5,
    )
    outcome = train(frame, spec, fast_scorer=False)
    assert "loan_id" not in outcome.schema.names
    assert "defaulted" not in outcome.schema.names
    assert "personal_status_and_sex" in outcome.schema.names  # not protected in this product
    assert "foreign_worker" not in outcome.schema.names
    assert outcome.row_counts["bad"] == int(frame["defaulted"].sum())
    assert set(outcome.fairness) == {"foreign_worker"}
    assert outcome.spec.costs.false_negative == 2.0
    # the German frame's label is not this product's: a clear refusal, not a KeyError
    from creditrisk_kit import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="no label column 'defaulted'"):
        train(credit_frame, spec, fast_scorer=False)


def test_the_requested_label_column_is_named_as_the_products(other: Product) -> None:
    columns = FrameColumns.of(other)
    table = pa.table(
        {
            "loan_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([datetime(2024, 1, 1), datetime(2024, 1, 2)], pa.timestamp("us")),
            "late": pa.array([0, 1], pa.int64()),
            "x": pa.array([0.5, 1.5]),
        }
    )
    frame = to_frame(table, "late", columns)
    assert list(frame.columns) == ["loan_id", "event_timestamp", "defaulted", "x"]
    assert str(frame["event_timestamp"].dt.tz) == "UTC"
    assert frame["loan_id"].dtype == "int64"


class _Source:
    """The calls :meth:`TrainingJobs.start` makes to the feature-service, recorded."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def feature_service(self, name: str, expected_version: str = "", **_: Any) -> FeatureServiceInfo:
        self.asked.append(name)
        return FeatureServiceInfo(name, "1", ("duration_in_month", "foreign_worker"))

    async def label_view(self, name: str, **_: Any) -> None:
        self.asked.append(f"view:{name}")


async def test_no_fairness_feature_service_is_read_when_the_product_has_none(
    german: Product, other: Product
) -> None:
    for product, fairness in ((german, ["credit_risk_fairness_v1"]), (other, [])):
        source = _Source()
        jobs = TrainingJobs(source, product=product, tracking_uri="http://127.0.0.1:1")  # type: ignore[arg-type]
        job = await jobs.start(pb.StartTrainingJobRequest(spec=_spec()))
        jobs.cancel(job.id, "test")
        assert source.asked == ["model_features", f"view:{product.label.view}", *fairness]
        await jobs.close(timeout_s=5)


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_an_invalid_product_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = german_variant(tmp_path, {"window_days = 60": "window_days = 0"})
    env = ep.service_environment(
        "TRAINING_SERVICE_",
        feature_service_address=ep.unreachable(),
        mlflow_tracking_uri=f"http://{ep.unreachable()}",
        products_dir=str(bad.parent),
    )
    done = ep.run_to_exit("training_service", env)
    assert done.returncode == 2, done.stderr
    assert str(bad / "product.toml") in done.stderr
    assert "[gate].window_days" in done.stderr

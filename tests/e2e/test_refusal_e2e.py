"""The refusal test against the real processes (issue 18, "the refusal test enumerates"): every
method the server registers, found through its server reflection, is called without a credential,
with a wrong one and with a key holding every role but the method's
(:mod:`creditrisk_testing.refusal`); all must be refused (UNAUTHENTICATED, UNAUTHENTICATED,
PERMISSION_DENIED), health and reflection excepted. The roles below are the contract
(docs/security.md): a method the server registers that is not in them fails the test, as it fails
the server's start."""

from __future__ import annotations

import pytest
from creditrisk_kit.auth import MethodPolicy, Role
from creditrisk_testing.refusal import check_grpc_refusals
from e2e_stack import PROMOTER_TOKEN, Stack, authed_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FEATURE_SERVICE = MethodPolicy.for_service(
    "creditrisk.feature.v1.FeatureStoreService",
    {
        "GetOnlineFeatures": Role.READ_FEATURES,
        "GetHistoricalFeatures": Role.READ_FEATURES,
        "ListFeatureServices": Role.READ_FEATURES,
        "GetFeatureService": Role.READ_FEATURES,
        "ListFeatureViews": Role.READ_FEATURES,
        "GetFeatureView": Role.READ_FEATURES,
        "Push": Role.WRITE_FEATURES,
        "Materialize": Role.WRITE_FEATURES,
        "MaterializeIncremental": Role.WRITE_FEATURES,
    },
)


def test_feature_service_refuses_every_method_without_its_role(stack: Stack) -> None:
    target = stack.target("feature-service")
    report = check_grpc_refusals(target, FEATURE_SERVICE)
    print(f"feature-service: {report.summary()}")  # the figure of docs/security.md
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == len(FEATURE_SERVICE)
    with authed_channel(target, PROMOTER_TOKEN) as channel:  # health stays public, a key still works
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            == health_pb2.HealthCheckResponse.SERVING
        )


TRAINING_SERVICE = MethodPolicy.for_service(
    "creditrisk.training.v1.TrainingService",
    {
        "StartTrainingJob": Role.TRAIN,
        "GetTrainingJob": Role.TRAIN,
        "WatchTrainingJob": Role.TRAIN,
        "CancelTrainingJob": Role.TRAIN,
        "ListTrainingJobs": Role.TRAIN,
    },
)


def test_training_service_refuses_every_method_without_its_role(stack: Stack) -> None:
    report = check_grpc_refusals(stack.target("training-service"), TRAINING_SERVICE)
    print(f"training-service: {report.summary()}")  # the figure of docs/security.md
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == len(TRAINING_SERVICE)

"""The refusal test against the real processes (issue 18, "the refusal test enumerates"): every
method the server registers, found through its server reflection, is called without a credential,
with a wrong one and with a key holding every role but the method's
(:mod:`creditrisk_testing.refusal`); all must be refused (UNAUTHENTICATED, UNAUTHENTICATED,
PERMISSION_DENIED), health and reflection excepted. The roles below are the contract
(docs/security.md): a method the server registers that is not in them fails the test, as it fails
the server's start.

Every process knows the refusal keys through the session's ``secrets/api-keys.json``
(e2e_stack.write_session_keys merges them in): the feature-, training- and drift-services and the
registry-gateway read it as ``<PREFIX>_AUTH_API_KEYS_FILE``. The drift-service's HTML report
server is checked too (401 / 401 / 403 for a report that exists)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from creditrisk_kit.auth import MethodPolicy, Role
from creditrisk_testing.refusal import WRONG_CREDENTIAL, check_grpc_refusals, lower_role_key
from e2e_stack import PROMOTER_TOKEN, TLS, VERIFY, Stack, authed_channel, drift_data_dir
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: The session's CA: every server of the stack speaks TLS only.
CA = TLS.ca_cert.read_bytes()

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
    report = check_grpc_refusals(target, FEATURE_SERVICE, root_certificates=CA)
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
    report = check_grpc_refusals(
        stack.target("training-service"), TRAINING_SERVICE, root_certificates=TLS.ca_cert.read_bytes()
    )
    print(f"training-service: {report.summary()}")  # the figure of docs/security.md
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == len(TRAINING_SERVICE)


DRIFT_SERVICE = MethodPolicy.for_service(
    "creditrisk.drift.v1.DriftService",
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


def _report_status(url: str, credential: str | None) -> int:
    headers = {"authorization": f"Bearer {credential}"} if credential else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10, context=VERIFY
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_drift_service_refuses_every_method_and_report_without_its_role(stack: Stack) -> None:
    target = stack.target("drift-service")
    report = check_grpc_refusals(target, DRIFT_SERVICE, root_certificates=CA)
    print(f"drift-service: {report.summary()}")  # the figure of docs/security.md
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == len(DRIFT_SERVICE)
    # the HTML report server: a report that exists, refused three ways, served with the role
    reports = drift_data_dir(stack) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "refusal-e2e.html").write_text("<!DOCTYPE html><p>refusal</p>")
    url = f"https://127.0.0.1:{stack.ports['drift-service-report']}/reports/refusal-e2e.html"
    got = [_report_status(url, key) for key in (None, WRONG_CREDENTIAL, lower_role_key(Role.READ_MONITORING))]
    print(f"drift-service reports: {got} (no credential, wrong, lower role)")
    assert got == [401, 401, 403]
    assert _report_status(url, PROMOTER_TOKEN) == 200


REGISTRY_GATEWAY = MethodPolicy.for_service(
    "creditrisk.registry.v1.ModelRegistryService",
    {
        "RegisterModelVersion": Role.REGISTER,
        "ListRegisteredModels": Role.READ_REGISTRY,
        "ListModelVersions": Role.READ_REGISTRY,
        "GetModelVersion": Role.READ_REGISTRY,
        "SetAlias": Role.PROMOTE,
        "DeleteAlias": Role.ADMIN,
        "EvaluatePromotion": Role.READ_REGISTRY,
        "PromoteModelVersion": Role.PROMOTE,
        "RollbackChampion": Role.ADMIN,
        "RevokeModelVersion": Role.ADMIN,
        "WatchAliases": Role.READ_REGISTRY,
        "ListAuditRecords": Role.READ_REGISTRY,
    },
)


def test_registry_gateway_refuses_every_method_without_its_role(stack: Stack) -> None:
    report = check_grpc_refusals(
        stack.target("registry-gateway"), REGISTRY_GATEWAY, root_certificates=TLS.ca_cert.read_bytes()
    )
    print(f"registry-gateway: {report.summary()}")  # the figure of docs/security.md
    report.assert_all_refused()
    assert len(report.methods) - len(report.public) == len(REGISTRY_GATEWAY)

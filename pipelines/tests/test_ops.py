"""Argument checks and error mapping of the components' gRPC calls (no kfp involved)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from conftest import FakeTrainingService
from creditrisk.common.v1 import serving_pb2
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk.training.v1 import training_service_pb2 as tpb
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_pipelines import ops
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status


def test_times_need_an_offset_and_an_order() -> None:
    assert ops.parse_time("2025-01-01T00:00:00Z", "x") == datetime(2025, 1, 1, tzinfo=UTC)
    assert ops.parse_time("2025-01-01T01:00:00+01:00", "x") == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"training_start.*no UTC offset"):
        ops.parse_time("2025-01-01T00:00:00", "training_start")
    with pytest.raises(ValueError, match=r"window_end='soon' is not an ISO 8601"):
        ops.parse_time("soon", "window_end")
    with pytest.raises(ValueError, match=r"end .* must be after start"):
        ops.time_range("2025-01-02T00:00:00Z", "2025-01-01T00:00:00Z")


def test_hyperparameters_keep_their_json_types() -> None:
    parsed = ops.parse_hyperparameters('{"max_iter": 100, "C": 1.0, "penalty": "l2", "early_stopping": true}')
    assert parsed["max_iter"].WhichOneof("kind") == "int64_value"
    assert parsed["max_iter"].int64_value == 100
    assert parsed["C"].WhichOneof("kind") == "double_value"
    assert parsed["C"].double_value == 1.0
    assert parsed["penalty"].string_value == "l2"
    assert parsed["early_stopping"].WhichOneof("kind") == "bool_value"
    assert ops.parse_hyperparameters("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a JSON object, got list"),
        ("{max_iter: 1}", "not valid JSON"),
        ('{"max_iter": null}', r"hyperparameters_json\['max_iter'\] = None"),
        ('{"grid": [1, 2]}', r"hyperparameters_json\['grid'\]"),
        ('{"C": NaN}', r"hyperparameters_json\['C'\] = nan"),
    ],
)
def test_bad_hyperparameters_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ops.parse_hyperparameters(text)


def test_algorithm_names() -> None:
    assert ops.algorithm_number("hist_gradient_boosting") == tpb.ALGORITHM_HIST_GRADIENT_BOOSTING
    assert ops.algorithm_number("LOGISTIC_REGRESSION") == tpb.ALGORITHM_LOGISTIC_REGRESSION
    with pytest.raises(ValueError, match="algorithm='xgboost' is unknown; use one of hist_gradient_boosting"):
        ops.algorithm_number("xgboost")


@pytest.mark.parametrize(
    ("target", "message"), [("", "training_service is empty"), ("localhost", "has no port")]
)
def test_bad_addresses_are_named(target: str, message: str) -> None:
    request = ops.TrainingRequest(
        "credit_risk_v1",
        "",
        "credit_label",
        "creditability",
        "2023-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
        "logistic_regression",
    )
    with pytest.raises(ValueError, match=message):
        ops.train(target, request, "r")


def test_negative_evaluation_figures_are_refused() -> None:
    request = ops.TrainingRequest(
        "credit_risk_v1",
        "",
        "credit_label",
        "creditability",
        "2023-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
        "logistic_regression",
        cv_folds=-1,
    )
    with pytest.raises(ValueError, match="cv_folds=-1 must be an integer >= 0"):
        ops.build_training_spec(request)


def test_unavailable_is_retried_by_the_channel(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTrainingService(unavailable_first=2)
    target = serve(lambda server: tpb_grpc.add_TrainingServiceServicer_to_server(fake, server))
    request = ops.TrainingRequest(
        "credit_risk_v1",
        "1",
        "credit_label",
        "creditability",
        "2023-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
        "logistic_regression",
    )
    outcome = ops.train(target, request, "job/train", timeout_s=30)
    assert fake.attempts == 3  # two UNAVAILABLE answers, then the one that went through
    assert outcome.run_id == "run-abc"
    assert outcome.metrics == {"test_roc_auc": 0.77}
    assert fake.requests[0].request_id == "job/train"


def test_a_service_error_names_service_rpc_and_code(serve) -> None:  # type: ignore[no-untyped-def]
    class Refusing(tpb_grpc.TrainingServiceServicer):
        def StartTrainingJob(self, request, context):  # type: ignore[no-untyped-def]
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "spec.model.hyperparameters.max_iter: out of range"
            )

    target = serve(lambda server: tpb_grpc.add_TrainingServiceServicer_to_server(Refusing(), server))
    request = ops.TrainingRequest(
        "credit_risk_v1",
        "",
        "credit_label",
        "creditability",
        "2023-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
        "logistic_regression",
    )
    with pytest.raises(
        ops.ServiceCallError,
        match=r"training-service StartTrainingJob failed: INVALID_ARGUMENT: "
        r"spec\.model\.hyperparameters\.max_iter",
    ) as caught:
        ops.train(target, request, "r")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


class FakeRegistry(rpb_grpc.ModelRegistryServiceServicer):
    """champion = v1; promoting v2 is refused by the gate (FAILED_PRECONDITION + GateResult)."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def GetModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        self.metadata.append(dict(context.invocation_metadata()))
        return rpb.GetModelVersionResponse(model_version=rpb.ModelVersion(name=request.model.name, version=1))

    def PromoteModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        gate = rpb.GateResult(
            passed=False,
            champion=rpb.GateScore(version=1, roc_auc=0.80),
            challenger=rpb.GateScore(version=request.version, roc_auc=0.70),
            delta=-0.10,
            ci_lower=-0.15,
            ci_upper=-0.05,
            window_row_count=91,
            reasons=["lower bound -0.1500 of delta AUC is not above -margin -0.02"],
        )
        detail = any_pb2.Any()
        detail.Pack(gate)
        status = status_pb2.Status(
            code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="refused", details=[detail]
        )
        context.abort_with_status(rpc_status.to_status(status))


def test_a_gate_refusal_is_an_outcome_with_reasons(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeRegistry()
    target = serve(lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(fake, server))
    outcome = ops.promote(target, "secret", "credit-risk", 2)
    assert outcome.promoted is False
    assert outcome.champion_version == 1
    assert outcome.reasons == ["lower bound -0.1500 of delta AUC is not above -margin -0.02"]
    assert outcome.figures["delta"] == pytest.approx(-0.10)
    assert outcome.figures["window_rows"] == 91
    assert fake.metadata[0]["authorization"] == "Bearer secret"


def test_promote_needs_a_token_and_a_version() -> None:
    wanted = r"token is empty.*CREDITRISK_CREDENTIAL_FILE or CREDITRISK_CREDENTIAL"
    with pytest.raises(ValueError, match=wanted):
        ops.promote("127.0.0.1:1", "", "credit-risk", 2)
    with pytest.raises(ValueError, match="version=0 must be a registered version number"):
        ops.promote("127.0.0.1:1", "t", "credit-risk", 0)


def test_decide_reads_the_policy_verdict() -> None:
    assert ops.decide(2)[0] is True
    assert ops.decide(0) == (
        False,
        "no trigger event over the window: the champion stays, nothing to retrain",
    )
    assert ops.decide(0, force=True)[0] is True
    with pytest.raises(ValueError, match="trigger_count=-1"):
        ops.decide(-1)


class RolloutGateway(ipb_grpc.InferenceServiceServicer):
    """The champion slot serves v1, then v2 (not ready), then v2 ready; or refuses the caller."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls = 0
        self.refuse = refuse

    def ListServingModels(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.refuse:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no access to the serving slots")
        version, ready = [(1, True), (2, False), (2, True)][min(self.calls, 3) - 1]
        slot = ipb.ServingModel(slot=serving_pb2.SERVING_SLOT_CHAMPION, model_name="credit-risk", ready=ready)
        slot.model_version = version
        return ipb.ListServingModelsResponse(models=[slot])


def test_confirm_rollout_polls_until_the_champion_serves_the_version(serve) -> None:  # type: ignore[no-untyped-def]
    fake = RolloutGateway()
    target = serve(lambda server: ipb_grpc.add_InferenceServiceServicer_to_server(fake, server))
    result = ops.confirm_rollout(target, "credit-risk", 2, timeout_s=30, poll_s=0.01)
    assert (result["confirmed"], result["version"], fake.calls) == (True, 2, 3)
    refusing = RolloutGateway(refuse=True)
    target = serve(lambda server: ipb_grpc.add_InferenceServiceServicer_to_server(refusing, server))
    with pytest.raises(
        ops.ServiceCallError, match="inference-gateway ListServingModels failed: PERMISSION_DENIED: no access"
    ):
        ops.confirm_rollout(target, "credit-risk", 2, timeout_s=30, poll_s=0.01)
    with pytest.raises(TimeoutError, match=r"did not serve credit-risk v3 within 0 s \(last: credit-risk v2"):
        ops.confirm_rollout(
            serve(lambda server: ipb_grpc.add_InferenceServiceServicer_to_server(RolloutGateway(), server)),
            "credit-risk",
            3,
            timeout_s=0.3,
            poll_s=0.01,
        )


class RegisteringRegistry(rpb_grpc.ModelRegistryServiceServicer):
    """No registered model at first; a registration of run ``bad`` fails its checks."""

    def __init__(self) -> None:
        self.versions: list[rpb.ModelVersion] = []

    def ListModelVersions(self, request, context):  # type: ignore[no-untyped-def]
        if not self.versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"registered model {request.name!r}")
        return rpb.ListModelVersionsResponse(model_versions=self.versions)

    def RegisterModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        if request.run_id == "bad":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "model signature: missing input duration_months"
            )
        version = rpb.ModelVersion(name=request.registered_model_name, version=len(self.versions) + 1)
        version.run_id = request.run_id
        version.tags.update(request.tags)
        self.versions.append(version)
        return rpb.RegisterModelVersionResponse(model_version=version)


def test_register_is_idempotent_and_names_a_failed_check(serve) -> None:  # type: ignore[no-untyped-def]
    fake = RegisteringRegistry()
    target = serve(lambda server: rpb_grpc.add_ModelRegistryServiceServicer_to_server(fake, server))
    first = ops.register(target, "t", "run-1", "credit-risk", "credit_risk_v1", "job-1/register")
    again = ops.register(target, "t", "run-1", "credit-risk", "credit_risk_v1", "job-1/register")
    assert first == again == 1
    assert len(fake.versions) == 1
    with pytest.raises(
        ops.ServiceCallError,
        match="registry-gateway RegisterModelVersion failed: FAILED_PRECONDITION: model signature",
    ) as caught:
        ops.register(target, "t", "bad", "credit-risk", "credit_risk_v1", "job-2/register")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION

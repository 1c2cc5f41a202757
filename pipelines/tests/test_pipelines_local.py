"""Both pipelines end to end under kfp.local against contract-level fakes of every service: the
outputs flow from task to task, and the monitoring pipeline's condition runs (or skips) the
training sub-pipeline. (The real services: tests/e2e/test_pipelines_e2e.py in the root env.)"""

import json
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from conftest import FakeTrainingService
from creditrisk.common.v1 import serving_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk.training.v1 import training_service_pb2_grpc as tpb_grpc
from creditrisk_pipelines.local import run
from kfp import local

pytestmark = pytest.mark.slow  # each pipeline run under kfp.local: a process per component


class FakeFeatureStore(fpb_grpc.FeatureStoreServiceServicer):
    def __init__(self) -> None:
        self.calls = 0
        self.tokens: set[str] = set()

    def Materialize(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.tokens.add(dict(context.invocation_metadata()).get("authorization", ""))
        return fpb.MaterializeResponse(
            views=[fpb.MaterializationSummary(feature_view=v, rows_written=10) for v in ("a", "b")]
        )


class FakeRegistry(rpb_grpc.ModelRegistryServiceServicer):
    """Registers versions 1, 2, ...; the gate passes; champion is the last promoted version."""

    def __init__(self) -> None:
        self.versions: list[rpb.ModelVersion] = []
        self.champion = 0
        self.tokens: set[str] = set()
        self.lock = threading.Lock()

    def _auth(self, context) -> None:  # type: ignore[no-untyped-def]
        self.tokens.add(dict(context.invocation_metadata()).get("authorization", ""))

    def ListModelVersions(self, request, context):  # type: ignore[no-untyped-def]
        self._auth(context)
        if not self.versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"registered model {request.name} not found")
        return rpb.ListModelVersionsResponse(model_versions=list(reversed(self.versions)))

    def RegisterModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        self._auth(context)
        with self.lock:
            version = rpb.ModelVersion(
                name=request.registered_model_name,
                version=len(self.versions) + 1,
                run_id=request.run_id,
                tags=request.tags,
            )
            self.versions.append(version)
        return rpb.RegisterModelVersionResponse(model_version=version)

    def GetModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        self._auth(context)
        if not self.champion:
            context.abort(grpc.StatusCode.NOT_FOUND, "alias champion is not set")
        return rpb.GetModelVersionResponse(model_version=self.versions[self.champion - 1])

    def PromoteModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        self._auth(context)
        gate = rpb.GateResult(
            passed=True,
            challenger=rpb.GateScore(version=request.version, roc_auc=0.81),
            window_row_count=91,
            absolute_floor=0.7,
            reasons=["ROC AUC 0.8100 on 91 gate-window rows is at or above the floor 0.7"],
        )
        before, self.champion = self.champion, request.version
        change = rpb.AliasChange(model_name=request.name, alias="champion", to_version=request.version)
        if before:
            change.from_version = before
        return rpb.PromoteModelVersionResponse(gate=gate, change=change)


class FakeGateway(ipb_grpc.InferenceServiceServicer):
    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry

    def ListServingModels(self, request, context):  # type: ignore[no-untyped-def]
        slot = ipb.ServingModel(
            slot=serving_pb2.SERVING_SLOT_CHAMPION, alias="champion", model_name="credit-risk", ready=True
        )
        if self.registry.champion:
            slot.model_version = self.registry.champion
        return ipb.ListServingModelsResponse(models=[slot])


class FakeDrift(dpb_grpc.DriftServiceServicer):
    def __init__(self, triggers: int) -> None:
        self.triggers = triggers
        self.windows: list[dpb.Window] = []
        self.tokens: set[str] = set()

    def ComputeDrift(self, request, context):  # type: ignore[no-untyped-def]
        self.tokens.add(dict(context.invocation_metadata()).get("authorization", ""))
        self.windows.append(request.window)
        report = dpb.DriftReport(
            id="r1",
            model_version=1,
            status=dpb.REPORT_STATUS_OK,
            current_row_count=300,
            drift_share=0.2 if self.triggers else 0.0,
            dataset_drift=bool(self.triggers),
            html_report_url="http://drift/reports/r1.html",
        )
        events = [
            dpb.TriggerEvent(
                id=f"t{i}",
                reasons=[dpb.TriggerReason(kind=dpb.POLICY_KIND_DATASET_DRIFT, message="dataset drift")],
            )
            for i in range(self.triggers)
        ]
        return dpb.ComputeDriftResponse(reports=[report], trigger_events=events)

    def GetPerformance(self, request, context):  # type: ignore[no-untyped-def]
        self.tokens.add(dict(context.invocation_metadata()).get("authorization", ""))
        return dpb.GetPerformanceResponse(
            reports=[
                dpb.PerformanceReport(model_version=1, prediction_count=300, labelled_count=250, roc_auc=0.41)
            ]
        )


@pytest.fixture
def services(serve):  # type: ignore[no-untyped-def]
    def start(triggers: int = 0):  # type: ignore[no-untyped-def]
        fakes = {
            "feature": FakeFeatureStore(),
            "training": FakeTrainingService(),
            "registry": FakeRegistry(),
            "drift": FakeDrift(triggers),
        }
        fakes["gateway"] = FakeGateway(fakes["registry"])
        targets = {
            "feature_service": serve(
                lambda s: fpb_grpc.add_FeatureStoreServiceServicer_to_server(fakes["feature"], s)
            ),
            "training_service": serve(
                lambda s: tpb_grpc.add_TrainingServiceServicer_to_server(fakes["training"], s)
            ),
            "registry": serve(
                lambda s: rpb_grpc.add_ModelRegistryServiceServicer_to_server(fakes["registry"], s)
            ),
            "inference_gateway": serve(
                lambda s: ipb_grpc.add_InferenceServiceServicer_to_server(fakes["gateway"], s)
            ),
            "drift_service": serve(lambda s: dpb_grpc.add_DriftServiceServicer_to_server(fakes["drift"], s)),
        }
        return fakes, targets

    yield start
    local.init(runner=local.SubprocessRunner(use_venv=False))  # leave no session pointing at tmp


def test_the_training_pipeline_passes_each_output_on(services, credential: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fakes, targets = services()
    arguments = {k: v for k, v in targets.items() if k != "drift_service"}
    result = run("training", {**arguments, "hyperparameters_json": '{"max_iter": 7}'}, tmp_path / "kfp")
    assert result["outputs"] == {
        "run_id": "run-abc",
        "version": 1,
        "promoted": True,
        "champion_version": 1,
        "gate_reasons": "ROC AUC 0.8100 on 91 gate-window rows is at or above the floor 0.7",
    }
    assert set(result["tasks"]) == {"materialize", "train", "register", "promote", "confirm-rollout"}
    assert result["tasks"]["materialize"] == {"views": 2, "rows_written": 20}
    assert result["tasks"]["confirm-rollout"] == {"Output": True}
    assert fakes["feature"].calls == 1
    (request,) = fakes["training"].requests
    assert request.spec.model.hyperparameters["max_iter"].int64_value == 7
    (version,) = fakes["registry"].versions
    assert version.run_id == "run-abc"
    assert version.tags["pipelines.request_id"].endswith("/register")
    # the pipeline's one identity, from CREDITRISK_CREDENTIAL_FILE
    assert fakes["registry"].tokens == {f"Bearer {credential}"}
    assert fakes["feature"].tokens == {f"Bearer {credential}"}
    assert fakes["training"].tokens == {f"Bearer {credential}"}


@pytest.mark.parametrize("triggers", [0, 2])
def test_the_monitoring_pipeline_retrains_iff_a_trigger_fired(
    services, credential: str, tmp_path: Path, triggers: int
) -> None:  # type: ignore[no-untyped-def]
    fakes, targets = services(triggers)
    window = {"window_start": "2025-03-01T00:00:00Z", "window_end": "2025-04-01T00:00:00Z"}
    result = run("monitoring", {**targets, **window}, tmp_path / "kfp")
    outputs = result["outputs"]
    assert outputs["retrain"] is bool(triggers)
    assert outputs["trigger_count"] == triggers
    assert outputs["dataset_drift"] is bool(triggers)
    assert outputs["roc_auc"] == pytest.approx(0.41)
    assert outputs["labelled"] == 250
    assert fakes["drift"].tokens == {f"Bearer {credential}"}  # read_monitoring as the pipeline
    (window_seen,) = fakes["drift"].windows
    assert window_seen.time_range.start.ToJsonString() == "2025-03-01T00:00:00Z"
    assert not window_seen.HasField("model_version")  # 0 = every version
    trained = [path for path in result["tasks"] if path.endswith("/train") or path == "train"]
    if triggers:
        assert len(trained) == 1  # the training sub-pipeline ran inside the condition
        assert len(fakes["training"].requests) == 1
        assert fakes["registry"].champion == 1
    else:
        assert trained == []
        assert fakes["training"].requests == []
        assert fakes["registry"].versions == []


def test_a_training_run_is_one_trace_with_each_component_and_its_calls(  # type: ignore[no-untyped-def]
    services, credential: str, tmp_path: Path, monkeypatch
) -> None:
    from creditrisk_devstack.otlp import OtlpReceiver

    receiver = OtlpReceiver().start()
    try:
        for name, value in receiver.env().items():
            monkeypatch.setenv(name, value)  # inherited by the components' subprocesses
        fakes, targets = services()
        arguments = {k: v for k, v in targets.items() if k != "drift_service"}
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        result = run(
            "training",
            {
                **arguments,
                "traceparent": f"00-{caller_trace}-{caller_span}-01",
            },
            tmp_path / "kfp",
        )
        assert result["trace_id"] == caller_trace  # the run continues the caller's trace
        root_span = result["traceparent"].split("-")[2]
        assert root_span != caller_span
        components = ["materialize", "train", "register", "promote", "confirm-rollout"]
        wanted = {f"pipeline.{c}" for c in components}
        receiver.wait_for(lambda spans: wanted <= {s.name for s in spans}, timeout_s=30)
        spans = receiver.spans()
        assert {s.trace_id for s in spans if s.service == "pipelines"} <= {caller_trace}
        by_name = {s.name: s for s in spans if s.name in wanted}
        for component in components:
            span = by_name[f"pipeline.{component}"]
            assert span.parent_span_id == root_span, component  # every component under the run's span
        # each component's gRPC calls are client spans under its span
        calls = {
            "materialize": "/creditrisk.feature.v1.FeatureStoreService/Materialize",
            "train": "/creditrisk.training.v1.TrainingService/StartTrainingJob",
            "register": "/creditrisk.registry.v1.ModelRegistryService/RegisterModelVersion",
            "promote": "/creditrisk.registry.v1.ModelRegistryService/PromoteModelVersion",
            "confirm-rollout": "/creditrisk.inference.v1.InferenceService/ListServingModels",
        }
        for component, rpc in calls.items():
            children = [s for s in spans if s.name == rpc and s.trace_id == caller_trace]
            assert children, (component, rpc, sorted({s.name for s in spans}))
            assert {s.parent_span_id for s in children} == {by_name[f"pipeline.{component}"].span_id}
        assert fakes["registry"].versions  # the run did its work
    finally:
        receiver.stop()


def test_the_credential_is_in_no_log_nor_executor_input(services, credential: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The run as the demo starts it (its own process, stdout and stderr into one log, the key
    file named by CREDITRISK_CREDENTIAL_FILE): every service gets the key, and it is nowhere in the
    log (each component's ``Got executor_input``, hence its ``--executor_input`` argument, included),
    the result or the task outputs."""
    fakes, targets = services()
    arguments = {k: v for k, v in targets.items() if k != "drift_service"}
    result, root = tmp_path / "result.json", tmp_path / "kfp"
    argv = [sys.executable, "-m", "creditrisk_pipelines.local", "training"]
    completed = subprocess.run(
        [*argv, "--arguments", json.dumps(arguments), "--output", str(result), "--pipeline-root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
        check=False,
    )
    log = completed.stdout
    assert completed.returncode == 0, log[-4000:]
    assert log.count("Got executor_input") == 5, log[-4000:]  # every component's input is logged ...
    assert credential not in log  # ... and the key is in none of them
    written = [path for path in root.rglob("*") if path.is_file()] + [result]
    assert len(written) > 5
    assert [path for path in written if credential in path.read_text(errors="replace")] == []
    for name in ("feature", "training", "registry"):
        assert fakes[name].tokens == {f"Bearer {credential}"}, name


def test_without_a_traceparent_the_run_id_names_the_trace() -> None:
    from creditrisk_pipelines.tracing import check_traceparent, parent_context, run_context
    from opentelemetry import trace

    first, again, other = run_context("job-1"), run_context("job-1"), run_context("job-2")
    assert (first.trace_id, first.span_id) == (again.trace_id, again.span_id)
    assert first.trace_id != other.trace_id
    span = trace.get_current_span(parent_context("", "job-1"))
    assert span.get_span_context().trace_id == first.trace_id
    given = parent_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "job-1")
    assert format(trace.get_current_span(given).get_span_context().trace_id, "032x") == (
        "4bf92f3577b34da6a3ce929d0e0e4736"
    )
    for bad in ("nope", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "00-4bf92f35-00f067aa0ba902b7-01"):
        with pytest.raises(ValueError, match="traceparent"):
            check_traceparent(bad)

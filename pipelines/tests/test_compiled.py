"""The compiled Kubeflow IR YAML: committed and fresh, retries and caching on the tasks, the
services' addresses as parameters, the components' image as a parameterized reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from creditrisk_pipelines import DEFAULT_IMAGE, IMAGE_ENV
from creditrisk_pipelines.compile import COMPILED_DIR, stale

SERVICE_TASKS = {
    "training": {"materialize", "train", "register", "promote", "confirm-rollout"},
    "monitoring": {"compute-drift", "compute-performance"},
}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPILED_DIR / f"{name}.yaml").read_text())


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the root DAG and of every sub-DAG, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_the_committed_yaml_is_what_the_code_compiles_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails CI on a pipeline changed without `make pipelines` (the committed YAML is stale)."""
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    assert stale() == []


@pytest.mark.parametrize("pipeline", ["training", "monitoring"])
def test_service_tasks_retry_and_are_never_cached(pipeline: str) -> None:
    tasks = _tasks(_load(pipeline))
    for name in SERVICE_TASKS["training"] | SERVICE_TASKS[pipeline]:
        task = tasks[name]
        assert task["retryPolicy"] == {
            "maxRetryCount": 2,
            "backoffDuration": "30s",
            "backoffFactor": 2.0,
            "backoffMaxDuration": "300s",
        }, name
        assert task["cachingOptions"] == {}, (
            f"{name}: caching must be off (its result depends on the services)"
        )


def test_the_pure_decision_is_cached_and_gates_the_training_pipeline() -> None:
    spec = _load("monitoring")
    tasks = _tasks(spec)
    assert tasks["decide"]["cachingOptions"] == {"enableCache": True}
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--decide-Output'] == true"
    )
    # the training pipeline runs inside the condition, as a sub-DAG
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"credit-risk-training"}


@pytest.mark.parametrize("pipeline", ["training", "monitoring"])
def test_addresses_are_parameters_without_defaults(pipeline: str) -> None:
    params = _load(pipeline)["root"]["inputDefinitions"]["parameters"]
    for name in ("feature_service", "training_service", "registry", "inference_gateway"):
        assert params[name]["parameterType"] == "STRING", name
        assert "defaultValue" not in params[name], name
    assert params["seed"]["parameterType"] == "NUMBER_INTEGER"
    assert params["cv_folds"]["parameterType"] == "NUMBER_INTEGER"
    assert params["hyperparameters_json"]["parameterType"] == "STRING"


@pytest.mark.parametrize("pipeline", ["training", "monitoring"])
def test_every_component_runs_in_the_pipelines_image_without_pip(pipeline: str) -> None:
    executors = _load(pipeline)["deploymentSpec"]["executors"]
    assert executors
    for name, executor in executors.items():
        assert executor["container"]["image"] == DEFAULT_IMAGE, name
        assert "pip install" not in " ".join(executor["container"]["command"]), name


def test_the_image_is_overridden_at_compile_time(tmp_path: Path) -> None:
    image = "registry.example.com/team/pipelines@sha256:" + "a" * 64
    subprocess.run(
        [sys.executable, "-m", "creditrisk_pipelines.compile", "--out", str(tmp_path), "--image", image],
        check=True,
        capture_output=True,
    )
    for name in ("training", "monitoring"):
        executors = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())["deploymentSpec"]["executors"]
        assert {e["container"]["image"] for e in executors.values()} == {image}


def test_a_stale_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    (tmp_path / "training.yaml").write_text(
        (COMPILED_DIR / "training.yaml").read_text().replace("30s", "31s")
    )
    problems = stale(tmp_path)
    assert len(problems) == 2
    assert "training.yaml is stale" in problems[0]
    assert "31s" in problems[0]
    assert "monitoring.yaml is missing" in problems[1]


@pytest.mark.parametrize("pipeline", ["training", "monitoring"])
def test_no_parameter_carries_a_credential(pipeline: str) -> None:
    """kfp logs every input (``Got executor_input``), passes it on the command line and stores it in
    the run's spec: the credential comes from the components' environment instead."""
    spec = _load(pipeline)
    definitions = [spec["root"]["inputDefinitions"]] + [
        component.get("inputDefinitions", {}) for component in spec["components"].values()
    ]
    names = {name for d in definitions for name in d.get("parameters", {})}
    assert {"feature_service", "registry"} <= names  # the parameters were read
    assert not {n for n in names if any(w in n for w in ("token", "credential", "secret", "key"))}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        if "component_span" in " ".join(executor["container"]["command"]):  # calls a service
            assert "pipeline_credential()" in " ".join(executor["container"]["command"]), name

"""Outgoing identity: the registry-gateway calls of the reference resolver carry the
drift-service's own credential (``DRIFT_SERVICE_CREDENTIAL(_FILE)``, the kit's
``outgoing_credential``, a file re-read on rotation); ``DRIFT_SERVICE_REGISTRY_TOKEN`` still works
as a deprecated alias, with a warning. Against an in-process registry-gateway stand-in that records
the ``authorization`` it gets and answers NOT_FOUND (no MLflow needed: nothing is downloaded)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from creditrisk.registry.v1 import registry_service_pb2_grpc as rpb_grpc
from creditrisk_kit import FailedPrecondition, NotFound
from drift_service.core import default_resolver
from drift_service.reference import RegistryGatewayTrainingDatasetResolver
from drift_service.settings import DriftServiceSettings
from pydantic import ValidationError

OWN = "drift-own-credential"


class Recorder(rpb_grpc.ModelRegistryServiceServicer):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def GetModelVersion(self, request: object, context: grpc.ServicerContext) -> object:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        self.seen.append(auth)
        if auth == "Bearer refused":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "GetModelVersion needs read_registry")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such version")


@pytest.fixture
def registry() -> Iterator[tuple[str, Recorder]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    recorder = Recorder()
    rpb_grpc.add_ModelRegistryServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        server.stop(None)


def wired(settings: DriftServiceSettings, target: str, **more: object) -> DriftServiceSettings:
    return DriftServiceSettings.model_validate(
        {
            **settings.model_dump(),
            "mlflow_tracking_uri": "http://127.0.0.1:1",  # never called: the registry answers first
            "registry_target": target,
            **more,
        }
    )


def training(settings: DriftServiceSettings) -> RegistryGatewayTrainingDatasetResolver:
    resolver = default_resolver(settings).training
    assert isinstance(resolver, RegistryGatewayTrainingDatasetResolver)
    return resolver


def test_the_own_credential_is_sent_and_a_file_reread(
    settings: DriftServiceSettings, registry: tuple[str, Recorder], tmp_path: Path
) -> None:
    target, recorder = registry
    resolver = training(wired(settings, target, credential=OWN))
    with pytest.raises(NotFound, match="credit-risk/3"):
        resolver.resolve("credit-risk", 3, None)
    resolver.close()
    assert recorder.seen == [f"Bearer {OWN}"]
    secret = tmp_path / "credential"
    secret.write_text("first\n")
    resolver = training(wired(settings, target, credential_file=str(secret)))
    with pytest.raises(NotFound):
        resolver.resolve("credit-risk", 3, None)
    secret.write_text("second-and-longer\n")  # rotated: another size, re-read at the next call
    with pytest.raises(NotFound):
        resolver.resolve("credit-risk", 3, None)
    resolver.close()
    assert recorder.seen[1:] == ["Bearer first", "Bearer second-and-longer"]


def test_a_refused_credential_names_the_setting(
    settings: DriftServiceSettings, registry: tuple[str, Recorder]
) -> None:
    target, _ = registry
    resolver = training(wired(settings, target, credential="refused"))
    with pytest.raises(FailedPrecondition, match=r"PERMISSION_DENIED.*set DRIFT_SERVICE_CREDENTIAL "):
        resolver.resolve("credit-risk", 3, None)
    resolver.close()


def test_the_deprecated_registry_token_still_works_with_a_warning(
    settings: DriftServiceSettings, registry: tuple[str, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    target, recorder = registry
    caplog.set_level(logging.WARNING, logger="drift_service")
    resolver = training(wired(settings, target, registry_token="legacy-viewer", credential=OWN))
    with pytest.raises(NotFound):
        resolver.resolve("credit-risk", 3, None)
    assert recorder.seen == ["Bearer legacy-viewer"]  # the alias wins while it is set
    (warning,) = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert "DRIFT_SERVICE_REGISTRY_TOKEN" in warning.getMessage()
    assert "legacy-viewer" not in caplog.text
    resolver.close()
    resolver = training(wired(settings, target, registry_token="refused"))
    with pytest.raises(FailedPrecondition, match="set DRIFT_SERVICE_REGISTRY_TOKEN "):
        resolver.resolve("credit-risk", 3, None)
    resolver.close()


def test_a_registry_target_needs_a_credential(settings: DriftServiceSettings) -> None:
    with pytest.raises(
        ValidationError, match="needs DRIFT_SERVICE_CREDENTIAL or DRIFT_SERVICE_CREDENTIAL_FILE"
    ):
        wired(settings, "127.0.0.1:1")

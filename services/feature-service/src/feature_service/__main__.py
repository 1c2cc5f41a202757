"""Entrypoint: ``python -m feature_service`` serves ``FeatureStoreService`` over gRPC.

Telemetry first (the standard ``OTEL_*`` variables), then the settings (``FEATURE_SERVICE_*``;
exit 2 naming a bad variable), the core, and the server: health NOT_SERVING until the online store
and the registry answer (``FeatureStoreCore.ready``), a drain on SIGTERM / SIGINT, telemetry flushed
at the end. Loading data is a separate command: ``python -m feature_service.ingest``.
"""

from __future__ import annotations

import asyncio
import logging

from creditrisk.feature.v1.feature_service_pb2_grpc import add_FeatureStoreServiceServicer_to_server
from creditrisk_kit import serve
from creditrisk_telemetry import configure_logging, configure_telemetry

from feature_service.core import FeatureStoreCore
from feature_service.servicer import SERVICE_NAME, FeatureStoreServiceServicer
from feature_service.settings import FeatureServiceSettings


async def main() -> None:
    """Run the feature-service until SIGTERM / SIGINT, then drain."""
    telemetry = configure_telemetry("feature-service")
    settings = FeatureServiceSettings.load_or_exit()
    configure_logging(settings.log_level)
    core = FeatureStoreCore(settings)
    logging.getLogger("feature_service").info(
        "feature-service: profile %s, project %s",
        settings.profile,
        settings.project,
        extra={"profile": settings.profile, "project": settings.project},
    )
    await serve(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: add_FeatureStoreServiceServicer_to_server(
            FeatureStoreServiceServicer(core), server
        ),
        readiness_checks={"feature store": core.ready},
        shutdown_hooks=[core.aclose, lambda: asyncio.to_thread(telemetry.shutdown)],
    )


if __name__ == "__main__":
    asyncio.run(main())

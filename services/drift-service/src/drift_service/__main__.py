"""Entrypoint: ``python -m drift_service`` serves ``DriftService`` over gRPC.

Telemetry first (the standard ``OTEL_*`` variables), then the settings (``DRIFT_SERVICE_*``; exit 2
naming a bad variable), the store (migrated to head), the HTML report server and the gRPC server
(with the kit's Prometheus endpoint on ``metrics_port``): health NOT_SERVING until the store
answers, a drain on SIGTERM / SIGINT, then the store, the report server and telemetry are closed.
"""

from __future__ import annotations

import asyncio
import logging

from creditrisk.drift.v1.drift_service_pb2_grpc import add_DriftServiceServicer_to_server
from creditrisk_kit import serve
from creditrisk_telemetry import configure_logging, configure_telemetry

from drift_service.core import DriftCore
from drift_service.drift import warm_up
from drift_service.reports_http import ReportServer
from drift_service.servicer import SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings


async def main() -> None:
    """Run the drift-service until SIGTERM / SIGINT, then drain."""
    telemetry = configure_telemetry("drift-service")
    settings = DriftServiceSettings.load_or_exit()
    configure_logging(settings.log_level)
    log = logging.getLogger("drift_service")
    reports = ReportServer(
        settings.reports_dir, settings.report_http_host, settings.report_http_port, settings.report_base_url
    ).start()
    core = await asyncio.to_thread(DriftCore, settings, report_base_url=reports.base_url)
    if settings.warm_up:
        await asyncio.to_thread(warm_up)
    log.info(
        "drift-service: profile %s, reports at %s, training-dataset reference %s",
        settings.profile,
        reports.base_url,
        (
            f"through the registry-gateway at {settings.registry_target}, rows from MLflow"
            if settings.registry_target
            else f"from MLflow at {settings.mlflow_tracking_uri}"
            if settings.mlflow_tracking_uri
            else "unwired"
        ),
        extra={"profile": settings.profile, "reports_url": reports.base_url},
    )
    await serve(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: add_DriftServiceServicer_to_server(DriftServiceServicer(core), server),
        readiness_checks={"event store": core.ready},
        shutdown_hooks=[
            lambda: asyncio.to_thread(core.close),
            lambda: asyncio.to_thread(reports.stop),
            lambda: asyncio.to_thread(telemetry.shutdown),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Entrypoint: ``python -m drift_service`` serves ``DriftService`` over gRPC.

The kit's one service entry (:func:`creditrisk_kit.run_service`): telemetry, the settings
(``DRIFT_SERVICE_*``; exit 2 naming a bad variable), JSON logs, then :func:`build`: the product
monitored (``DRIFT_SERVICE_PRODUCTS_DIR`` / ``DRIFT_SERVICE_PRODUCTS``: exit 2 naming the product
file and key when it is missing or invalid, :meth:`creditrisk_products.ProductSettings.served_product`), the
authenticator (the kit's ``DRIFT_SERVICE_AUTH_*``: exit 2 naming them when no credential source
is set and ``DRIFT_SERVICE_AUTH_DISABLED`` is not true), shared by the gRPC API
(:data:`~drift_service.servicer.POLICY`) and the report server (``read_monitoring``), the store
(migrated to head) and the HTML report server (bound here, so its URL goes into the reports; it
serves from the gRPC server's start, the kit's extra HTTP server), and the gRPC server (with the
kit's Prometheus endpoint on ``metrics_port``): health NOT_SERVING until the store answers, a drain
on SIGTERM / SIGINT, then the report server stops, the store closes and telemetry is flushed.
"""

from __future__ import annotations

import asyncio
import logging

from creditrisk.drift.v1.drift_service_pb2_grpc import add_DriftServiceServicer_to_server
from creditrisk_kit import Service, ServiceSpec, run_service
from creditrisk_kit.auth import Authenticator
from creditrisk_kit.secrets import env_from_files
from creditrisk_kit.tls import ServerTls

from drift_service.core import DriftCore
from drift_service.drift import warm_up
from drift_service.reports_http import ReportServer
from drift_service.servicer import POLICY, SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings


async def build(settings: DriftServiceSettings) -> Service:
    """The drift-service's authenticator, store, core, report server and servicer.

    Raises:
        SystemExit: status 2 naming the product file and key when the product is missing or
            invalid.
        AuthConfigurationError: no credential source and authentication not disabled (the kit's
            entry exits with status 2 naming the settings), or a key file that cannot be read.
    """
    product = await asyncio.to_thread(settings.served_product, "drift-service")
    authenticator = Authenticator.from_settings(settings)
    server_tls = ServerTls.from_settings(settings)
    reports = ReportServer(
        settings.reports_dir,
        settings.report_http_host,
        settings.report_http_port,
        settings.report_base_url,
        tls=server_tls.ssl_context() if server_tls is not None else None,
        authenticator=authenticator,
        idle_timeout_s=settings.http_idle_timeout_s,
        max_connections=settings.http_max_connections,
    )
    core = await asyncio.to_thread(DriftCore, settings, product, report_base_url=reports.base_url)
    if settings.warm_up:
        await asyncio.to_thread(warm_up)
    logging.getLogger("drift_service").info(
        "drift-service: product %s, profile %s, reports at %s, training-dataset reference %s",
        product.name,
        settings.profile,
        reports.base_url,
        (
            f"through the registry-gateway at {settings.registry_target}, rows from MLflow"
            if settings.registry_target
            else f"from MLflow at {settings.mlflow_tracking_uri}"
            if settings.mlflow_tracking_uri
            else "unwired"
        ),
        extra={"product": product.name, "profile": settings.profile, "reports_url": reports.base_url},
    )
    return Service(
        service_names=[SERVICE_NAME],
        register=lambda server: add_DriftServiceServicer_to_server(DriftServiceServicer(core), server),
        readiness_checks={"event store": core.ready},
        shutdown_hooks=[lambda: asyncio.to_thread(core.close)],
        http_server=reports,
        auth=POLICY,
        authenticator=authenticator,
    )


SPEC = ServiceSpec("drift-service", DriftServiceSettings, build)


def main() -> None:
    """Entry point: ``MLFLOW_TRACKING_PASSWORD`` from ``MLFLOW_TRACKING_PASSWORD_FILE`` when set
    (creditrisk_kit.secrets; exit 2 naming it when unreadable), then the service."""
    env_from_files(["MLFLOW_TRACKING_PASSWORD"])
    run_service(SPEC)


if __name__ == "__main__":
    main()

"""Entrypoint: ``python -m feature_service`` serves ``FeatureStoreService`` over gRPC.

The kit's one service entry (:func:`creditrisk_kit.run_service`): telemetry, the settings
(``FEATURE_SERVICE_*``; exit 2 naming a bad variable), JSON logs, then :func:`build` (the product:
exit 2 naming each problem of an invalid one) and the server:
health NOT_SERVING until the online store and the registry answer (``FeatureStoreCore.ready``), a
drain on SIGTERM / SIGINT, the core closed and telemetry flushed at the end. Loading data is a
separate command: ``python -m feature_service.ingest``.
"""

from __future__ import annotations

import logging

from creditrisk.feature.v1.feature_service_pb2_grpc import add_FeatureStoreServiceServicer_to_server
from creditrisk_kit import Service, ServiceSpec, run_service
from creditrisk_products import ProductError, UnknownProduct, exit_bad_product

from feature_service.core import FeatureStoreCore
from feature_service.servicer import POLICY, SERVICE_NAME, FeatureStoreServiceServicer
from feature_service.settings import FeatureServiceSettings


def build(settings: FeatureServiceSettings) -> Service:
    """The feature-service's core and servicer.

    Raises:
        SystemExit: status 2 when the product is missing or invalid (every problem on stderr).
    """
    try:
        core = FeatureStoreCore(settings)
    except (ProductError, UnknownProduct) as exc:
        exit_bad_product("feature-service", exc)
    project = core.settings.feast_project
    logging.getLogger("feature_service").info(
        "feature-service: product %s, profile %s, project %s",
        core.product.name,
        settings.profile,
        project,
        extra={"product": core.product.name, "profile": settings.profile, "project": project},
    )
    return Service(
        service_names=[SERVICE_NAME],
        register=lambda server: add_FeatureStoreServiceServicer_to_server(
            FeatureStoreServiceServicer(core), server
        ),
        readiness_checks={"feature store": core.ready},
        shutdown_hooks=[core.aclose],
        auth=POLICY,
    )


SPEC = ServiceSpec("feature-service", FeatureServiceSettings, build)

if __name__ == "__main__":
    run_service(SPEC)

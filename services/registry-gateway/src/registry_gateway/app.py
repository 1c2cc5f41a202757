"""Wiring: settings -> audit store, feature-service client, core, servicer, the kit's ``Service``
(shared by the entrypoint, ``python -m registry_gateway``, and the in-process tests)."""

from __future__ import annotations

import asyncio
import logging

from creditrisk_kit import Service
from creditrisk_kit.auth import Authenticator, outgoing_credential
from creditrisk_kit.tls import ClientTls

from registry_gateway.audit import AuditStore
from registry_gateway.auth import POLICY, legacy_keys
from registry_gateway.core import RegistryCore
from registry_gateway.features import FeatureServiceClient
from registry_gateway.servicer import SERVICE_NAME, RegistryServicer, register
from registry_gateway.settings import Settings

LOGGER = logging.getLogger("registry_gateway")


def build(settings: Settings) -> tuple[Service, RegistryCore]:
    """The service (``service.runner(settings)`` serves it) and its core, for the settings'
    product (an invalid one exits with status 2 naming its file and key); the audit store is
    migrated here."""
    product = settings.served_product("registry-gateway")
    signing_key = settings.signing_key()
    if signing_key is None:
        LOGGER.warning("no REGISTRY_GATEWAY_SIGNING_KEY_FILE: alias moves are not signed")
    else:
        LOGGER.info("alias moves signed with key %s", signing_key.key_id)
    store = AuditStore(settings.audit_db_url, settings.audit_db_schema)
    store.migrate()
    features = FeatureServiceClient(
        settings.feature_service_address,
        timeout_s=settings.feature_service_timeout_s,
        max_message_bytes=settings.max_message_bytes,
        tls=ClientTls.from_settings(settings),
        token=outgoing_credential(settings),
    )
    core = RegistryCore(
        tracking_uri=settings.mlflow_tracking_uri,
        store=store,
        features=features,
        gate=settings.gate_config(product),
        product=product,
        cache_dir=settings.cache_dir,
        watch_poll_interval_s=settings.watch_poll_interval_s,
        signing_key=signing_key,
    )

    async def close_store() -> None:
        await asyncio.to_thread(store.close)

    service = Service(
        service_names=[SERVICE_NAME],
        register=register(RegistryServicer(core)),
        readiness_checks={
            "mlflow": core.mlflow_healthy,
            "audit store": core.audit_healthy,
            "feature-service": features.serving,
        },
        shutdown_hooks=[core.close, close_store],
        auth=POLICY,
        authenticator=Authenticator.from_settings(settings, extra_keys=legacy_keys(settings)),
    )
    return service, core

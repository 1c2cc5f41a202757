"""Wiring: builds the clients, the core, and the kit's ``Service``: the gRPC servicer and, as its
extra HTTP server, the REST app (FastAPI on the kit's :class:`~creditrisk_kit.http.UvicornServer`),
both in one process on one event loop. ``python -m inference_gateway`` runs
:attr:`Gateway.service` with the kit's entry; the in-process tests use :meth:`Gateway.start` /
:meth:`Gateway.stop` (the same service on :attr:`Gateway.runner`).

Start: the prediction logger (delivers any disk backlog), the routing table (alias stream, slot
probes) (:meth:`Gateway.start_background`), the gRPC server (health NOT_SERVING until the
readiness checks pass), then uvicorn. Stop (SIGTERM / SIGINT, :meth:`Gateway.stop`): REST
readiness fails and gRPC health goes NOT_SERVING, the gRPC server drains (``grace_period_s``),
uvicorn finishes its in-flight requests, shadow scorings finish, the prediction logger writes what
is left in memory to the disk buffer, then the clients close.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.inference.v1 import inference_service_pb2_grpc as igrpc
from creditrisk_clients import DRIFT_ERRORS, DriftServiceClient
from creditrisk_kit import Service
from creditrisk_kit.auth import Authenticator, outgoing_credential
from creditrisk_kit.http import UvicornServer
from creditrisk_kit.tls import ClientTls, ServerTls
from creditrisk_products import Product

from inference_gateway import metrics
from inference_gateway.access import GRPC_POLICY, Access, Rate, RateLimiter
from inference_gateway.app import create_app
from inference_gateway.core import GatewayCore
from inference_gateway.credential import OWN_SETTING, REGISTRY_TOKEN_SETTING, refusal_handlers
from inference_gateway.features import FeatureClient
from inference_gateway.logbuffer import DurableBuffer, PredictionLogger
from inference_gateway.model_client import make_client
from inference_gateway.registry import RegistryClient
from inference_gateway.routing import Router
from inference_gateway.servicer import SERVICE_NAME, InferenceServicer
from inference_gateway.settings import GatewaySettings

_LOGGER = logging.getLogger(__name__)


async def _log_predictions(
    drift: DriftServiceClient, events: list[dpb.PredictionEvent], *, timeout_s: float
) -> None:
    """``LogPredictions`` of ``events`` within ``timeout_s`` seconds; raises unless the batch was
    accepted (the prediction logger then buffers it on disk and retries)."""
    response = await drift.log_predictions(events, timeout_s=timeout_s)
    if response.rejected:
        # Invalid events cannot become valid by retrying: logged, counted, not retried.
        _LOGGER.error(
            "drift-service rejected %d prediction events",
            len(response.rejected),
            extra={"event_ids": [r.event_id for r in response.rejected][:20]},
        )


class Gateway:
    """The whole process: core, gRPC server, REST server.

    Args:
        settings: validated settings.
        product: the product served; default: the one the settings name
            (``settings.catalog().get()``). The gateway reads its ``[features].model_service`` (the
            feature service read for enrichment), ``[entity].join_key`` (the name the contract's
            ``applicant_id`` is sent under to the feature-service), ``[serving].request_fields``
            (listed in the OpenAPI schema) and ``[product].registered_model`` (the slots' model,
            unless ``model_name`` is set).
    """

    def __init__(self, settings: GatewaySettings, product: Product | None = None):
        self.settings = settings
        s = settings
        self.product = product if product is not None else s.catalog().get()
        model_name = s.model_name or self.product.product.registered_model  # what the slots serve
        # Outgoing calls (feature-service, registry-gateway, drift-service, https:// model
        # servers) over TLS when the service's TLS_CA_FILE is set (creditrisk_kit.tls).
        client_tls = ClientTls.from_settings(s)
        model_ssl = client_tls.ssl_context() if client_tls is not None else None
        # Who may call (INFERENCE_GATEWAY_AUTH_*); raises AuthConfigurationError (exit 2) without a
        # credential source. The gateway's own identity (INFERENCE_GATEWAY_CREDENTIAL[_FILE]).
        self.authenticator = Authenticator.from_settings(s)
        self.credential = outgoing_credential(s)
        self.access = Access(
            RateLimiter(
                Rate(s.rate_limit_per_s, s.rate_limit_burst),
                {subject: Rate(r.per_s, r.burst) for subject, r in s.rate_limit_overrides.items()},
            ),
            s.echo_features_roles,
        )
        self.features = FeatureClient(
            s.feature_service_target,
            self.product.features.model_service,
            join_key=self.product.entity.join_key,
            deadline_s=s.feature_deadline_s,
            max_message_bytes=s.max_message_bytes,
            tls=client_tls,
            token=outgoing_credential(s),  # the gateway's own identity (INFERENCE_GATEWAY_CREDENTIAL)
        )
        registry_token = s.registry_token.get_secret_value()
        self.registry = RegistryClient(
            s.registry_target,
            # Deprecated REGISTRY_TOKEN first (a stack that still sets it), else the own credential
            # (read at each call: a rotated file is used from the next one).
            registry_token or self.credential,
            setting=REGISTRY_TOKEN_SETTING if registry_token else OWN_SETTING,
            deadline_s=s.registry_deadline_s,
            max_message_bytes=s.max_message_bytes,
            required_inputs_tag=s.required_inputs_tag,
            reconnect_max_s=s.registry_reconnect_max_s,
            tls=client_tls,
        )

        def client(url: str) -> Any:
            return make_client(
                s.model_protocol,
                url,
                model_name,
                deadline_s=s.model_deadline_s,
                retries=s.model_connect_retries,
                pool_size=s.model_pool_size,
                ssl_context=model_ssl,
                credential=self.credential,  # the slots check it (role predict)
            )

        self.router = Router(
            model_name,
            client(s.champion_url),
            client(s.challenger_url) if s.challenger_url and s.challenger_mode != "off" else None,
            challenger_mode=s.challenger_mode,
            canary_share=s.canary_share,
            registry=self.registry,
            probe_interval_s=s.slot_probe_interval_s,
            probe_failures=s.slot_probe_failures,
        )
        self.drift = DriftServiceClient.connect(
            s.drift_service_target,
            default_timeout_s=s.log_send_timeout_s,
            max_message_bytes=s.max_message_bytes,
            tls=client_tls,
            token=outgoing_credential(s),
            errors=DRIFT_ERRORS.with_handlers(
                refusal_handlers(
                    "drift-service",
                    accepts="the drift-service's DRIFT_SERVICE_AUTH_API_KEYS_FILE",
                    role="log_predictions",
                )
            ),
        )
        self.logger = PredictionLogger(
            functools.partial(_log_predictions, self.drift, timeout_s=s.log_send_timeout_s),
            DurableBuffer(s.buffer_path),
            batch_size=s.log_batch_size,
            flush_interval_s=s.log_flush_interval_s,
            memory_events=s.log_memory_events,
            retry_interval_s=s.log_retry_interval_s,
            max_bytes=s.buffer_max_bytes,
        )
        self.core = GatewayCore(
            features=self.features,
            registry=self.registry,
            router=self.router,
            logger=self.logger,
            feature_service_version=s.feature_service_version,
            max_batch_size=s.max_batch_size,
        )
        metrics.register_state_collector(self.core)
        self._draining = False
        self.app = create_app(
            self.core,
            body_limit=s.request_body_limit,
            draining=lambda: self._draining,
            naive_timestamps=s.naive_timestamps,
            authenticator=self.authenticator,
            access=self.access,
            product=self.product,
        )
        self.http = UvicornServer(
            self.app,
            host=s.http_host,
            port=s.http_port,
            grace_period_s=s.grace_period_s,
            name="REST",
            tls=ServerTls.from_settings(s),
            head_timeout_s=s.http_idle_timeout_s,  # a request head stalled this long: closed
        )
        self.service = Service(
            service_names=[SERVICE_NAME],
            register=lambda server: igrpc.add_InferenceServiceServicer_to_server(
                InferenceServicer(self.core, self.access), server
            ),
            readiness_checks={
                "feature-service": self.core.feature_service_ready,
                "champion slot": self._champion_ready,
                "prediction log buffer below cap": self._buffer_ok,
            },
            shutdown_hooks=[self._close],
            http_server=self.http,
            on_stop=self._begin_drain,
            auth=GRPC_POLICY,
            authenticator=self.authenticator,
        )
        """What ``python -m inference_gateway`` serves (after :meth:`start_background`)."""
        self.runner = self.service.runner(s)
        """The runner of :meth:`start` / :meth:`stop` (in-process use)."""
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    def _begin_drain(self) -> None:
        self._draining = True  # REST readiness fails from here on

    async def _champion_ready(self) -> bool:
        return self.core.champion_ready()

    async def _buffer_ok(self) -> bool:
        return self.core.buffer_below_cap()

    def start_background(self) -> None:
        """Start the prediction logger (delivers any disk backlog) and the routing table."""
        self.logger.start()
        self.router.start()

    async def start(self) -> None:
        """Start everything on :attr:`runner`; returns once both servers listen."""
        self.start_background()
        self.grpc_port = await self.runner.start()
        self.http_port = self.http.port

    async def _close(self) -> None:
        await self.core.wait_shadows()
        await self.logger.close()
        await self.router.close()
        await self.features.close()
        await self.registry.close()
        await self.drift.close()

    async def stop(self) -> None:
        """The graceful stop (see the module docstring); idempotent."""
        await self.runner.stop()

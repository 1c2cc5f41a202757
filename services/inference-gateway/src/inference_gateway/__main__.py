"""``python -m inference_gateway``: the kit's one service entry (:func:`creditrisk_kit.run_service`):
telemetry, settings validated (exit 2 naming the bad ``INFERENCE_GATEWAY_*`` variable), JSON logs,
the product served (exit 2 naming the product file and key when it is missing or invalid,
:meth:`creditrisk_products.ProductSettings.served_product`), then gRPC and REST (the kit's extra
HTTP server) in one process until SIGTERM / SIGINT and the drain
(:mod:`inference_gateway.service`)."""

from __future__ import annotations

from creditrisk_kit import Service, ServiceSpec, run_service

from inference_gateway.service import Gateway
from inference_gateway.settings import GatewaySettings


def build(settings: GatewaySettings) -> Service:
    """The gateway's service, its prediction logger and routing table started (in the event loop).

    Raises:
        SystemExit: status 2 naming the product file and key when the product is missing or
            invalid.
    """
    gateway = Gateway(settings, settings.served_product("inference-gateway"))
    gateway.start_background()
    return gateway.service


SPEC = ServiceSpec("inference-gateway", GatewaySettings, build)

if __name__ == "__main__":
    run_service(SPEC)

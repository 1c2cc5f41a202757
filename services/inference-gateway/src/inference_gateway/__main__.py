"""``python -m inference_gateway``: telemetry first, settings validated (exit 2 naming the bad
``INFERENCE_GATEWAY_*`` variable), then gRPC and REST in one process until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio

from creditrisk_telemetry import configure_logging, configure_telemetry

from inference_gateway.service import Gateway
from inference_gateway.settings import GatewaySettings


async def main() -> None:
    telemetry = configure_telemetry("inference-gateway")
    settings = GatewaySettings.load_or_exit()
    configure_logging(settings.log_level, service="inference-gateway")
    gateway = Gateway(settings, shutdown_hooks=[lambda: asyncio.to_thread(telemetry.shutdown)])
    await gateway.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""``python -m registry_gateway``: telemetry first, settings validated (exit 2 naming the variable),
audit store migrated, then serve until SIGTERM / SIGINT and drain."""

from __future__ import annotations

import asyncio
import os

from creditrisk_telemetry import configure_logging, configure_telemetry


async def _main() -> None:
    telemetry = configure_telemetry("registry-gateway")
    from registry_gateway.app import build
    from registry_gateway.settings import Settings

    settings = Settings.load_or_exit()
    configure_logging(settings.log_level)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    async def flush() -> None:
        await asyncio.to_thread(telemetry.shutdown)

    runner, _core = build(settings, shutdown_hooks=[flush])
    runner.install_signal_handlers()
    await runner.start()
    await runner.wait_for_termination()


def main() -> None:
    """Entry point."""
    asyncio.run(_main())


if __name__ == "__main__":
    main()

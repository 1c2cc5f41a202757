"""``python -m registry_gateway``: the registry-gateway process.

The kit's one service entry (:func:`creditrisk_kit.run_service`): telemetry, settings
(``REGISTRY_GATEWAY_*``, exit 2 naming the variable), JSON logs, then :func:`build_service` (the
audit store migrated, :func:`registry_gateway.app.build`), served until SIGTERM / SIGINT and
drained; the core, the audit store and telemetry closed last.
"""

from __future__ import annotations

import os

# Before scikit-learn's OpenMP code and MLflow are first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from creditrisk_kit import Service, ServiceSpec, run_service
from creditrisk_kit.secrets import env_from_files

from registry_gateway.app import build
from registry_gateway.settings import Settings


def build_service(settings: Settings) -> Service:
    """The registry-gateway's service (see :func:`registry_gateway.app.build`)."""
    return build(settings)[0]


SPEC = ServiceSpec("registry-gateway", Settings, build_service)


def main() -> None:
    """Entry point: ``MLFLOW_TRACKING_PASSWORD`` from ``MLFLOW_TRACKING_PASSWORD_FILE`` when set
    (creditrisk_kit.secrets; exit 2 naming it when unreadable), then the service."""
    env_from_files(["MLFLOW_TRACKING_PASSWORD"])
    run_service(SPEC)


if __name__ == "__main__":
    main()

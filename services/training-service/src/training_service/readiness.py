"""Readiness checks of the training-service: the MLflow tracking server and the feature-service."""

from __future__ import annotations

import asyncio

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mlflow.environment_variables import MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH


def _mlflow_health(tracking_uri: str, timeout_s: float) -> bool:
    # an https server is checked as MLflow's own client checks it: against
    # MLFLOW_TRACKING_SERVER_CERT_PATH when set (a private CA), else the system's CAs
    verify = MLFLOW_TRACKING_SERVER_CERT_PATH.get() or not MLFLOW_TRACKING_INSECURE_TLS.get()
    response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s, verify=verify)
    return bool(response.status_code == 200)


async def mlflow_ready(tracking_uri: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET <tracking_uri>/health`` answers 200.

    Raises:
        requests.RequestException: the server cannot be reached, or its certificate does not
            verify (the kit reports the reason).
    """
    return await asyncio.to_thread(_mlflow_health, tracking_uri, timeout_s)


async def feature_service_ready(channel: grpc.aio.Channel, timeout_s: float = 2.0) -> bool:
    """True when the feature-service's overall gRPC health is SERVING."""
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
    )
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


__all__ = ["feature_service_ready", "mlflow_ready"]

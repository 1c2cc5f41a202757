"""Readiness checks of the training-service: the MLflow tracking server and the feature-service."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _mlflow_health(tracking_uri: str, timeout_s: float) -> bool:
    with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s) as response:  # noqa: S310
        return bool(response.status == 200)


async def mlflow_ready(tracking_uri: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET <tracking_uri>/health`` answers 200.

    Raises:
        OSError / urllib.error.URLError: the server cannot be reached (the kit reports the reason).
    """
    return await asyncio.to_thread(_mlflow_health, tracking_uri, timeout_s)


async def feature_service_ready(channel: grpc.aio.Channel, timeout_s: float = 2.0) -> bool:
    """True when the feature-service's overall gRPC health is SERVING."""
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
    )
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


__all__ = ["feature_service_ready", "mlflow_ready"]

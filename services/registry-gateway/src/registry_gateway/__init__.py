"""registry-gateway: the only writer of the MLflow model registry (gRPC)."""

"""One typed client per gRPC contract of the platform, and one mapping of a dependency's errors.

* :mod:`~creditrisk_clients.errors`: :class:`DownstreamErrors`, a dependency's gRPC status as the
  caller's :class:`creditrisk_kit.errors.ServiceError`; :func:`dependency_status`.
* :mod:`~creditrisk_clients.feature`: :class:`FeatureServiceClient`
  (``creditrisk.feature.v1.FeatureStoreService``).
* :mod:`~creditrisk_clients.registry`: :class:`~creditrisk_clients.registry.RegistryClient`
  (``creditrisk.registry.v1.ModelRegistryService``: versions, registration, aliases, the gate,
  rollback, audit, the alias stream).
* :mod:`~creditrisk_clients.training`: :class:`TrainingServiceClient`
  (``creditrisk.training.v1.TrainingService``: start, follow, cancel, list training jobs).
* :mod:`~creditrisk_clients.drift`: :class:`DriftServiceClient`
  (``creditrisk.drift.v1.DriftService``: prediction and ground-truth logs, drift, performance,
  reports, trigger events).
* :mod:`~creditrisk_clients.inference`: :class:`InferenceClient`
  (``creditrisk.inference.v1.InferenceService``: predictions, one or a batch; serving slots).
* :mod:`~creditrisk_clients.historical` (extra ``arrow``): the historical stream reassembled into
  a ``pyarrow.Table`` (imported on demand, not re-exported here).
"""

from .drift import DRIFT_ERRORS, DriftServiceClient
from .errors import (
    BACKEND_FAILURES,
    DownstreamErrors,
    dependency_status,
    invalid_argument,
    not_found,
    unavailable,
)
from .feature import (
    FEATURE_SERVICE_ERRORS,
    FeatureServiceClient,
    FeatureServiceDef,
    entity_row,
)
from .inference import INFERENCE_ERRORS, BatchItem, InferenceClient, feature_value, predict_request
from .registry import REGISTRY_ERRORS, GateRefused, RegistryClient
from .training import TRAINING_ERRORS, TrainingServiceClient

__all__ = [
    "BACKEND_FAILURES",
    "DRIFT_ERRORS",
    "FEATURE_SERVICE_ERRORS",
    "INFERENCE_ERRORS",
    "REGISTRY_ERRORS",
    "TRAINING_ERRORS",
    "BatchItem",
    "DownstreamErrors",
    "DriftServiceClient",
    "FeatureServiceClient",
    "FeatureServiceDef",
    "GateRefused",
    "InferenceClient",
    "RegistryClient",
    "TrainingServiceClient",
    "dependency_status",
    "entity_row",
    "feature_value",
    "invalid_argument",
    "not_found",
    "predict_request",
    "unavailable",
]

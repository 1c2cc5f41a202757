"""One typed client per gRPC contract of the platform, and one mapping of a dependency's errors.

* :mod:`~creditrisk_clients.errors`: :class:`DownstreamErrors`, a dependency's gRPC status as the
  caller's :class:`creditrisk_kit.errors.ServiceError`; :func:`dependency_status`.
* :mod:`~creditrisk_clients.feature`: :class:`FeatureServiceClient`
  (``creditrisk.feature.v1.FeatureStoreService``).
* :mod:`~creditrisk_clients.registry`: :class:`~creditrisk_clients.registry.RegistryClient`
  (``creditrisk.registry.v1.ModelRegistryService`` reads: model versions, the alias stream).
* :mod:`~creditrisk_clients.historical` (extra ``arrow``): the historical stream reassembled into
  a ``pyarrow.Table`` (imported on demand, not re-exported here).
"""

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
from .registry import REGISTRY_ERRORS, RegistryClient

__all__ = [
    "BACKEND_FAILURES",
    "FEATURE_SERVICE_ERRORS",
    "REGISTRY_ERRORS",
    "DownstreamErrors",
    "FeatureServiceClient",
    "FeatureServiceDef",
    "RegistryClient",
    "dependency_status",
    "entity_row",
    "invalid_argument",
    "not_found",
    "unavailable",
]

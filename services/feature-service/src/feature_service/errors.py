"""Domain errors of the feature-service: the shared kit's exceptions, which carry their gRPC and
HTTP status and rich error details (``creditrisk_kit.errors``); the kit's ``ErrorInterceptor`` maps
them, anything else becomes INTERNAL.

Used here:

* :class:`NotFound` ``(kind, name)``: unknown feature service, feature view, feature, push source.
* :class:`InvalidArgument` ``(field, reason)``: a missing / mistyped join key or column, a bad
  request value or feature reference; ``field`` names it.
* :class:`FailedPrecondition` ``(message)``: e.g. an online read or push of the offline-only label view.
* :class:`Unavailable` ``(message)``: a backend (online store, registry) does not answer.
"""

from __future__ import annotations

from creditrisk_kit.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError, Unavailable

FeatureServiceError = ServiceError

__all__ = ["FailedPrecondition", "FeatureServiceError", "InvalidArgument", "NotFound", "Unavailable"]

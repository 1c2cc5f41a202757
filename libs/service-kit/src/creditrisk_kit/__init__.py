"""What every gRPC service of the platform is built on.

* :mod:`~creditrisk_kit.settings`: :class:`ServiceSettings`, typed settings from the environment,
  validated at start (exit status 2 naming the wrong variable).
* :mod:`~creditrisk_kit.errors`: domain exceptions carrying their gRPC and HTTP status and rich
  error details.
* :mod:`~creditrisk_kit.interceptors`: :class:`ErrorInterceptor`, exceptions -> statuses.
* :mod:`~creditrisk_kit.service`: the one entry of every service, :func:`run_service` of a
  :class:`ServiceSpec` (settings class, build function returning a :class:`Service`): telemetry,
  settings, logs, then the runner until SIGTERM and its drain.
* :mod:`~creditrisk_kit.server`: :class:`ServiceRunner` / :func:`serve`: ``grpc.aio`` server with
  health, reflection, tracing, readiness checks, an extra server, a drain on SIGTERM, shutdown
  hooks.
* :mod:`~creditrisk_kit.http` (extra ``http``): :class:`~creditrisk_kit.http.UvicornServer`, an
  ASGI app served beside gRPC (imported on demand, not re-exported here).
* :mod:`~creditrisk_kit.client`: channels with message limits, a default deadline and gRPC's own
  retries on UNAVAILABLE; :func:`wait_until_serving`.
* :mod:`~creditrisk_kit.metrics`: Prometheus rate / errors / duration per RPC
  (:class:`GrpcMetricsInterceptor`, on every :class:`ServiceRunner`) and per HTTP route
  (:class:`HttpMetricsMiddleware`), the ``/metrics`` endpoint on ``settings.metrics_port``.
* :mod:`~creditrisk_kit.timestamps`: :func:`parse_timestamp` / :func:`parse_timestamps`, client
  timestamps each read on its own (naive ones UTC or refused by ``naive_timestamps``).
* :mod:`~creditrisk_kit.arrow` (extra ``arrow``): Arrow IPC chunks that fit the message size, for
  streaming RPCs (imported on demand, not re-exported here).
* :mod:`~creditrisk_kit.pages`: opaque page tokens and page sizes of the List RPCs (imported on
  demand).
* :mod:`~creditrisk_kit.auth`: identity on every call: :class:`~creditrisk_kit.auth.Role`,
  :class:`~creditrisk_kit.auth.Principal`, the :class:`~creditrisk_kit.auth.Authenticator` (API
  keys, JWTs from a JWKS), the per-method :class:`~creditrisk_kit.auth.MethodPolicy` given to
  ``Service(auth=...)`` (default deny, checked at start), the service's own outgoing credential;
  :mod:`creditrisk_kit.auth.http` the same for ASGI apps (imported on demand).
* :mod:`~creditrisk_kit.sqlstore` (extra ``sql``): the SQL store base (SQLite / PostgreSQL engine,
  durability pragmas, alembic at start, readiness ping), imported on demand.
"""

from .client import (
    DEFAULT_TIMEOUT_S,
    RetryPolicy,
    aio_channel,
    channel_options,
    insecure_channel,
    wait_until_serving,
    wait_until_serving_sync,
)
from .errors import (
    MAX_DETAIL_TEXT_BYTES,
    MAX_DETAILS_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    MAX_VIOLATIONS,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from .health import HealthServicer
from .interceptors import DEPENDENCY_MESSAGE, INTERNAL_MESSAGE, ErrorInterceptor, is_domain_error
from .metrics import (
    GrpcMetricsInterceptor,
    HttpMetricsMiddleware,
    MetricsServer,
    start_metrics_server,
)
from .server import (
    LIVENESS_SERVICE,
    ExtraServer,
    ReadinessCheck,
    RegisterServicers,
    ServiceRunner,
    ShutdownHook,
    StopCallback,
    serve,
    server_options,
)
from .service import EXIT_INTERRUPTED, Service, ServiceSpec, run_service
from .settings import DEFAULT_MAX_MESSAGE_BYTES, EXIT_BAD_CONFIGURATION, LogLevel, ServiceSettings
from .timestamps import NaiveTimestamps, from_proto_timestamp, parse_timestamp, parse_timestamps

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_TIMEOUT_S",
    "DEPENDENCY_MESSAGE",
    "EXIT_BAD_CONFIGURATION",
    "EXIT_INTERRUPTED",
    "INTERNAL_MESSAGE",
    "LIVENESS_SERVICE",
    "MAX_DETAILS_BYTES",
    "MAX_DETAIL_TEXT_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_STATUS_BYTES",
    "MAX_VIOLATIONS",
    "DeadlineExceeded",
    "ErrorInterceptor",
    "ExtraServer",
    "FailedPrecondition",
    "FieldViolation",
    "GrpcMetricsInterceptor",
    "HealthServicer",
    "HttpMetricsMiddleware",
    "InvalidArgument",
    "LogLevel",
    "MetricsServer",
    "NaiveTimestamps",
    "NotFound",
    "PermissionDenied",
    "PreconditionViolation",
    "ReadinessCheck",
    "RegisterServicers",
    "ResourceExhausted",
    "RetryPolicy",
    "Service",
    "ServiceError",
    "ServiceRunner",
    "ServiceSettings",
    "ServiceSpec",
    "ShutdownHook",
    "StopCallback",
    "Unauthenticated",
    "Unavailable",
    "aio_channel",
    "channel_options",
    "from_proto_timestamp",
    "insecure_channel",
    "is_domain_error",
    "parse_timestamp",
    "parse_timestamps",
    "run_service",
    "serve",
    "server_options",
    "start_metrics_server",
    "wait_until_serving",
    "wait_until_serving_sync",
]

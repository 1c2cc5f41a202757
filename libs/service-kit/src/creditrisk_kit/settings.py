"""Typed service settings from the environment, validated at start (fail fast).

Each service subclasses :class:`ServiceSettings` with its own prefix and fields::

    class FeatureServiceSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="FEATURE_SERVICE_")
        online_store: Literal["sqlite", "redis"] = "sqlite"

    settings = FeatureServiceSettings.load_or_exit()   # FEATURE_SERVICE_PORT=50052 ...

:meth:`ServiceSettings.load_or_exit` exits with status 2 for every bad-environment case
(validation errors, and pydantic-settings' ``SettingsError``, e.g. a list field given ``a,b``
instead of JSON), printing each variable's name and the reason, **never the value** (a value may
be a secret: a DSN, a token). Floats must be finite (``inf`` / ``nan`` are rejected), the log
level is case-insensitive, and a variable with the service's prefix that names no field is
reported as a warning (a typo such as ``FEATURE_SERVICE_PROT`` would otherwise go unnoticed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from creditrisk_telemetry import configuration
from creditrisk_telemetry.configuration import EXIT_BAD_CONFIGURATION as EXIT_BAD_CONFIGURATION
from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .threaded_http import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS
from .timestamps import NaiveTimestamps
from .tls import DEFAULT_RELOAD_INTERVAL_S, check_tls_settings

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""4 MiB: gRPC's default maximum receive message length (``GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH``)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ServiceSettings(BaseSettings):
    """Settings every gRPC service has. Subclasses set ``env_prefix`` (e.g. ``FEATURE_SERVICE_``).

    Attributes:
        host: Interface to bind; ``127.0.0.1`` (loopback only) by default, so a process started
            on a workstation is not reachable from the network; container images set ``0.0.0.0``.
        port: TCP port, 0-65535; 0 picks a free port (tests). Default 50051, gRPC's customary port;
            every service sets its own default (tests/test_defaults.py checks they differ).
        grace_period_s: Seconds in-flight calls get to finish on SIGTERM (drain) before they are
            cancelled; keep it below Kubernetes' ``terminationGracePeriodSeconds`` (default 30 s).
        shutdown_hook_timeout_s: Seconds each shutdown hook may take after the drain; a hook still
            running then is cancelled and logged, and the next one runs, so a stop always ends
            (default 10 s, > 0).
        max_message_bytes: Largest message sent or received, in bytes; applied to both
            ``grpc.max_send_message_length`` and ``grpc.max_receive_message_length`` of the server
            and the clients. Default 4 MiB, gRPC's default receive limit.
        health_check_interval_s: Seconds between two rounds of readiness checks.
        log_level: Root log level; any case (``debug``), stored upper case.
        metrics_port: Port of the Prometheus ``/metrics`` endpoint (on ``metrics_host``); unset (None,
            the default) = no endpoint; 0 = a free port picked by the system (logged; tests).
            Off by default so that processes sharing one machine never race for a port;
            deployments set it (the Kubernetes manifests use 9464, OpenTelemetry's Prometheus
            exporter port). A service may choose its own default (drift-service: 9466).
        metrics_host: Interface of the ``/metrics`` endpoint; unset (None, the default) = ``host``.
            Set it to ``127.0.0.1`` to keep the metrics on loopback while the API listens on every
            interface (a scraper beside the process). The endpoint checks no credential by design
            (docs/security.md, "Metrics and slow clients").
        http_idle_timeout_s: The threaded stdlib HTTP servers (``/metrics``, the drift-service's
            reports; :mod:`creditrisk_kit.threaded_http`): seconds a connection gets to send its
            request head (TLS handshake included), and the longest wait for any later read or
            for each 64 KiB of the answer to go out; then it is closed. Default 10 s:
            Prometheus' default ``scrape_timeout`` (a scrape that slow has failed anyway), far
            above the milliseconds a scraper or browser takes to send a request on a cluster
            network; nginx's ``client_header_timeout`` (60 s) and Apache's ``RequestReadTimeout``
            (header 20-40 s) serve the open internet.
        http_max_connections: The same servers: connections served at once (one thread each);
            beyond it a new connection is closed at once. Default 32: a Prometheus server scrapes
            a target over one connection at a time, a report is read by a few people; a slow or
            hostile client holds at most this many threads, each for at most
            ``http_idle_timeout_s`` without progress.
        naive_timestamps: What a client timestamp without a UTC offset (an ISO 8601 string, or an
            Arrow timestamp column without a time zone) means: ``utc`` (default; Feast's rule and
            the contracts') or ``refuse`` (INVALID_ARGUMENT / 422 naming the row). Every
            timestamp is read on its own (:mod:`creditrisk_kit.timestamps`).
        tls_cert_file, tls_key_file, tls_client_ca_file, tls_ca_file, tls_client_cert_file,
            tls_client_key_file, tls_server_name, tls_reload_interval_s: Transport security,
            all off by default; what each does is in :mod:`creditrisk_kit.tls`. Files must exist
            at start; a certificate needs its key; a client CA (mutual TLS) needs a certificate.
        auth_api_keys_file: JSON file of API keys ``{"<key>": {"subject", "roles"}}``, re-read
            when it changes (:mod:`creditrisk_kit.auth`).
        auth_api_keys: The same mapping as a value (a secret; validated at start, never printed).
        auth_jwks_file / auth_jwks_url: JWKS verifying JWT bearer tokens (the file wins).
        auth_jwt_issuer / auth_jwt_audience: Required ``iss`` / ``aud`` (unset: not checked).
        auth_jwt_algorithms: Accepted JWT algorithms; ``none`` and ``HS*`` are refused (default
            RS256, ES256, EdDSA).
        auth_jwt_roles_claim: Claim holding the roles (dotted path allowed; default ``roles``).
        auth_jwt_leeway_s: Clock skew tolerated on ``exp`` / ``nbf`` / ``iat`` (default 30 s).
        auth_disabled: Serve without authentication (every caller is an anonymous admin); an
            explicit opt-out for tests and a laptop, logged as a warning at start. A service that
            wires auth with no credential source and this False exits with status 2.
        credential / credential_file: The bearer credential (API key or JWT) this service sends on
            every call it makes to another service: its own identity. The file (a mounted
            secret) is re-read when it changes and wins over the value.
    """

    # allow_inf_nan=False: grace_period_s=inf would make the drain wait forever.
    model_config = SettingsConfigDict(
        env_prefix="SERVICE_", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=50051, ge=0, le=65535)
    grace_period_s: float = Field(default=10.0, ge=0)
    shutdown_hook_timeout_s: float = Field(default=10.0, gt=0)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0, le=2**31 - 1)
    health_check_interval_s: float = Field(default=5.0, gt=0)
    log_level: LogLevel = "INFO"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str | None = Field(default=None, min_length=1)
    http_idle_timeout_s: float = Field(default=DEFAULT_IDLE_TIMEOUT_S, gt=0, le=3600)
    http_max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1, le=10_000)
    naive_timestamps: NaiveTimestamps = "utc"
    # Transport security (creditrisk_kit.tls), all off by default.
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    tls_client_ca_file: FilePath | None = None
    tls_ca_file: FilePath | None = None
    tls_client_cert_file: FilePath | None = None
    tls_client_key_file: FilePath | None = None
    tls_server_name: str | None = Field(default=None, min_length=1)
    tls_reload_interval_s: float = Field(default=DEFAULT_RELOAD_INTERVAL_S, gt=0)

    # Identity (creditrisk_kit.auth): who may call, and this service's own credential.
    auth_api_keys_file: Path | None = None
    auth_api_keys: SecretStr | None = None
    auth_jwks_file: Path | None = None
    auth_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"], min_length=1)
    auth_jwt_roles_claim: str = Field(default="roles", min_length=1)
    auth_jwt_leeway_s: float = Field(default=30.0, ge=0, le=600)
    auth_disabled: bool = False
    credential: SecretStr | None = None
    credential_file: Path | None = None

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        check_tls_settings(self, self.env_name)
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("auth_jwt_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: list[str]) -> list[str]:
        refused = [name for name in value if name.lower() == "none" or name.upper().startswith("HS")]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} refused: only asymmetric algorithms (RS*, PS*, ES*, EdDSA)"
            )
        return value

    @field_validator("auth_api_keys")
    @classmethod
    def _api_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from .auth.keys import parse_api_keys

            parse_api_keys(value.get_secret_value(), "the API-key mapping")
        return value

    @property
    def metrics_bind_host(self) -> str:
        """The interface of the ``/metrics`` endpoint: ``metrics_host``, else ``host``."""
        return self.metrics_host or self.host

    @property
    def bind_address(self) -> str:
        """``host:port`` for ``server.add_insecure_port`` (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable that sets ``field_name`` (prefix + name, upper case)."""
        return configuration.env_name(cls, field_name)

    @classmethod
    def load_or_exit(cls, **overrides: object) -> Self:
        """Read and validate the settings; on error print each wrong variable and exit with 2.

        The platform's one way of loading settings (:func:`creditrisk_telemetry.configuration.load_or_exit`,
        shared with the model-server).

        Args:
            **overrides: Values that win over the environment (tests, command-line flags).

        Returns:
            The validated settings.

        Raises:
            SystemExit: With status 2 (:data:`EXIT_BAD_CONFIGURATION`) when a value is invalid or
                cannot be parsed; each problem is printed to stderr as ``NAME: reason``. Values
                are never printed (they may be secrets).
        """
        return configuration.load_or_exit(cls, **overrides)

    @classmethod
    def unknown_variables(cls, environ: dict[str, str] | None = None) -> list[str]:
        """Variables with this class's ``env_prefix`` that name no field (likely typos), sorted."""
        return configuration.unknown_variables(cls, environ)

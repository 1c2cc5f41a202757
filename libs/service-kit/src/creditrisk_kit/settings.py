"""Typed service settings from the environment, validated at start (fail fast).

Each service subclasses :class:`ServiceSettings` with its own prefix and fields::

    class FeatureServiceSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="FEATURE_SERVICE_")
        online_store: Literal["sqlite", "redis"] = "sqlite"

    settings = FeatureServiceSettings.load_or_exit()   # FEATURE_SERVICE_PORT=50052 ...
"""

from __future__ import annotations

import sys
from typing import Literal, Self

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""4 MiB: gRPC's default maximum receive message length (``GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH``)."""

EXIT_BAD_CONFIGURATION = 2
"""Process exit status on invalid settings (the usage-error status of sysexits/argparse)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ServiceSettings(BaseSettings):
    """Settings every gRPC service has. Subclasses set ``env_prefix`` (e.g. ``FEATURE_SERVICE_``).

    Attributes:
        host: Interface to bind; ``0.0.0.0`` (all IPv4) by default, as in a container.
        port: TCP port, 0-65535; 0 picks a free port (tests). Default 50051, gRPC's customary port.
        grace_period_s: Seconds in-flight calls get to finish on SIGTERM (drain) before they are
            cancelled; keep it below Kubernetes' ``terminationGracePeriodSeconds`` (default 30 s).
        max_message_bytes: Largest message sent or received, in bytes; applied to both
            ``grpc.max_send_message_length`` and ``grpc.max_receive_message_length`` of the server
            and the clients. Default 4 MiB, gRPC's default receive limit.
        health_check_interval_s: Seconds between two rounds of readiness checks.
        log_level: Root log level.
    """

    model_config = SettingsConfigDict(env_prefix="SERVICE_", extra="ignore", validate_default=True)

    host: str = Field(default="0.0.0.0", min_length=1)
    port: int = Field(default=50051, ge=0, le=65535)
    grace_period_s: float = Field(default=10.0, ge=0)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0, le=2**31 - 1)
    health_check_interval_s: float = Field(default=5.0, gt=0)
    log_level: LogLevel = "INFO"

    @property
    def bind_address(self) -> str:
        """``host:port`` for ``server.add_insecure_port`` (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable that sets ``field_name`` (prefix + name, upper case)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return f"{prefix}{field_name}".upper()

    @classmethod
    def load_or_exit(cls, **overrides: object) -> Self:
        """Read and validate the settings; on error print each wrong variable and exit with 2.

        Args:
            **overrides: Values that win over the environment (tests, command-line flags).

        Returns:
            The validated settings.

        Raises:
            SystemExit: With status 2 (:data:`EXIT_BAD_CONFIGURATION`) when a value is invalid;
                each problem is printed to stderr as ``NAME=value: reason``.
        """
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            lines = [f"invalid configuration of {cls.__name__}:"]
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                name = cls.env_name(loc[0]) if loc else "(settings)"
                if len(loc) > 1:
                    name += " (" + ".".join(loc[1:]) + ")"
                shown = error.get("input")
                value = f"={shown!r}" if isinstance(shown, str | int | float) else ""
                lines.append(f"  {name}{value}: {error['msg']}")
            print("\n".join(lines), file=sys.stderr)
            raise SystemExit(EXIT_BAD_CONFIGURATION) from None

"""Typed settings of one alias slot, read from the environment (prefix ``MODEL_SERVER_``).

The slot's settings are the service kit's (:class:`creditrisk_kit.ServiceSettings`) plus its own:
of the kit's it uses ``host`` (``MODEL_SERVER_HOST``, default ``127.0.0.1``: every listener the
slot opens, REST, gRPC and metrics, on both runtimes), the ``auth_*`` settings (who may score:
:mod:`model_server.access`), ``tls_cert_file`` / ``tls_key_file`` / ``tls_client_ca_file``
(the servers' TLS and mutual TLS: :mod:`model_server.launch`) and ``log_level``; its ports are the
launcher's flags (``--http-port`` ...), not ``port`` / ``metrics_port``.

``MLFLOW_TRACKING_URI`` is read as MLflow itself names it (``MODEL_SERVER_MLFLOW_TRACKING_URI``
wins when both are set). A bad value fails at start with exit status 2, naming the variable and
not its value, as in every service (:func:`load_settings`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from creditrisk_kit import ServiceSettings
from creditrisk_telemetry.configuration import load_or_exit
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

ScorerKind = Literal["fast", "reference"]


def _default_serving_processes() -> int:
    # seldon-core-microservice: GUNICORN_WORKERS REST workers + GRPC_WORKERS gRPC workers, each
    # holding its own model (defaults 1 + 1).
    return int(os.environ.get("GUNICORN_WORKERS", "1")) + int(os.environ.get("GRPC_WORKERS", "1"))


class Settings(ServiceSettings):
    """One alias slot.

    Attributes:
        host: interface every listener binds (REST, gRPC, metrics; both runtimes): ``127.0.0.1``
            by default (loopback only), ``0.0.0.0`` in a container image.
        auth_api_keys_file, auth_api_keys, auth_jwks_file, auth_jwks_url, auth_jwt_*,
            auth_disabled: the kit's credential check (:mod:`creditrisk_kit.auth`) on the scoring
            routes (role ``predict``; :mod:`model_server.access`); without a source and not
            ``auth_disabled`` the launcher exits with status 2 naming them.
        tls_cert_file, tls_key_file, tls_client_ca_file: PEM files; a certificate and its key turn
            TLS on for seldon-core's REST, gRPC and metrics ports and MLServer's REST and metrics
            ports (not MLServer's gRPC port: no hook, docs/security.md); a client CA makes it
            mutual (a client without a certificate of that CA is refused at the handshake). The
            files must exist at start (exit 2 otherwise). seldon-core serves renewed files from
            the next connection (REST and metrics: checked at each connection; gRPC: at each
            handshake); MLServer reads them at start.
        model_name: registered model followed, e.g. ``credit-risk``.
        alias: the slot, ``champion`` or ``challenger`` (any MLflow alias works).
        mlflow_tracking_uri: the tracking server (``http(s)://``; artifacts are downloaded through it).
        poll_interval_s: seconds between two reads of ``get_model_version_by_alias``.
        scorer: ``fast`` (the ONNX fast scorer, default) or ``reference`` (the scikit-learn flavor).
        state_dir: folder shared by the slot's serving processes: each writes the version it holds
            there; the readiness check reads them all; a file ``draining`` there flips readiness off.
        serving_processes: how many processes serve the slot (seldon: REST workers + gRPC workers;
            MLServer: 1).
        cache_dir: where artifacts are downloaded (one folder per process and version).
        refused_retry_s: seconds before a refused version is downloaded and checked again.
        warmup_rows: rows scored at load before a version may serve.
        require_approval: serve only versions with a valid registry-gateway approval
            (:mod:`model_server.approvals`); off only for a registry without a gateway.
        trusted_keys_file: PEM public keys of the registry-gateway (re-read on change); required
            while ``require_approval``.
        approval_state_file: the served sequence and revocations, kept across restarts
            (default ``<state_dir>/approvals.json``).
        log_level: root log level.
    """

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVER_", extra="ignore")

    model_name: str = Field(min_length=1)
    alias: str = Field(default="champion", min_length=1)
    mlflow_tracking_uri: str = Field(
        default="http://127.0.0.1:5000",
        validation_alias=AliasChoices("MODEL_SERVER_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    poll_interval_s: float = Field(default=3.0, gt=0, le=300)
    scorer: ScorerKind = "fast"
    state_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "model-server-state")
    serving_processes: int = Field(default_factory=_default_serving_processes, ge=1, le=64)
    cache_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "model-server-cache")
    refused_retry_s: float = Field(default=60.0, ge=0)
    warmup_rows: int = Field(default=20, ge=1, le=10_000)
    require_approval: bool = True
    trusted_keys_file: Path | None = None
    approval_state_file: Path | None = None

    @model_validator(mode="after")
    def _keys_when_required(self) -> Settings:
        if self.require_approval and self.trusted_keys_file is None:
            raise ValueError(
                "MODEL_SERVER_TRUSTED_KEYS_FILE is required while MODEL_SERVER_REQUIRE_APPROVAL is true"
            )
        return self

    @property
    def approval_state_path(self) -> Path:
        """Where the served sequence and the revocations are persisted."""
        return self.approval_state_file or self.state_dir / "approvals.json"

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be http(s)://: artifacts are downloaded through the tracking server")
        return value.rstrip("/")


def load_settings() -> Settings:
    """The settings of this process, loaded as every service's are
    (:func:`creditrisk_telemetry.configuration.load_or_exit`).

    Raises:
        SystemExit: With status 2 when a variable is invalid, each named on stderr with the reason
            (never its value: the tracking URI may hold credentials).
    """
    return load_or_exit(Settings)

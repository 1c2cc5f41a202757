"""Typed settings of the inference-gateway, from ``INFERENCE_GATEWAY_*`` variables (fail fast).

``port`` (from :class:`~creditrisk_kit.ServiceSettings`) is the gRPC port; ``http_port`` the REST
one. ``max_message_bytes`` bounds gRPC messages both ways (server and the gateway's clients) and,
as ``max_request_bytes``, REST bodies. Lists and maps take JSON.

What is product-specific (the feature service read, its entity key, the request fields, the
registered model) comes from the product served (:class:`creditrisk_products.ProductSettings`:
``INFERENCE_GATEWAY_PRODUCTS_DIR`` / ``INFERENCE_GATEWAY_PRODUCTS``; one product per process for now).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from creditrisk_kit import NaiveTimestamps, ServiceSettings
from creditrisk_kit.auth import Role
from creditrisk_products import ProductSettings
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

ModelProtocol = Literal["seldon", "v2"]
ChallengerMode = Literal["off", "shadow", "canary"]


class RateSetting(BaseModel):
    """One rate limit: ``per_s`` requests per second (0 = unlimited), bursts of up to ``burst``
    (0 = twice ``per_s``; else at least ``per_s``)."""

    per_s: int = Field(ge=0, le=1_000_000)
    burst: int = Field(default=0, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _burst(self) -> RateSetting:
        if self.burst and self.burst < self.per_s:
            raise ValueError(f"burst ({self.burst}) must be at least per_s ({self.per_s}) or 0")
        return self


class GatewaySettings(ServiceSettings, ProductSettings):
    """Settings of the inference-gateway (prefix ``INFERENCE_GATEWAY_``).

    Attributes:
        port: gRPC port (default 50055).
        http_host / http_port: REST (FastAPI) interface and port; port 0 picks a free one. A
            connection whose request head is not complete within the kit's
            ``http_idle_timeout_s`` (``INFERENCE_GATEWAY_HTTP_IDLE_TIMEOUT_S``, default 10 s) is
            closed (:func:`creditrisk_kit.http.with_head_deadline`).
        products_dir / products: the product served (:class:`creditrisk_products.ProductSettings`;
            unset: the checkout's ``products/``, which must hold exactly one product or name it
            in ``products``). Its ``[features].model_service`` is the feature service read for
            enrichment, its ``[entity].join_key`` the key sent to the feature-service, its
            ``[serving].request_fields`` the request values accepted under a second name, its
            ``[product].registered_model`` the model served unless ``model_name`` is set.
        feature_service_target: ``host:port`` of the feature-service (gRPC).
        feature_service_version: expected version of it; empty = the version in the scoring model
            version's lineage (and, when that is empty too, whatever is registered).
        feature_deadline_s: deadline of one GetOnlineFeatures call, in seconds.
        registry_target: ``host:port`` of the registry-gateway (gRPC).
        model_name: registered model the slots serve; empty (the default): the product's
            ``[product].registered_model``.
        model_protocol: ``seldon`` (Seldon protocol, ``jsonData`` over REST) or ``v2`` (Open
            Inference Protocol V2 over REST).
        champion_url / challenger_url: base URLs of the slots' model servers; an empty
            challenger URL means no challenger slot.
        challenger_mode: ``off``, ``shadow`` (scored, logged, never returned) or ``canary``.
        canary_share: share of applicants answered by the challenger in canary mode, in [0, 1].
        model_deadline_s: deadline of one model-server call (connect + answer), in seconds.
        model_connect_retries: extra attempts after a connect error / 503-not-ready (safe: the
            request was not processed, and scoring is idempotent anyway).
        slot_probe_interval_s: seconds between two readiness probes of each slot.
        slot_probe_failures: consecutive UNANSWERED probes (timeout, connection refused) before a
            slot counts as not ready; an answer other than 200 (no version yet, draining) takes it
            out at once. 3 is Kubernetes' readinessProbe failureThreshold default: one probe lost
            under load must not turn every request away.
        required_inputs_tag: model-version tag listing further required inputs (comma-separated),
            on top of the signature's ``required`` flags.
        drift_service_target: ``host:port`` of the drift-service (gRPC).
        log_batch_size: events per LogPredictions call.
        log_flush_interval_s: longest time an event waits in memory before a send is attempted.
        log_memory_events: events held in memory at most; more spill to the disk buffer.
        log_send_timeout_s: deadline of one LogPredictions call.
        log_retry_interval_s: pause between two delivery attempts while drift-service is down.
        buffer_path: SQLite file of the durable buffer.
        buffer_max_bytes: cap of the buffer's payload bytes; at the cap the gateway is not ready
            and answers 503 / UNAVAILABLE.
        max_batch_size: most items of one PredictBatch.
        naive_timestamps: a REST ``event_time`` without an offset is ``refuse``d (422, the
            default: the OpenAPI schema's ``date-time`` is RFC 3339, which requires one) or read as
            ``utc``.
        max_request_bytes: largest REST body; 0 = ``max_message_bytes``.
        registry_token: (deprecated) a credential for the registry-gateway only; empty (the
            default) = the gateway's own ``credential`` / ``credential_file``, as for the
            feature-service and the drift-service.
        rate_limit_per_s / rate_limit_burst: every caller's (principal subject's) rate limit:
            requests per second sustained and the largest burst (0 = twice the rate); a batch
            counts one request per item. ``rate_limit_per_s`` 0 = no limit. Default 1000 / 2000,
            generous: the limit stops a runaway client, capacity planning is the autoscaler's.
        rate_limit_overrides: per-subject limits, JSON ``{"bench": {"per_s": 0}, "partner-x":
            {"per_s": 50, "burst": 100}}``.
        echo_features_roles: roles whose prediction answers carry the ``features`` used (JSON
            list; default ``["read_features"]``; admin holds every role); other callers get the
            answer without them.

    The kit's ``tls_*`` settings apply to the REST server as to gRPC, and ``tls_ca_file`` (with the
    client certificate) to every outgoing call, ``https://`` model-server URLs included.
    """

    model_config = SettingsConfigDict(
        env_prefix="INFERENCE_GATEWAY_", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    port: int = Field(default=50055, ge=0, le=65535)
    http_host: str = Field(default="127.0.0.1", min_length=1)
    http_port: int = Field(default=8000, ge=0, le=65535)

    feature_service_target: str = Field(default="127.0.0.1:50051", min_length=1)
    feature_service_version: str = ""
    feature_deadline_s: float = Field(default=1.0, gt=0, le=60)

    registry_target: str = Field(default="127.0.0.1:50053", min_length=1)
    registry_token: SecretStr = SecretStr("")
    registry_deadline_s: float = Field(default=3.0, gt=0, le=60)
    registry_reconnect_max_s: float = Field(default=5.0, gt=0, le=300)

    model_name: str = ""
    model_protocol: ModelProtocol = "seldon"
    champion_url: str = Field(default="http://127.0.0.1:9000", min_length=1)
    challenger_url: str = ""
    challenger_mode: ChallengerMode = "off"
    canary_share: float = Field(default=0.0, ge=0, le=1)
    model_deadline_s: float = Field(default=2.0, gt=0, le=60)
    model_connect_retries: int = Field(default=2, ge=0, le=5)
    model_pool_size: int = Field(default=32, ge=1, le=1024)
    slot_probe_interval_s: float = Field(default=1.0, gt=0, le=60)
    slot_probe_failures: int = Field(default=3, ge=1, le=100)
    required_inputs_tag: str = "registry.required_inputs"

    drift_service_target: str = Field(default="127.0.0.1:50054", min_length=1)
    log_batch_size: int = Field(default=200, ge=1, le=10_000)
    log_flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    log_memory_events: int = Field(default=5_000, ge=1, le=1_000_000)
    log_send_timeout_s: float = Field(default=2.0, gt=0, le=60)
    log_retry_interval_s: float = Field(default=1.0, gt=0, le=300)
    buffer_path: Path = Path("inference-gateway-buffer.sqlite3")
    buffer_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)

    max_batch_size: int = Field(default=256, ge=1, le=100_000)
    max_request_bytes: int = Field(default=0, ge=0, le=2**31 - 1)
    naive_timestamps: NaiveTimestamps = "refuse"

    rate_limit_per_s: int = Field(default=1000, ge=0, le=1_000_000)
    rate_limit_burst: int = Field(default=0, ge=0, le=10_000_000)
    rate_limit_overrides: dict[str, RateSetting] = Field(default_factory=dict)
    echo_features_roles: list[Role] = Field(default_factory=lambda: [Role.READ_FEATURES])

    @model_validator(mode="after")
    def _check(self) -> GatewaySettings:
        if self.challenger_mode != "off" and not self.challenger_url:
            raise ValueError("challenger_url is required when challenger_mode is not 'off'")
        if self.rate_limit_burst and self.rate_limit_burst < self.rate_limit_per_s:
            raise ValueError("rate_limit_burst must be at least rate_limit_per_s, or 0 (twice the rate)")
        return self

    @property
    def request_body_limit(self) -> int:
        """Largest REST body, in bytes."""
        return self.max_request_bytes or self.max_message_bytes

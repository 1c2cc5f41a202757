"""Settings of the registry-gateway (``REGISTRY_GATEWAY_*``), validated at start (exit 2 naming
the variable, never its value: tokens and DSNs are secrets).

What is product-specific (the gate window's label view and column, the entity key, the gate's
thresholds and cost matrix, the default window) comes from the product
(``REGISTRY_GATEWAY_PRODUCTS_DIR`` / ``REGISTRY_GATEWAY_PRODUCTS``,
:class:`creditrisk_products.ProductSettings`); an invalid product exits 2 naming its file and key
(``ProductSettings.served_product``). The gate's statistics (resamples, seed, confidence level) are
platform-wide settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from creditrisk_kit import ServiceSettings
from creditrisk_kit.sqlstore import check_database_url
from creditrisk_model_artifacts.signing import SigningKey, load_signing_key, write_key_pair
from creditrisk_products import Product, ProductSettings
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from registry_gateway.gate import GateConfig

RoleName = Literal["viewer", "promoter", "admin"]


class TokenEntry(BaseModel):
    """Who a bearer token is: ``{"subject": "pipeline", "role": "promoter"}``."""

    subject: str = Field(min_length=1)
    role: RoleName


class Settings(ServiceSettings, ProductSettings):
    """Everything the gateway reads from the environment (see the README's settings table)."""

    model_config = SettingsConfigDict(
        env_prefix="REGISTRY_GATEWAY_", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    port: int = Field(default=50053, ge=0, le=65535)
    mlflow_tracking_uri: str = Field(default="http://127.0.0.1:5000", pattern=r"^https?://")
    feature_service_address: str = Field(default="127.0.0.1:50051", min_length=1)
    feature_service_timeout_s: float = Field(default=120.0, gt=0)
    tokens: dict[str, TokenEntry] = Field(default_factory=dict)
    audit_db_url: str = Field(default="sqlite:///.run/registry-gateway/audit.db", min_length=1)
    audit_db_schema: str | None = None
    cache_dir: str = ""
    gate_resamples: int = Field(default=1000, ge=1000, le=100_000)
    gate_seed: int = Field(default=20261129, ge=0)
    gate_confidence_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    watch_poll_interval_s: float = Field(default=1.0, gt=0)
    # Ed25519 private key (PEM) signing every alias move (creditrisk_model_artifacts.signing); a
    # secret: read from the file, never logged. Empty: alias moves are not signed, and a
    # model-server that requires approvals refuses every version.
    signing_key_file: str = ""
    # A local stack only: make the key pair when signing_key_file does not exist yet, appending its
    # public key to signing_public_key_file (the model-servers' trusted-keys file).
    signing_key_create: bool = False
    signing_public_key_file: str = ""

    @model_validator(mode="after")
    def _public_file_to_create(self) -> Settings:
        if self.signing_key_create and not (self.signing_key_file and self.signing_public_key_file):
            raise ValueError("signing_key_create needs signing_key_file and signing_public_key_file")
        return self

    @field_validator("audit_db_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// SQLAlchemy URL")
        return check_database_url(value)  # "sqlite:nonsense" was a traceback at start

    def signing_key(self) -> SigningKey | None:
        """The alias-move signing key (made first with ``signing_key_create``); None when unset.

        Raises:
            OSError / ValueError: unreadable or not an Ed25519 PEM private key (the path is named).
        """
        if not self.signing_key_file:
            return None
        if self.signing_key_create:
            return write_key_pair(Path(self.signing_key_file), Path(self.signing_public_key_file))
        return load_signing_key(Path(self.signing_key_file))

    def gate_config(self, product: Product) -> GateConfig:
        """The gate's rule: the product's thresholds and cost matrix (``[gate]``, ``[decision]``)
        with these settings' statistics (resamples, seed, confidence level)."""
        return GateConfig.of(
            product,
            resamples=self.gate_resamples,
            seed=self.gate_seed,
            confidence_level=self.gate_confidence_level,
        )

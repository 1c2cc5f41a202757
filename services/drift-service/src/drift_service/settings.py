"""Typed settings of the drift-service, read from ``DRIFT_SERVICE_*`` environment variables.

The profile (docs/design.md, "Profiles") is configuration, not a code branch:

* ``embedded``: the event store is a SQLite file ``<data_dir>/drift.db`` (WAL, synchronous=FULL).
* ``real``: PostgreSQL at ``postgres_dsn``, every table in ``postgres_schema``.

``database_url`` (any SQLAlchemy URL) overrides both. HTML reports are written under
``<data_dir>/reports`` and served over HTTP on ``report_http_port``; Prometheus metrics on
``metrics_port``. List and dict fields take JSON (``DRIFT_SERVICE_DATASET_ROOTS='["/srv/datasets"]'``).

What is product-specific (the features monitored and their kinds, the label column and its codes,
the entity key) comes from the product served (:class:`creditrisk_products.ProductSettings`:
``DRIFT_SERVICE_PRODUCTS_DIR`` / ``DRIFT_SERVICE_PRODUCTS``; one product per process for now),
read by :class:`drift_service.product.MonitoredProduct`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from creditrisk_kit.settings import ServiceSettings
from creditrisk_kit.sqlstore import check_database_url
from creditrisk_products import ProductSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from drift_service.datasets import DatasetLimits
from drift_service.decision import Correction
from drift_service.drift import DriftConfig
from drift_service.psi import PsiConfig
from drift_service.triggers import TriggerPolicy

Profile = Literal["embedded", "real"]


def repo_root() -> Path:
    """The monorepo root: the nearest parent holding both ``services/`` and ``libs/``, else the cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "services").is_dir() and (parent / "libs").is_dir():
            return parent
    return Path.cwd()


class DriftServiceSettings(ServiceSettings, ProductSettings):
    """Settings of the drift-service (env prefix ``DRIFT_SERVICE_``).

    Attributes:
        port: gRPC port (default 50054, the inference-gateway's default ``drift_service_target``).
        profile: ``embedded`` (SQLite) or ``real`` (PostgreSQL).
        data_dir: SQLite file and HTML reports; default ``<repo>/.run/<profile>/drift-service``.
        database_url: SQLAlchemy URL overriding the profile's store.
        postgres_dsn: real profile's PostgreSQL (libpq URL; ``postgresql://`` is used with psycopg 3).
        postgres_schema: schema of every table on PostgreSQL.
        products_dir / products: the product served (:class:`creditrisk_products.ProductSettings`;
            unset: the checkout's ``products/``, which must hold exactly one product or name it
            in ``products``). Its ``[drift.features]`` give the kinds of the monitored features
            (the type check of logged values, the test), its ``[label].column`` and
            ``[ingest].label_codes`` the label of a reference dataset (the reference AUC of the
            AUC-drop policy), its ``[entity].join_key`` a reference column that is never a feature.
        reference_auc: reference AUC when neither the MLflow run nor the reference dataset gives one.
        mlflow_tracking_uri: MLflow tracking server (``http(s)://``); when set, the default reference
            (a version's training dataset) is found in MLflow, read-only
            (:class:`drift_service.reference.MlflowTrainingDatasetResolver`), and ``runs:/`` dataset
            URIs are accepted. Unset: an explicit ``dataset_uri`` is required.
        mlflow_registry_uri: the model registry's URI (default: the tracking URI).
        registry_target: the registry-gateway's ``host:port`` (gRPC). With a credential (and
            ``mlflow_tracking_uri``, the training rows are downloaded from MLflow), the default
            reference is found through the registry-gateway (``GetModelVersion`` -> lineage -> run)
            instead of MLflow's registry
            (:class:`drift_service.reference.RegistryGatewayTrainingDatasetResolver`).
        credential / credential_file: the service's own bearer credential (the kit's
            ``DRIFT_SERVICE_CREDENTIAL(_FILE)``, the file re-read on change), sent to the
            registry-gateway; it needs the ``read_registry`` role there.
        registry_token: DEPRECATED alias of ``credential`` for the registry-gateway only: when set
            it is sent instead (a warning at start); secret, never printed.
        dataset_roots: local folders explicit dataset URIs (``ComputeDriftRequest.dataset_uri``,
            an absolute path or ``file://``) may name, JSON list of absolute paths; a path that
            resolves (symlinks, ``..``) outside every root is refused (PERMISSION_DENIED naming
            the URI and this setting). Default empty: every explicit local path is refused
            (``runs:/`` URIs, read from MLflow, need no root) (:mod:`drift_service.datasets`).
        dataset_max_depth: directory levels read below a dataset directory (0: its own files
            only; default 3, e.g. hive partitions ``year=/month=/day=``); deeper -> INVALID_ARGUMENT.
        dataset_max_files: most Parquet files of one dataset directory (default 1000); more ->
            INVALID_ARGUMENT.
        registry_timeout_s: deadline of the registry-gateway's GetModelVersion.
        mlflow_training_artifact: the training rows' artifact path in a training run.
        mlflow_reference_auc_metrics: run metrics taken as the reference AUC, first found wins.
        mlflow_cache_size: references kept in memory (per model version or run URI).
        min_rows: fewer current rows than this -> INSUFFICIENT_DATA (never an alarm).
        min_reference_rows: fewer reference rows than this -> INSUFFICIENT_DATA.
        min_labels: fewer labelled predictions than this -> performance INSUFFICIENT_DATA.
        alpha, correction, num_method, cat_method, psi_bins, psi_floor: the drift computation
            (:class:`drift_service.drift.DriftConfig`).
        calibration_bins: quantile bins of the calibration table.
        policy_dataset_drift, policy_psi_threshold, policy_auc_drop, policy_min_rows: the
            retraining policy (:class:`drift_service.triggers.TriggerPolicy`); None disables one.
        max_batch_items: most events or labels in one logging call (RESOURCE_EXHAUSTED above).
        report_http_host, report_http_port: where the HTML reports are served (port 0 = free port);
            every report needs the ``read_monitoring`` role (the ``auth_*`` settings, as the gRPC
            API), and each read is logged (subject and report id) on ``drift_service.access``.
            Connections bounded by the kit's ``http_idle_timeout_s`` / ``http_max_connections``
            (``DRIFT_SERVICE_HTTP_IDLE_TIMEOUT_S``, ``DRIFT_SERVICE_HTTP_MAX_CONNECTIONS``).
        report_base_url: public base URL of the reports (default ``http://<host>:<port>``).
        metrics_port: Prometheus metrics port; None disables the endpoint.
        warm_up: import Evidently at start (6-20 s) instead of on the first ComputeDrift.
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFT_SERVICE_", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    port: int = Field(default=50054, ge=0, le=65535)
    profile: Profile = "embedded"
    data_dir: Path | None = None
    database_url: str | None = None
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    postgres_schema: str = Field(default="drift", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    reference_auc: float | None = Field(default=None, ge=0.0, le=1.0)
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    mlflow_training_artifact: str = "training_set/training_rows.parquet"
    mlflow_reference_auc_metrics: list[str] = Field(
        default_factory=lambda: ["test_roc_auc", "cv_roc_auc_mean"]
    )
    mlflow_cache_size: int = Field(default=4, ge=1, le=100)
    registry_target: str | None = None
    registry_token: SecretStr | None = None
    registry_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    dataset_roots: list[Path] = Field(default_factory=list)
    dataset_max_depth: int = Field(default=3, ge=0, le=32)
    dataset_max_files: int = Field(default=1000, ge=1, le=100_000)

    min_rows: int = Field(default=100, ge=1)
    min_reference_rows: int = Field(default=100, ge=1)
    min_labels: int = Field(default=50, ge=1)
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    correction: Correction = "holm"
    num_method: str = "ks"
    cat_method: str = "chisquare_homogeneity"
    psi_bins: int = Field(default=10, ge=1, le=1000)
    psi_floor: float = Field(default=1e-4, gt=0.0, lt=1.0)
    calibration_bins: int = Field(default=10, ge=1, le=100)

    policy_dataset_drift: bool = True
    policy_psi_threshold: float | None = Field(default=0.25, ge=0.0)
    policy_auc_drop: float | None = Field(default=0.05, ge=0.0, le=1.0)
    policy_min_rows: int = Field(default=100, ge=1)

    max_batch_items: int = Field(default=5000, ge=1)
    report_http_host: str = "127.0.0.1"
    report_http_port: int = Field(default=8096, ge=0, le=65535)
    report_base_url: str | None = None
    metrics_port: int | None = Field(default=9466, ge=0, le=65535)
    warm_up: bool = True

    @field_validator("mlflow_tracking_uri", "mlflow_registry_uri")
    @classmethod
    def _mlflow_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://", "databricks")):
            raise ValueError("an http(s):// tracking server (artifacts are downloaded through it)")
        return value.strip().rstrip("/")

    @field_validator("registry_target")
    @classmethod
    def _registry_target(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("registry_token")
    @classmethod
    def _registry_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("dataset_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        relative = [str(root) for root in value if not root.is_absolute()]
        if relative:
            raise ValueError(f"absolute paths only; relative: {', '.join(relative)}")
        return value

    @property
    def dataset_limits(self) -> DatasetLimits:
        """Where explicit local datasets may be read from, and how much of a directory."""
        return DatasetLimits(tuple(self.dataset_roots), self.dataset_max_depth, self.dataset_max_files)

    @property
    def has_own_credential(self) -> bool:
        """True when ``credential`` or ``credential_file`` is set."""
        return bool(self.credential is not None and self.credential.get_secret_value().strip()) or bool(
            self.credential_file
        )

    @model_validator(mode="after")
    def _store_url_is_usable(self) -> DriftServiceSettings:
        variable = "DRIFT_SERVICE_DATABASE_URL" if self.database_url else "DRIFT_SERVICE_POSTGRES_DSN"
        try:
            check_database_url(self.store_url)
        except ValueError as exc:  # the URL itself is never echoed: it may hold a password
            raise ValueError(f"{variable}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _registry_needs_token_and_mlflow(self) -> DriftServiceSettings:
        if self.registry_target and self.registry_token is None and not self.has_own_credential:
            raise ValueError(
                "DRIFT_SERVICE_REGISTRY_TARGET needs DRIFT_SERVICE_CREDENTIAL or "
                "DRIFT_SERVICE_CREDENTIAL_FILE (a credential with read_registry; "
                "DRIFT_SERVICE_REGISTRY_TOKEN, deprecated, still works)"
            )
        if self.registry_target and not self.mlflow_tracking_uri:
            raise ValueError(
                "DRIFT_SERVICE_REGISTRY_TARGET needs DRIFT_SERVICE_MLFLOW_TRACKING_URI "
                "(the training rows are downloaded from the version's MLflow run)"
            )
        return self

    @field_validator("num_method", "cat_method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a stattest name is required, e.g. ks or chisquare")
        return value.strip()

    @property
    def resolved_data_dir(self) -> Path:
        """Folder of the SQLite store and the HTML reports."""
        return self.data_dir or repo_root() / ".run" / self.profile / "drift-service"

    @property
    def reports_dir(self) -> Path:
        """Folder the HTML reports are written to (served under ``/reports/``)."""
        return self.resolved_data_dir / "reports"

    @property
    def store_url(self) -> str:
        """SQLAlchemy URL of the event store."""
        if self.database_url:
            return self.database_url
        if self.profile == "embedded":
            return f"sqlite:///{self.resolved_data_dir / 'drift.db'}"
        dsn = self.postgres_dsn
        for prefix in ("postgresql://", "postgres://"):
            if dsn.startswith(prefix):
                return "postgresql+psycopg://" + dsn[len(prefix) :]
        return dsn

    @property
    def drift_config(self) -> DriftConfig:
        """The drift computation's configuration."""
        return DriftConfig(
            alpha=self.alpha,
            correction=self.correction,
            num_method=self.num_method,
            cat_method=self.cat_method,
            psi=PsiConfig(bins=self.psi_bins, floor=self.psi_floor),
        )

    @property
    def trigger_policy(self) -> TriggerPolicy:
        """The retraining policy."""
        return TriggerPolicy(
            dataset_drift=self.policy_dataset_drift,
            psi_threshold=self.policy_psi_threshold,
            auc_drop=self.policy_auc_drop,
            min_rows=self.policy_min_rows,
        )

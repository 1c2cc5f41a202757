"""Settings of the training-service process (environment prefix ``TRAINING_SERVICE_``).

Besides the kit's ``HOST``, ``PORT``, ``GRACE_PERIOD_S``, ``MAX_MESSAGE_BYTES``,
``HEALTH_CHECK_INTERVAL_S`` and ``LOG_LEVEL`` (:class:`creditrisk_kit.ServiceSettings`) and the
products' ``PRODUCTS_DIR`` and ``PRODUCTS`` (:class:`creditrisk_products.ProductSettings`), the
variables below. A bad value exits with status 2 naming the variable (``load_or_exit``); an
invalid product exits with status 2 naming its file and key (``ProductSettings.served_product``).
"""

from __future__ import annotations

from creditrisk_kit import ServiceSettings
from creditrisk_products import ProductSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class TrainingServiceSettings(ServiceSettings, ProductSettings):
    """Typed settings of ``python -m training_service``.

    Attributes:
        port: gRPC port (default 50052; the feature-service has 50051).
        feature_service_address: ``host:port`` (or gRPC target URI) of the feature-service.
        mlflow_tracking_uri: URL of the MLflow tracking server (``mlflow server``), e.g.
            ``http://127.0.0.1:5000``; its ``/health`` is a readiness check.
        experiment_name: MLflow experiment of requests that name none.
        products_dir / products: the product trained for (one per process): its label source,
            gate window, feature policy, cost matrix and fairness feature service are the
            defaults of requests (:func:`training_service.convert.parse_spec`).
        default_cv_folds / default_cv_repeats / default_test_fraction: the evaluation protocol's
            defaults for requests that leave them unset.
        max_concurrent_jobs: jobs run at once (each in a worker thread); the rest wait QUEUED.
        feature_service_timeout_s: deadline of one ``GetHistoricalFeatures`` call, seconds.
        max_jobs_kept: job records kept in memory; beyond it the oldest terminal ones are dropped.
    """

    model_config = SettingsConfigDict(
        env_prefix="TRAINING_SERVICE_", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    port: int = Field(default=50052, ge=0, le=65535)
    feature_service_address: str = Field(default="127.0.0.1:50051", min_length=1)
    mlflow_tracking_uri: str = Field(default="http://127.0.0.1:5000", pattern=r"^https?://")
    experiment_name: str = Field(default="credit-risk", min_length=1)
    default_cv_folds: int = Field(default=5, ge=2)
    default_cv_repeats: int = Field(default=2, ge=1)
    default_test_fraction: float = Field(default=0.2, ge=0.0, le=0.5)
    max_concurrent_jobs: int = Field(default=1, ge=1, le=8)
    feature_service_timeout_s: float = Field(default=300.0, gt=0)
    max_jobs_kept: int = Field(default=1000, ge=1)

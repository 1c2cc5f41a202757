"""``python -m training_service``: the training-service process.

The kit's one service entry (:func:`creditrisk_kit.run_service`): telemetry, settings
(``TRAINING_SERVICE_*``, exit 2 naming a bad variable), JSON logs, then :func:`build`: the
feature-service channel and the job runner, served by the kit's runner: health SERVING once the
MLflow tracking server answers ``/health`` and the feature-service's health is SERVING. On SIGTERM /
SIGINT: new jobs refused and queued jobs cancelled (the stop callback), health NOT_SERVING, drain; a
job still running after the grace period is cancelled and ends CANCELLED; then the jobs, the channel
and telemetry are closed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before scikit-learn's OpenMP code first runs

from creditrisk_kit import Service, ServiceSpec, aio_channel, run_service
from creditrisk_kit.auth import bearer_interceptors, outgoing_credential
from creditrisk_kit.secrets import env_from_files
from creditrisk_kit.tls import ClientTls

from training_service import readiness
from training_service.convert import Defaults
from training_service.jobs import TrainingJobs
from training_service.servicer import POLICY, SERVICE_NAME, register
from training_service.settings import TrainingServiceSettings
from training_service.training_set import TrainingSetSource


def build(settings: TrainingServiceSettings) -> Service:
    """The job runner on a feature-service channel, and the servicer, for the settings' product
    (an invalid one exits with status 2 naming its file and key)."""
    product = settings.served_product("training-service")
    # every call to the feature-service carries the training-service's own credential
    channel = aio_channel(
        settings.feature_service_address,
        max_message_bytes=settings.max_message_bytes,
        tls=ClientTls.from_settings(settings),
        interceptors=bearer_interceptors(outgoing_credential(settings)),
    )
    jobs = TrainingJobs(
        TrainingSetSource(channel, timeout_s=settings.feature_service_timeout_s),
        product=product,
        tracking_uri=settings.mlflow_tracking_uri,
        defaults=Defaults(
            experiment_name=settings.experiment_name,
            cv_folds=settings.default_cv_folds,
            cv_repeats=settings.default_cv_repeats,
            test_fraction=settings.default_test_fraction,
        ),
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_jobs_kept=settings.max_jobs_kept,
    )
    return Service(
        service_names=[SERVICE_NAME],
        register=register(jobs),
        readiness_checks={
            "mlflow tracking server": lambda: readiness.mlflow_ready(settings.mlflow_tracking_uri),
            "feature-service": lambda: readiness.feature_service_ready(channel),
        },
        shutdown_hooks=[lambda: jobs.close(timeout_s=5.0), channel.close],
        on_stop=lambda: jobs.begin_shutdown(settings.grace_period_s),
        auth=POLICY,
    )


SPEC = ServiceSpec("training-service", TrainingServiceSettings, build)


def main() -> None:
    """Entry point: ``MLFLOW_TRACKING_PASSWORD`` from ``MLFLOW_TRACKING_PASSWORD_FILE`` when set
    (creditrisk_kit.secrets; exit 2 naming it when unreadable), then the service."""
    env_from_files(["MLFLOW_TRACKING_PASSWORD"])
    run_service(SPEC)


if __name__ == "__main__":
    main()

"""``python -m training_service``: the training-service process.

Telemetry first, then settings (``TRAINING_SERVICE_*``, exit 2 naming a bad variable), the
feature-service channel and the job runner, then the gRPC server on the kit's runner: health
SERVING once the MLflow tracking server answers ``/health`` and the feature-service's health is
SERVING. On SIGTERM / SIGINT: new jobs refused, queued jobs cancelled, health NOT_SERVING, drain;
a job still running after the grace period is cancelled and ends CANCELLED.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before scikit-learn's OpenMP code first runs

from creditrisk_kit import ServiceRunner, aio_channel
from creditrisk_telemetry import configure_logging, configure_telemetry

from training_service import readiness
from training_service.convert import Defaults
from training_service.jobs import TrainingJobs
from training_service.servicer import SERVICE_NAME, register
from training_service.settings import TrainingServiceSettings
from training_service.training_set import FeatureServiceClient


async def main() -> None:
    telemetry = configure_telemetry("training-service")
    settings = TrainingServiceSettings.load_or_exit()
    configure_logging(settings.log_level)
    channel = aio_channel(settings.feature_service_address, max_message_bytes=settings.max_message_bytes)
    jobs = TrainingJobs(
        FeatureServiceClient(channel, timeout_s=settings.feature_service_timeout_s),
        tracking_uri=settings.mlflow_tracking_uri,
        defaults=Defaults(
            experiment_name=settings.experiment_name,
            cv_folds=settings.default_cv_folds,
            cv_repeats=settings.default_cv_repeats,
            test_fraction=settings.default_test_fraction,
            gate_window_days=settings.default_gate_window_days,
        ),
        fairness_feature_service=settings.fairness_feature_service,
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_jobs_kept=settings.max_jobs_kept,
    )
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=register(jobs),
        readiness_checks={
            "mlflow tracking server": lambda: readiness.mlflow_ready(settings.mlflow_tracking_uri),
            "feature-service": lambda: readiness.feature_service_ready(channel),
        },
        shutdown_hooks=[
            lambda: jobs.close(timeout_s=5.0),
            channel.close,
            lambda: asyncio.to_thread(telemetry.shutdown),
        ],
    )
    await runner.start()

    def on_signal(signum: int) -> None:
        jobs.begin_shutdown(settings.grace_period_s)
        runner.handle_signal(signum)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await runner.wait_for_termination()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if not runner.stopping:
            jobs.begin_shutdown(0)
            await runner.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)

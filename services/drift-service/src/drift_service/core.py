"""The drift-service's domain API: one object the gRPC servicer (and tests, scripts) call.

:class:`DriftCore` logs predictions and labels into the :class:`~drift_service.store.Store`,
computes drift (:mod:`drift_service.drift`) and performance (:mod:`drift_service.performance`) per
model version of a window, writes the Evidently HTML report, evaluates the retraining policy
(:mod:`drift_service.triggers`) and keeps the Prometheus instruments current. Synchronous: the
servicer runs it in worker threads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from creditrisk_kit import InvalidArgument, NotFound
from creditrisk_kit.auth import CredentialProvider, outgoing_credential
from creditrisk_kit.tls import ClientTls
from creditrisk_products import Product

from drift_service import metrics, performance
from drift_service.domain import (
    PREDICTION_COLUMN,
    DriftReport,
    FeatureKind,
    GroundTruthLabel,
    PerformanceReport,
    PredictionEvent,
    ReportStatus,
    TriggerEvent,
    Window,
    now_utc,
)
from drift_service.drift import compute_drift, infer_kinds
from drift_service.product import excluded_columns, feature_kinds, label_values
from drift_service.reference import (
    REGISTRY_TOKEN_SETTING,
    MlflowTrainingDatasetResolver,
    ReferenceData,
    ReferenceResolver,
    RegistryGatewayTrainingDatasetResolver,
    RequestReferenceResolver,
)
from drift_service.settings import DriftServiceSettings
from drift_service.store import Store
from drift_service.triggers import evaluate

_LOG = logging.getLogger("drift_service")


@dataclass(frozen=True)
class DriftOutcome:
    """What ComputeDrift returns: one report per version, the triggers raised."""

    reports: list[DriftReport]
    triggers: list[TriggerEvent]


def default_resolver(
    settings: DriftServiceSettings, product: Product | None = None
) -> RequestReferenceResolver:
    """Explicit URIs (local ones under ``dataset_roots`` only), and the training dataset: through
    the registry-gateway when its target is configured (rows from MLflow; the service's own
    credential sent, or the deprecated ``registry_token`` when set, with a warning), else from
    MLflow's registry when a tracking URI is. The training rows keep the label column of
    ``product`` (default: the one the settings name).

    Raises:
        AuthConfigurationError: ``credential_file`` cannot be read.
    """
    training: ReferenceResolver | None = None
    if settings.mlflow_tracking_uri:
        training = MlflowTrainingDatasetResolver(
            settings.mlflow_tracking_uri,
            registry_uri=settings.mlflow_registry_uri,
            artifact_path=settings.mlflow_training_artifact,
            label_column=(product or settings.catalog().get()).label.column,
            auc_metrics=settings.mlflow_reference_auc_metrics,
            cache_size=settings.mlflow_cache_size,
        )
        if settings.registry_target:
            token: CredentialProvider | str
            if settings.registry_token is not None:
                _LOG.warning(
                    "%s is deprecated: set %s (or %s) to the drift-service's own credential",
                    REGISTRY_TOKEN_SETTING,
                    settings.env_name("credential"),
                    settings.env_name("credential_file"),
                )
                token, setting = settings.registry_token.get_secret_value(), REGISTRY_TOKEN_SETTING
            else:
                token, setting = outgoing_credential(settings), settings.env_name("credential")
            training = RegistryGatewayTrainingDatasetResolver(
                settings.registry_target,
                token,
                training,
                timeout_s=settings.registry_timeout_s,
                tls=ClientTls.from_settings(settings),
                credential_setting=setting,
            )
    return RequestReferenceResolver(training=training, limits=settings.dataset_limits)


class DriftCore:
    """The domain API.

    Args:
        settings: the service settings.
        product: the product monitored (:mod:`drift_service.product`: feature kinds, the label and
            the entity key); default: the one the settings name (``settings.catalog().get()``).
        store: the event store (default: from the settings, migrated).
        resolver: the reference resolver (default: :func:`default_resolver`).
        report_base_url: base URL the HTML reports are served under (``<base>/reports/<id>.html``);
            empty: no URL in the reports.
    """

    def __init__(
        self,
        settings: DriftServiceSettings,
        product: Product | None = None,
        store: Store | None = None,
        resolver: ReferenceResolver | None = None,
        report_base_url: str = "",
    ) -> None:
        self.settings = settings
        self.product = product if product is not None else settings.catalog().get()
        self.feature_kinds = feature_kinds(self.product)
        """Kind of every monitored feature (the type check of logged values, the tests)."""
        if store is None:
            store = Store(settings.store_url, settings.postgres_schema)
            store.migrate()
        self.store = store
        self.resolver = resolver or default_resolver(settings, self.product)
        self.report_base_url = report_base_url.rstrip("/")

    # --- logging ------------------------------------------------------------------------------

    def log_predictions(self, events: Sequence[PredictionEvent]) -> tuple[int, int]:
        """Store valid prediction events idempotently; returns ``(accepted, duplicates)``."""
        accepted, duplicates = self.store.insert_predictions(events, now_utc()) if events else (0, 0)
        metrics.EVENTS_RECEIVED.labels("accepted").inc(accepted)
        metrics.EVENTS_RECEIVED.labels("duplicate").inc(duplicates)
        return accepted, duplicates

    def log_ground_truth(self, labels: Sequence[GroundTruthLabel]) -> tuple[int, int]:
        """Store valid labels and join them; returns ``(joined, unmatched)``."""
        joined, unmatched = self.store.upsert_labels(labels, now_utc()) if labels else (0, 0)
        metrics.LABELS_RECEIVED.labels("joined").inc(joined)
        metrics.LABELS_RECEIVED.labels("unmatched").inc(unmatched)
        return joined, unmatched

    # --- windows ------------------------------------------------------------------------------

    def _versions(self, window: Window) -> list[int]:
        if not window.model_name:
            raise InvalidArgument("window.model_name", "required")
        if window.end <= window.start:
            raise InvalidArgument("window.time_range", "end must be after start")
        if window.model_version is not None:
            if not self.store.model_known(window.model_name, window.model_version):
                raise NotFound("model version", f"{window.model_name}/{window.model_version}")
            return [window.model_version]
        if not self.store.model_known(window.model_name):
            raise NotFound("registered model", window.model_name)
        return self.store.window_versions(window)

    def _kinds(self, reference: pd.DataFrame) -> dict[str, FeatureKind]:
        inferred = infer_kinds(reference, excluded_columns(self.product))
        return {c: self.feature_kinds.get(c, k) for c, k in inferred.items()}

    def _reference_auc(self, reference: ReferenceData) -> float | None:
        """The source's own figure (an MLflow run's metric), else the reference rows' labels and
        scores (the product's label column), else the configured ``reference_auc``."""
        if reference.auc is not None:
            return reference.auc
        frame, column = reference.frame, self.product.label.column
        if column in frame.columns and PREDICTION_COLUMN in frame.columns:
            labels = label_values(self.product, frame[column])
            scores = pd.to_numeric(frame[PREDICTION_COLUMN], errors="coerce")
            ok = labels.isin([0, 1]) & scores.notna()
            auc = performance.roc_auc(scores[ok].to_numpy(), labels[ok].to_numpy(int))
            if auc is not None:
                return auc
        return self.settings.reference_auc

    def compute_drift(self, window: Window, dataset_uri: str | None = None) -> DriftOutcome:
        """Drift per model version of the window; stores the reports and the triggers raised.

        Raises:
            InvalidArgument: a missing model name or an inverted range.
            NotFound: an unknown model (version) or an unreadable reference dataset.
            FailedPrecondition: no training-dataset reference (no MLflow configured, or a version
                without a run), or its training rows do not match the sha256 recorded at
                registration (no report of that version is stored).
            Unavailable: the MLflow tracking server did not answer.
        """
        reports, triggers = [], []
        for version in self._versions(window):
            reference = self.resolver.resolve(window.model_name, version, dataset_uri)
            report = self._drift_report(window, version, reference)
            self.store.save_drift_report(report)
            perf = self._performance_report(window, version)
            self.store.save_performance_report(uuid.uuid4().hex, perf)
            reasons = evaluate(self.settings.trigger_policy, report, perf, self._reference_auc(reference))
            reports.append(report)
            if reasons:
                trigger = TriggerEvent(
                    id=uuid.uuid4().hex,
                    trigger_time=now_utc(),
                    window=window,
                    model_name=window.model_name,
                    model_version=version,
                    reasons=reasons,
                    drift_report_ids=[report.id],
                )
                self.store.save_trigger_event(trigger)
                triggers.append(trigger)
                _LOG.info(
                    "trigger %s for %s/%s: %s",
                    trigger.id,
                    window.model_name,
                    version,
                    ", ".join(r.kind.value for r in reasons),
                    extra={"drift.trigger_id": trigger.id},
                )
        return DriftOutcome(reports, triggers)

    def _drift_report(self, window: Window, version: int, reference: ReferenceData) -> DriftReport:
        s = self.settings
        current = self.store.window_frame(window, version)
        report = DriftReport(
            id=uuid.uuid4().hex,
            window=window,
            model_version=version,
            status=ReportStatus.OK,
            reference=reference.ref,
            reference_row_count=len(reference.frame),
            current_row_count=len(current),
        )
        if len(current) < s.min_rows or len(reference.frame) < s.min_reference_rows:
            report.status = ReportStatus.INSUFFICIENT_DATA
            report.status_message = (
                f"{len(current)} rows < minimum {s.min_rows}"
                if len(current) < s.min_rows
                else f"reference has {len(reference.frame)} rows < minimum {s.min_reference_rows}"
            )
            return report
        result = compute_drift(reference.frame, current, self._kinds(reference.frame), s.drift_config)
        report.features = result.features
        report.prediction_drift = result.prediction_drift
        report.drift_share = result.drift_share
        report.dataset_drift = result.dataset_drift
        report.dataset_drift_rule = result.rule
        if result.save_html(s.reports_dir / f"{report.id}.html") and self.report_base_url:
            report.html_report_url = f"{self.report_base_url}/reports/{report.id}.html"
        labels = (window.model_name, str(version))
        metrics.DRIFT_SHARE.labels(*labels).set(report.drift_share)
        metrics.DATASET_DRIFT.labels(*labels).set(1.0 if report.dataset_drift else 0.0)
        for f in report.features:
            if f.psi is not None:
                metrics.FEATURE_PSI.labels(*labels, f.feature).set(f.psi)
        return report

    def _performance_report(self, window: Window, version: int) -> PerformanceReport:
        frame = self.store.labelled_frame(window, version)
        labelled = frame[frame["label"].notna()]
        n, k = len(frame), len(labelled)
        report = PerformanceReport(
            window=window,
            model_version=version,
            status=ReportStatus.OK,
            prediction_count=n,
            labelled_count=k,
            label_coverage_share=k / n if n else 0.0,
        )
        if k < self.settings.min_labels:
            report.status = ReportStatus.INSUFFICIENT_DATA
            report.status_message = f"{k} labelled predictions < minimum {self.settings.min_labels}"
            return report
        scores = labelled[PREDICTION_COLUMN].to_numpy(float)
        labels = labelled["label"].to_numpy(int)
        report.roc_auc = performance.roc_auc(scores, labels)
        report.ks = performance.ks_statistic(scores, labels)
        report.default_rate = float(np.mean(labels))
        report.mean_probability_of_default = float(np.mean(scores))
        report.calibration_bins = performance.calibration_bins(scores, labels, self.settings.calibration_bins)
        return report

    def get_performance(self, window: Window) -> list[PerformanceReport]:
        """Performance per model version of the window (stored).

        Raises:
            InvalidArgument: a missing model name or an inverted range.
            NotFound: an unknown model (version).
        """
        reports = []
        for version in self._versions(window):
            report = self._performance_report(window, version)
            self.store.save_performance_report(uuid.uuid4().hex, report)
            reports.append(report)
        return reports

    # --- reads --------------------------------------------------------------------------------

    def get_drift_report(self, report_id: str) -> DriftReport:
        """A stored drift report.

        Raises:
            NotFound: naming the unknown id.
        """
        report = self.store.get_drift_report(report_id)
        if report is None:
            raise NotFound("drift report", report_id)
        return report

    def list_drift_reports(
        self,
        *,
        model_name: str = "",
        model_version: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[DriftReport], int | None]:
        """Stored drift reports, newest first; ``(page, next position or None)`` (``Store``)."""
        return self.store.list_drift_reports(
            model_name=model_name,
            model_version=model_version,
            start=start,
            end=end,
            before=before,
            limit=limit,
        )

    def get_trigger_event(self, trigger_id: str) -> TriggerEvent:
        """A stored trigger event.

        Raises:
            NotFound: naming the unknown id.
        """
        trigger = self.store.get_trigger_event(trigger_id)
        if trigger is None:
            raise NotFound("trigger event", trigger_id)
        return trigger

    def list_trigger_events(
        self,
        *,
        model_name: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[TriggerEvent], int | None]:
        """Stored trigger events, newest first; ``(page, next position or None)`` (``Store``)."""
        return self.store.list_trigger_events(
            model_name=model_name, start=start, end=end, before=before, limit=limit
        )

    async def ready(self) -> bool:
        """Readiness: the store answers."""
        import asyncio

        return await asyncio.to_thread(self.store.ping)

    def close(self) -> None:
        """Release the store's connections and the reference resolver's channel."""
        self.store.close()
        training = getattr(self.resolver, "training", None)
        if isinstance(training, RegistryGatewayTrainingDatasetResolver):
            training.close()

"""The core over a SQLite store: windows per version, insufficient data, triggers, performance,
HTML reports, metrics."""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import T0, events_from_frame
from creditrisk_kit import FailedPrecondition, InvalidArgument, NotFound
from creditrisk_kit.auth import Authenticator
from drift_service.core import DriftCore
from drift_service.domain import GroundTruthLabel, PolicyKind, ReportStatus, Window, now_utc
from drift_service.reports_http import ReportServer
from drift_service.settings import DriftServiceSettings
from german_frames import shift
from prometheus_client import REGISTRY

pytestmark = pytest.mark.usefixtures("evidently_loaded")


@pytest.fixture
def core(settings: DriftServiceSettings) -> DriftCore:
    core = DriftCore(settings, report_base_url="http://reports.test")
    yield core
    core.close()


def window(minutes: int = 10_000, version: int | None = None) -> Window:
    return Window("credit-risk", T0, T0 + timedelta(minutes=minutes), model_version=version)


def test_window_straddling_a_champion_swap_gives_one_report_per_version(
    core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    current = split[1]
    core.log_predictions(events_from_frame(current.iloc[:150], model_version=1))
    core.log_predictions(
        events_from_frame(current.iloc[150:300], model_version=2, start=T0 + timedelta(minutes=150))
    )
    outcome = core.compute_drift(window(), str(reference_file))
    assert [r.model_version for r in outcome.reports] == [1, 2]
    assert [r.current_row_count for r in outcome.reports] == [150, 150]
    assert all(r.status is ReportStatus.OK and not r.dataset_drift for r in outcome.reports)
    assert outcome.triggers == []
    only_two = core.compute_drift(window(version=2), str(reference_file))
    assert [r.model_version for r in only_two.reports] == [2]
    r = outcome.reports[0]
    assert r.reference.source == str(reference_file)
    assert len(r.reference.digest) == 16
    assert r.reference_row_count == len(split[0])
    assert r.html_report_url == f"http://reports.test/reports/{r.id}.html"
    assert (core.settings.reports_dir / f"{r.id}.html").is_file()
    assert core.get_drift_report(r.id).features == r.features


def test_window_below_the_minimum_is_insufficient_never_an_alarm(
    core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    core.log_predictions(events_from_frame(shift(split[1].iloc[:50], 3)))  # shifted, but 50 rows
    outcome = core.compute_drift(window(), str(reference_file))
    (report,) = outcome.reports
    assert report.status is ReportStatus.INSUFFICIENT_DATA
    assert report.status_message == "50 rows < minimum 100"
    assert not report.dataset_drift
    assert report.features == []
    assert report.html_report_url == ""
    assert outcome.triggers == []


def test_shifted_window_fires_a_trigger_with_its_figures(
    core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    core.log_predictions(events_from_frame(shift(split[1].iloc[:200], 4)))
    outcome = core.compute_drift(window(), str(reference_file))
    (report,) = outcome.reports
    (trigger,) = outcome.triggers
    assert report.dataset_drift
    assert trigger.drift_report_ids == [report.id]
    kinds = {r.kind for r in trigger.reasons}
    assert PolicyKind.DATASET_DRIFT in kinds
    assert PolicyKind.PSI in kinds
    drift_reason = next(r for r in trigger.reasons if r.kind is PolicyKind.DATASET_DRIFT)
    assert drift_reason.figure == pytest.approx(report.drift_share)
    psi_reason = next(r for r in trigger.reasons if r.feature == "age_in_years")
    age = next(f for f in report.features if f.feature == "age_in_years")
    assert psi_reason.figure == pytest.approx(age.psi)
    assert psi_reason.threshold == 0.25
    assert core.get_trigger_event(trigger.id).reasons == trigger.reasons
    assert [t.id for t in core.list_trigger_events(model_name="credit-risk")[0]] == [trigger.id]
    labels = {"model_name": "credit-risk", "model_version": "1"}
    assert REGISTRY.get_sample_value("drift_service_drift_share", labels) == pytest.approx(report.drift_share)
    assert REGISTRY.get_sample_value(
        "drift_service_feature_psi", {**labels, "feature": "age_in_years"}
    ) == pytest.approx(age.psi)


def test_auc_drop_fires_and_performance_is_reported(
    core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    frame = split[1].iloc[:200]
    events = events_from_frame(frame)
    core.log_predictions(events)
    # labels that contradict the scores: the riskier half was good -> AUC near 0
    median = np.median([e.probability_of_default for e in events])
    labels = [
        GroundTruthLabel(
            label=int(e.probability_of_default < median), observed_time=now_utc(), event_id=e.event_id
        )
        for e in events[:120]
    ]
    assert core.log_ground_truth(labels) == (120, 0)
    outcome = core.compute_drift(window(), str(reference_file))
    (trigger,) = outcome.triggers
    (auc,) = [r for r in trigger.reasons if r.kind is PolicyKind.AUC_DROP]
    assert auc.figure > 0.5
    assert auc.threshold == 0.05
    (perf,) = core.get_performance(window())
    assert perf.status is ReportStatus.OK
    assert perf.prediction_count == 200
    assert perf.labelled_count == 120
    assert perf.label_coverage_share == pytest.approx(0.6)
    assert perf.roc_auc is not None
    assert perf.roc_auc < 0.1
    assert perf.ks is not None
    assert perf.ks > 0.8
    assert perf.default_rate == pytest.approx(np.mean([g.label for g in labels]))
    assert sum(b.count for b in perf.calibration_bins) == 120


def test_too_few_labels_is_insufficient(core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events = events_from_frame(split[1].iloc[:40])
    core.log_predictions(events)
    core.log_ground_truth(
        [GroundTruthLabel(label=1, observed_time=now_utc(), event_id=e.event_id) for e in events[:5]]
    )
    (perf,) = core.get_performance(window())
    assert perf.status is ReportStatus.INSUFFICIENT_DATA
    assert perf.roc_auc is None
    assert perf.status_message == "5 labelled predictions < minimum 20"
    assert perf.label_coverage_share == pytest.approx(5 / 40)


def test_errors(core: DriftCore, split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    core.log_predictions(events_from_frame(split[1].iloc[:10]))
    with pytest.raises(NotFound, match=r"credit-risk/9"):
        core.compute_drift(window(version=9), "x.parquet")
    with pytest.raises(NotFound, match="registered model"):
        core.compute_drift(Window("nope", T0, T0 + timedelta(days=1)), "x.parquet")
    with pytest.raises(NotFound, match="reference dataset"):
        core.compute_drift(window(), str(tmp_path / "missing.parquet"))
    with pytest.raises(FailedPrecondition, match="registry-gateway"):
        core.compute_drift(window(), None)
    with pytest.raises(InvalidArgument, match=r"window\.time_range"):
        core.compute_drift(Window("credit-risk", T0, T0), "x.parquet")
    with pytest.raises(NotFound, match="drift report"):
        core.get_drift_report("nope")


def test_html_report_served_over_http(
    settings: DriftServiceSettings, split: tuple[pd.DataFrame, pd.DataFrame], reference_file: Path
) -> None:
    server = ReportServer(
        settings.reports_dir, "127.0.0.1", 0, authenticator=Authenticator(disabled=True)
    ).start()
    core = DriftCore(settings, report_base_url=server.base_url)
    try:
        core.log_predictions(events_from_frame(split[1].iloc[:120]))
        (report,) = core.compute_drift(window(), str(reference_file)).reports
        with urllib.request.urlopen(report.html_report_url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert b"<!DOCTYPE html>" in response.read(2000)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server.base_url}/reports/../drift.db", timeout=10)
    finally:
        core.close()
        server.stop()

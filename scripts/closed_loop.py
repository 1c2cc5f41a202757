"""The world around the platform on a simulated clock: applicants arriving, their outcomes later.

Used by ``make demo`` (``scripts/demo.py``) and the closed-loop end-to-end test
(``tests/e2e/test_pipelines_e2e.py``), both in the development environment; it speaks to the
services only through the contracts (``creditrisk-contracts``). Nothing here is the platform's
logic: it stands for the product backend sending applications and the collections system
reporting defaults.

A replay (:func:`make_stream`) draws German credit rows (seeded, with replacement) as new
applicants (fresh ids) at simulated application times past the data's last date, and then:

1. :func:`push_features` writes their attributes to the feature store (``Push`` to each view's push
   source, online and offline, stamped with the application time): the gateway reads them online,
   later training sets and the gate read them offline, point in time;
2. :func:`score` sends them through the inference-gateway (``PredictBatch`` with ``event_time`` =
   the application time), which logs every prediction to the drift-service;
3. :func:`deliver_labels`, once the simulated clock has passed each application time plus the label
   delay, writes their outcomes to the label table (``credit_label_push``, offline, event time =
   when the outcome became known) and to the drift-service (``LogGroundTruth`` by event id).

Two regimes (:data:`NORMAL`, :data:`SHIFTED`), fixtures whose outcome is known in advance:

* normal: rows as they are, with their own labels (the population the champion learnt);
* shifted: the issue's covariate shift (credit amount x 1.5, age + 10 years, 30% of purposes ->
  business) **and** a new default pattern: an applicant defaults iff the loan is short (duration
  < 18 months: a wave of quick small-loan defaults), with 10% of the outcomes flipped at random.
  A champion trained on the old data ranks short loans as safe (ROC AUC well below 0.5 on the new
  outcomes), so drift must be detected, the AUC drop must fire, and a model retrained on the new
  data must pass the gate; a deliberately weak model must be refused.
"""

from __future__ import annotations

import csv
import os
import random
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from creditrisk.common.v1 import time_range_pb2, values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fpb_grpc
from creditrisk.inference.v1 import inference_service_pb2 as ipb
from creditrisk.inference.v1 import inference_service_pb2_grpc as ipb_grpc
from creditrisk_kit.auth import BearerInterceptor
from google.protobuf import timestamp_pb2

ROOT = Path(__file__).resolve().parent.parent
GERMAN_CSV = ROOT / "data" / "german_credit.csv"
#: The ingested data's applications end here (feature-service ingestion: [2023-01-01, 2025-01-01)).
DATA_END = datetime(2025, 1, 1, tzinfo=UTC)
#: Label delay of the simulated outcomes, as the feature-service's ingestion (LABEL_DELAY_DAYS).
LABEL_DELAY = timedelta(days=365)

#: Feature views and their columns (products/german_credit/feature_repo/feature_views.py).
VIEWS: dict[str, tuple[str, ...]] = {
    "loan_request": (
        "duration_in_month",
        "credit_amount",
        "purpose",
        "installment_rate_in_percentage_of_disposable_income",
        "other_debtors_or_guarantors",
        "other_installment_plans",
    ),
    "credit_standing": (
        "status_of_existing_checking_account",
        "credit_history",
        "savings_account_and_bonds",
        "number_of_existing_credits_at_this_bank",
        "property",
    ),
    "employment_and_residence": (
        "present_employment_since",
        "job",
        "present_residence_since",
        "housing",
        "telephone",
    ),
    "demographics": ("age_in_years", "number_of_people_being_liable_to_provide_maintenance_for"),
    "protected_attributes": ("personal_status_and_sex", "foreign_worker"),
}
INT_COLUMNS = frozenset(
    {
        "duration_in_month",
        "credit_amount",
        "installment_rate_in_percentage_of_disposable_income",
        "number_of_existing_credits_at_this_bank",
        "present_residence_since",
        "age_in_years",
        "number_of_people_being_liable_to_provide_maintenance_for",
    }
)
NORMAL, SHIFTED = "normal", "shifted"
#: Largest PredictBatch sent (the gateway's MAX_BATCH_SIZE is 256).
BATCH = 100


def load_rows(path: Path = GERMAN_CSV) -> list[dict[str, Any]]:
    """The German credit rows: attributes typed (ints for the integer columns), ``label`` 1 = bad."""
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            row: dict[str, Any] = {k: int(v) if k in INT_COLUMNS else v for k, v in record.items()}
            row["label"] = 1 if row.pop("creditability") == "bad" else 0
            rows.append(row)
    return rows


@dataclass
class Applicant:
    """One replayed application: attributes, its outcome, and what the gateway answered."""

    applicant_id: int
    application_time: datetime
    attributes: dict[str, Any]
    label: int
    event_id: str = ""
    probability_of_default: float = float("nan")
    model_version: int = 0


@dataclass
class Stream:
    """A replay: its applicants in application-time order and its simulated time span."""

    regime: str
    applicants: list[Applicant] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.applicants[0].application_time

    @property
    def end(self) -> datetime:
        """Exclusive end: one second after the last application."""
        return self.applicants[-1].application_time + timedelta(seconds=1)

    @property
    def labels_known(self) -> datetime:
        """When the last outcome of the stream is known (simulated clock)."""
        return self.applicants[-1].application_time + LABEL_DELAY


def make_stream(
    rows: Sequence[dict[str, Any]],
    regime: str,
    count: int,
    start: datetime,
    days: float,
    first_id: int,
    seed: int,
) -> Stream:
    """``count`` applicants drawn from ``rows`` (seeded, with replacement), spread evenly over
    ``days`` simulated days from ``start``, with ids from ``first_id``.

    Raises:
        ValueError: an unknown regime, a start before the data's end, or a count < 1.
    """
    if regime not in (NORMAL, SHIFTED):
        raise ValueError(f"regime={regime!r}: use {NORMAL!r} or {SHIFTED!r}")
    if start < DATA_END:
        raise ValueError(f"start {start:%Y-%m-%d} is before the data's last date {DATA_END:%Y-%m-%d}")
    if count < 1:
        raise ValueError("count must be >= 1")
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not cryptography
    step = timedelta(days=days) / count
    stream = Stream(regime)
    for i in range(count):
        row = dict(rng.choice(rows))
        label = row.pop("label")
        if regime == SHIFTED:
            row["credit_amount"] = round(row["credit_amount"] * 1.5)
            row["age_in_years"] += 10
            if rng.random() < 0.3:
                row["purpose"] = "business"
            label = int(row["duration_in_month"] < 18)
            if rng.random() < 0.1:
                label = 1 - label
        stream.applicants.append(
            Applicant(first_id + i, (start + i * step).replace(microsecond=0), row, label)
        )
    return stream


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return out


def _value(value: Any) -> values_pb2.FeatureValue:
    if isinstance(value, str):
        return values_pb2.FeatureValue(string_value=value)
    return values_pb2.FeatureValue(int64_value=int(value))


#: The CA certificates (PEM) the stack's servers are checked against: set, every channel and HTTP
#: client here speaks TLS (the local stack's ``<data folder>/tls/ca.pem``, scripts/stack_certs.py);
#: unset, plaintext. The pipelines' components read the same variable (creditrisk_pipelines).
CA_FILE_ENV = "CREDITRISK_TLS_CA_FILE"


def ca_file() -> Path | None:
    """The file of :data:`CA_FILE_ENV`, or None (plaintext)."""
    value = os.environ.get(CA_FILE_ENV, "").strip()
    return Path(value) if value else None


def channel(target: str) -> grpc.Channel:
    """A sync channel to ``target``: TLS trusting :func:`ca_file` (the server's certificate must
    name the target's host), plaintext when it is unset.

    Raises:
        OSError: the CA file cannot be read.
    """
    ca = ca_file()
    if ca is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()))


def http_verify() -> ssl.SSLContext | bool:
    """``verify=`` of an HTTP client of the stack (httpx): an SSL context trusting :func:`ca_file`,
    or True (the system's CAs, for an ``http://`` URL unused)."""
    ca = ca_file()
    return ssl.create_default_context(cafile=str(ca)) if ca is not None else True


def authed_channel(target: str, token: str) -> grpc.Channel:
    """:func:`channel` to ``target`` whose every call carries the bearer credential ``token``."""
    return grpc.intercept_channel(channel(target), BearerInterceptor(token))


def push_features(feature_service: str, stream: Stream, token: str) -> int:
    """Write the applicants' attributes to every feature view (online and offline), stamped with
    their application times, as ``token`` (write_features). Returns the rows written per view."""
    with authed_channel(feature_service, token) as channel:
        stub = fpb_grpc.FeatureStoreServiceStub(channel)
        written = 0
        for view, columns in VIEWS.items():
            rows = [
                fpb.PushRow(
                    values={
                        "applicant_id": values_pb2.FeatureValue(int64_value=a.applicant_id),
                        **{c: _value(a.attributes[c]) for c in columns},
                    },
                    event_timestamp=_ts(a.application_time),
                    created_timestamp=_ts(a.application_time),
                )
                for a in stream.applicants
            ]
            response = stub.Push(
                fpb.PushRequest(
                    push_source=f"{view}_push", rows=rows, target=fpb.PUSH_TARGET_ONLINE_AND_OFFLINE
                ),
                timeout=120,
            )
            written = int(response.rows_written)
    return written


def score(inference_gateway: str, stream: Stream, token: str) -> None:
    """Send every applicant through the gateway (``PredictBatch``, ``event_time`` = application
    time) as ``token`` (an API key with the predict role); records event id, PD and version on
    each applicant.

    Raises:
        RuntimeError: an item failed (its error).
    """
    with authed_channel(inference_gateway, token) as gateway:
        stub = ipb_grpc.InferenceServiceStub(gateway)
        for i in range(0, len(stream.applicants), BATCH):
            chunk = stream.applicants[i : i + BATCH]
            response = stub.PredictBatch(
                ipb.PredictBatchRequest(
                    requests=[
                        ipb.PredictRequest(
                            applicant_id=a.applicant_id,
                            event_time=_ts(a.application_time),
                            client_request_id=f"{stream.regime}-{a.applicant_id}",
                        )
                        for a in chunk
                    ]
                ),
                timeout=120,
            )
            for applicant, result in zip(chunk, response.results, strict=True):
                if result.WhichOneof("result") != "prediction":
                    raise RuntimeError(f"applicant {applicant.applicant_id}: {result.error.message}")
                applicant.event_id = result.prediction.event_id
                applicant.probability_of_default = result.prediction.probability_of_default
                applicant.model_version = int(result.prediction.model_version)


def window(model_name: str, stream: Stream) -> dpb.Window:
    """The drift-service window of a stream (every version)."""
    return dpb.Window(
        model_name=model_name,
        time_range=time_range_pb2.TimeRange(start=_ts(stream.start), end=_ts(stream.end)),
    )


def wait_logged(
    drift_service: str, model_name: str, stream: Stream, token: str, timeout_s: float = 120.0
) -> int:
    """Wait until the drift-service holds every prediction of the stream (the gateway logs them
    asynchronously, in batches), asking as ``token`` (read_monitoring). Returns the count.

    Raises:
        TimeoutError: fewer predictions than applicants after ``timeout_s``.
    """
    deadline, count = time.monotonic() + timeout_s, 0
    with authed_channel(drift_service, token) as channel:
        stub = dpb_grpc.DriftServiceStub(channel)
        while time.monotonic() < deadline:
            response = stub.GetPerformance(
                dpb.GetPerformanceRequest(window=window(model_name, stream)), timeout=60
            )
            count = sum(r.prediction_count for r in response.reports)
            if count >= len(stream.applicants):
                return count
            time.sleep(0.5)
    raise TimeoutError(f"{count} of {len(stream.applicants)} predictions logged after {timeout_s:.0f} s")


def deliver_labels(feature_service: str, drift_service: str, stream: Stream, token: str) -> tuple[int, int]:
    """The outcomes, known ``LABEL_DELAY`` after each application: to the label table (offline
    push, event time = when known, with the application time) and to the drift-service (by event
    id). Returns (label rows written, labels joined to a prediction).

    Raises:
        RuntimeError: the drift-service rejected a label.
    """
    rows = [
        fpb.PushRow(
            values={
                "applicant_id": values_pb2.FeatureValue(int64_value=a.applicant_id),
                "creditability": values_pb2.FeatureValue(int64_value=a.label),
                "application_timestamp": values_pb2.FeatureValue(
                    string_value=a.application_time.isoformat().replace("+00:00", "Z")
                ),
            },
            event_timestamp=_ts(a.application_time + LABEL_DELAY),
            created_timestamp=_ts(a.application_time + LABEL_DELAY),
        )
        for a in stream.applicants
    ]
    with authed_channel(feature_service, token) as channel:
        written = fpb_grpc.FeatureStoreServiceStub(channel).Push(
            fpb.PushRequest(push_source="credit_label_push", rows=rows, target=fpb.PUSH_TARGET_OFFLINE),
            timeout=120,
        )
    labels = [
        dpb.GroundTruth(
            event_id=a.event_id, label=a.label, observed_time=_ts(a.application_time + LABEL_DELAY)
        )
        for a in stream.applicants
        if a.event_id
    ]
    with authed_channel(drift_service, token) as channel:  # write_labels
        answer = dpb_grpc.DriftServiceStub(channel).LogGroundTruth(
            dpb.LogGroundTruthRequest(labels=labels), timeout=120
        )
    if answer.rejected:
        raise RuntimeError(f"labels rejected: {list(answer.rejected)[:3]}")
    return int(written.rows_written), int(answer.joined)


def iso(when: datetime) -> str:
    """``2025-03-01T00:00:00Z``: how the pipelines take times."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def default_rate(applicants: Iterable[Applicant]) -> float:
    """Share of applicants labelled bad."""
    labels = [a.label for a in applicants]
    return sum(labels) / len(labels)

"""The event store: prediction events, ground truth, drift and performance reports, trigger events.

SQLAlchemy 2 Core over SQLite (embedded profile) or PostgreSQL (real profile), one code path, on
the service kit's SQL store base (:mod:`creditrisk_kit.sqlstore`: engine, SQLite pragmas, the
PostgreSQL schema, alembic, readiness); the schema is managed by alembic migrations
(``drift_service/migrations``), applied by :meth:`Store.migrate` at start.

* **Idempotent logging**: ``INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id`` on
  both dialects; a redelivered event is stored once (the first write wins) and counted as a
  duplicate. Labels upsert on their key (``ON CONFLICT DO UPDATE``): a label sent again replaces
  the earlier one.
* **Durability**: every call is one transaction committed before it returns, durable on both
  databases (SQLite in WAL mode with ``synchronous=FULL``, one fsync per batch: see
  :mod:`creditrisk_kit.sqlstore`); a busy SQLite writer is waited for up to 30 s.
* **PostgreSQL schema**: every table (and alembic's version table) lives in ``schema`` via the
  connection's ``search_path``, so parallel test sessions each get their own schema.
* **Label join**: a label keyed by event id resolves to that id; one keyed by applicant and
  application time resolves to the latest returned (non-shadow) prediction of the applicant at or
  before that time, now or when such a prediction arrives later (``resolved_event_id``). A shadow
  prediction takes the label of its ``primary_event_id``.

Times are stored as naive UTC timestamps and returned aware (UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from creditrisk_kit.sqlstore import SqlStore, naive_utc, next_in_sequence
from sqlalchemy.engine import Connection

from drift_service.domain import (
    PREDICTION_COLUMN,
    DriftReport,
    GroundTruthLabel,
    PerformanceReport,
    PredictionEvent,
    ServingMode,
    TriggerEvent,
    Window,
    drift_report_from_json,
    performance_report_from_json,
    to_json,
    trigger_event_from_json,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

metadata = sa.MetaData()
"""The tables as the migrations build them (tests compare the two: ``Store.schema_differences``)."""

prediction_events = sa.Table(
    "prediction_events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("applicant_id", sa.BigInteger, nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("event_time", sa.DateTime, nullable=False),
    sa.Column("probability_of_default", sa.Float, nullable=False),
    sa.Column("decision", sa.Integer, nullable=False),
    sa.Column("decision_threshold", sa.Float, nullable=False),
    sa.Column("serving_slot", sa.Integer, nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(64), nullable=False),
    sa.Column("primary_event_id", sa.String(128), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("missing_features", sa.JSON, nullable=False),
    sa.Column("received_time", sa.DateTime, nullable=False),
    sa.Index("ix_prediction_events_window", "model_name", "event_time"),
    sa.Index("ix_prediction_events_applicant", "applicant_id", "event_time"),
)

ground_truth = sa.Table(
    "ground_truth",
    metadata,
    sa.Column("label_key", sa.String(300), primary_key=True),
    sa.Column("event_id", sa.String(128)),
    sa.Column("applicant_id", sa.BigInteger),
    sa.Column("application_time", sa.DateTime),
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("observed_time", sa.DateTime, nullable=False),
    sa.Column("received_time", sa.DateTime, nullable=False),
    sa.Column("resolved_event_id", sa.String(128)),
    sa.Index("ix_ground_truth_resolved", "resolved_event_id"),
    sa.Index("ix_ground_truth_applicant", "applicant_id"),
)

drift_reports = sa.Table(
    "drift_reports",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("create_time", sa.DateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_drift_reports_model", "model_name", "model_version", "seq"),
)

performance_reports = sa.Table(
    "performance_reports",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("create_time", sa.DateTime, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
)

trigger_events = sa.Table(
    "trigger_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("trigger_time", sa.DateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_trigger_events_model", "model_name", "seq"),
)


class Store(SqlStore):
    """The event store over one SQLAlchemy engine (engine, :meth:`migrate`, :meth:`ping`,
    :meth:`drop_schema` and :meth:`close` from :class:`creditrisk_kit.sqlstore.SqlStore`).

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/to/drift.db`` or ``postgresql+psycopg://...``.
        schema: PostgreSQL schema of every table (created when missing); ignored for SQLite.

    Raises:
        ValueError: another database than SQLite or PostgreSQL, or a bad schema name.
    """

    def __init__(self, url: str, schema: str | None = None) -> None:
        super().__init__(url, schema, migrations=MIGRATIONS_DIR, busy_timeout_s=30.0)

    # --- logging ------------------------------------------------------------------------------

    def insert_predictions(self, events: Sequence[PredictionEvent], received: datetime) -> tuple[int, int]:
        """Store prediction events, each id once (the first write wins).

        Returns:
            ``(stored now, duplicates)``; duplicates count ids already stored or repeated in the batch.
        """
        unique: dict[str, PredictionEvent] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        rows = [
            {
                "event_id": e.event_id,
                "applicant_id": e.applicant_id,
                "model_name": e.model_name,
                "model_version": e.model_version,
                "event_time": naive_utc(e.event_time),
                "probability_of_default": e.probability_of_default,
                "decision": e.decision,
                "decision_threshold": e.decision_threshold,
                "serving_slot": e.serving_slot,
                "mode": int(e.mode),
                "trace_id": e.trace_id,
                "primary_event_id": e.primary_event_id,
                "features": e.features,
                "missing_features": list(e.missing_features),
                "received_time": naive_utc(received),
            }
            for e in unique.values()
        ]
        if not rows:
            return 0, len(events)
        stmt = (
            self.insert(prediction_events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(prediction_events.c.event_id)
        )
        with self.engine.begin() as conn:
            stored = set(conn.execute(stmt, rows).scalars().all())
            returned = [unique[i] for i in stored if unique[i].mode != ServingMode.SHADOW]
            self._resolve_applicant_labels(conn, {e.applicant_id for e in returned})
        return len(stored), len(events) - len(stored)

    def _latest_returned(self, conn: Connection, applicant_id: int, at: datetime) -> str | None:
        p = prediction_events.c
        return conn.execute(
            sa.select(p.event_id)
            .where(p.applicant_id == applicant_id, p.event_time <= at, p.mode != int(ServingMode.SHADOW))
            .order_by(p.event_time.desc(), p.event_id.desc())
            .limit(1)
        ).scalar()

    def _resolve_applicant_labels(self, conn: Connection, applicants: Iterable[int]) -> None:
        applicants = sorted(set(applicants))
        if not applicants:
            return
        g = ground_truth.c
        for start in range(0, len(applicants), 500):
            chunk = applicants[start : start + 500]
            labels = conn.execute(
                sa.select(g.label_key, g.applicant_id, g.application_time, g.resolved_event_id).where(
                    g.applicant_id.in_(chunk), g.event_id.is_(None)
                )
            ).all()
            for key, applicant, at, resolved in labels:
                latest = self._latest_returned(conn, applicant, at)
                if latest != resolved:
                    conn.execute(
                        sa.update(ground_truth).where(g.label_key == key).values(resolved_event_id=latest)
                    )

    def upsert_labels(self, labels: Sequence[GroundTruthLabel], received: datetime) -> tuple[int, int]:
        """Store labels (a repeated key replaces the earlier label) and join them.

        Returns:
            ``(joined to a known prediction, stored unmatched)``.
        """
        unique: dict[str, GroundTruthLabel] = {}
        for label in labels:
            unique[label.key] = label  # the last of the batch wins, as a later call would
        joined = unmatched = 0
        p = prediction_events.c
        with self.engine.begin() as conn:
            for key, label in unique.items():
                if label.event_id is not None:
                    resolved: str | None = label.event_id
                    known = conn.execute(sa.select(p.event_id).where(p.event_id == label.event_id)).first()
                    is_joined = known is not None
                else:
                    assert label.applicant_id is not None
                    assert label.application_time is not None
                    resolved = self._latest_returned(
                        conn, label.applicant_id, naive_utc(label.application_time)
                    )
                    is_joined = resolved is not None
                row = {
                    "label_key": key,
                    "event_id": label.event_id,
                    "applicant_id": label.applicant_id,
                    "application_time": naive_utc(label.application_time) if label.application_time else None,
                    "label": label.label,
                    "observed_time": naive_utc(label.observed_time),
                    "received_time": naive_utc(received),
                    "resolved_event_id": resolved,
                }
                stmt = self.insert(ground_truth).values(**row)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["label_key"],
                    set_={k: stmt.excluded[k] for k in row if k != "label_key"},
                )
                conn.execute(stmt)
                joined += is_joined
                unmatched += not is_joined
        return joined, unmatched

    # --- windows ------------------------------------------------------------------------------

    def model_known(self, model_name: str, model_version: int | None = None) -> bool:
        """Whether any prediction of the model (version) was ever logged."""
        p = prediction_events.c
        query = sa.select(p.event_id).where(p.model_name == model_name)
        if model_version is not None:
            query = query.where(p.model_version == model_version)
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def _in_window(self, window: Window) -> list[sa.ColumnElement[bool]]:
        p = prediction_events.c
        clauses = [
            p.model_name == window.model_name,
            p.event_time >= naive_utc(window.start),
            p.event_time < naive_utc(window.end),
        ]
        if window.model_version is not None:
            clauses.append(p.model_version == window.model_version)
        return clauses

    def window_versions(self, window: Window) -> list[int]:
        """Model versions with predictions in the window, ascending."""
        p = prediction_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(p.model_version).where(*self._in_window(window)).distinct()
            ).scalars()
            return sorted(int(v) for v in rows)

    def window_frame(self, window: Window, model_version: int) -> pd.DataFrame:
        """The current data of one version in the window: one row per prediction, a column per
        feature (null where absent) plus ``probability_of_default``."""
        p = prediction_events.c
        query = sa.select(p.features, p.probability_of_default).where(
            *self._in_window(window), p.model_version == model_version
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame.from_records([r[0] for r in rows], index=range(len(rows)))
        frame[PREDICTION_COLUMN] = [r[1] for r in rows]
        return frame

    def labelled_frame(self, window: Window, model_version: int) -> pd.DataFrame:
        """Predictions of one version in the window with their label (NaN when none).

        A shadow prediction takes the label of its primary (returned) prediction; when two labels
        resolve to one prediction (by event id and by applicant) the last observed wins.
        """
        p = prediction_events.c
        g = ground_truth.c
        target = sa.case((p.primary_event_id != "", p.primary_event_id), else_=p.event_id)
        query = (
            sa.select(p.event_id, p.probability_of_default, g.label, g.observed_time)
            .select_from(prediction_events.outerjoin(ground_truth, g.resolved_event_id == target))
            .where(*self._in_window(window), p.model_version == model_version)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["event_id", PREDICTION_COLUMN, "label", "observed_time"])
        frame = frame.sort_values("observed_time", na_position="first").drop_duplicates(
            "event_id", keep="last"
        )
        return frame.reset_index(drop=True)

    # --- reports and triggers -----------------------------------------------------------------

    def _payload(self, table: sa.Table, row_id: str) -> Any:
        """The JSON payload of one row by id, or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table.c.payload).where(table.c.id == row_id)).scalar()

    def _page(
        self, query: sa.Select[Any], seq: sa.Column[Any], before: int | None, limit: int
    ) -> tuple[list[Any], int | None]:
        """One page of payloads (``query`` selects them), newest first by ``seq`` below ``before``
        (None: from the newest), and the last one's ``seq`` when more follow (else None): keyset
        paging, so an item stored between two page calls never repeats one."""
        if before is not None:
            query = query.where(seq < before)
        with self.engine.connect() as conn:
            rows = conn.execute(query.add_columns(seq).order_by(seq.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        return [row[0] for row in page], (page[-1][1] if len(rows) > limit and page else None)

    def save_drift_report(self, report: DriftReport) -> None:
        """Store a drift report."""
        with self.engine.begin() as conn:
            conn.execute(
                drift_reports.insert().values(
                    id=report.id,
                    model_name=report.window.model_name,
                    model_version=report.model_version,
                    window_start=naive_utc(report.window.start),
                    window_end=naive_utc(report.window.end),
                    create_time=naive_utc(report.create_time),
                    seq=next_in_sequence(conn, drift_reports.c.seq),
                    payload=to_json(report),
                )
            )

    def get_drift_report(self, report_id: str) -> DriftReport | None:
        """A stored drift report, or None."""
        payload = self._payload(drift_reports, report_id)
        return drift_report_from_json(payload) if payload is not None else None

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
        """Drift reports newest first, filtered, stored before sequence ``before``; returns
        ``(page, the position after it when more follow, else None)`` (see :meth:`_page`)."""
        d = drift_reports.c
        query = sa.select(d.payload)
        if model_name:
            query = query.where(d.model_name == model_name)
        if model_version is not None:
            query = query.where(d.model_version == model_version)
        if start is not None and end is not None:  # windows overlapping [start, end)
            query = query.where(d.window_start < naive_utc(end), d.window_end > naive_utc(start))
        payloads, last = self._page(query, d.seq, before, limit)
        return [drift_report_from_json(x) for x in payloads], last

    def save_performance_report(self, report_id: str, report: PerformanceReport) -> None:
        """Store a performance report."""
        with self.engine.begin() as conn:
            conn.execute(
                performance_reports.insert().values(
                    id=report_id,
                    model_name=report.window.model_name,
                    model_version=report.model_version,
                    window_start=naive_utc(report.window.start),
                    window_end=naive_utc(report.window.end),
                    create_time=naive_utc(report.create_time),
                    payload=to_json(report),
                )
            )

    def get_performance_report(self, report_id: str) -> PerformanceReport | None:
        """A stored performance report, or None."""
        payload = self._payload(performance_reports, report_id)
        return performance_report_from_json(payload) if payload is not None else None

    def save_trigger_event(self, trigger: TriggerEvent) -> None:
        """Store a trigger event."""
        with self.engine.begin() as conn:
            conn.execute(
                trigger_events.insert().values(
                    id=trigger.id,
                    model_name=trigger.model_name,
                    model_version=trigger.model_version,
                    trigger_time=naive_utc(trigger.trigger_time),
                    seq=next_in_sequence(conn, trigger_events.c.seq),
                    payload=to_json(trigger),
                )
            )

    def get_trigger_event(self, trigger_id: str) -> TriggerEvent | None:
        """A stored trigger event, or None."""
        payload = self._payload(trigger_events, trigger_id)
        return trigger_event_from_json(payload) if payload is not None else None

    def list_trigger_events(
        self,
        *,
        model_name: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[TriggerEvent], int | None]:
        """Trigger events newest first, filtered, stored before sequence ``before``; returns
        ``(page, the position after it when more follow, else None)`` (see :meth:`_page`)."""
        t = trigger_events.c
        query = sa.select(t.payload)
        if model_name:
            query = query.where(t.model_name == model_name)
        if start is not None and end is not None:
            query = query.where(t.trigger_time >= naive_utc(start), t.trigger_time < naive_utc(end))
        payloads, last = self._page(query, t.seq, before, limit)
        return [trigger_event_from_json(x) for x in payloads], last

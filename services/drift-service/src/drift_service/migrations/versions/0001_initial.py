"""Initial schema: prediction events, ground truth, drift and performance reports, trigger events.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_events",
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
    )
    op.create_index("ix_prediction_events_window", "prediction_events", ["model_name", "event_time"])
    op.create_index("ix_prediction_events_applicant", "prediction_events", ["applicant_id", "event_time"])
    op.create_table(
        "ground_truth",
        sa.Column("label_key", sa.String(300), primary_key=True),
        sa.Column("event_id", sa.String(128)),
        sa.Column("applicant_id", sa.BigInteger),
        sa.Column("application_time", sa.DateTime),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("observed_time", sa.DateTime, nullable=False),
        sa.Column("received_time", sa.DateTime, nullable=False),
        sa.Column("resolved_event_id", sa.String(128)),
    )
    op.create_index("ix_ground_truth_resolved", "ground_truth", ["resolved_event_id"])
    op.create_index("ix_ground_truth_applicant", "ground_truth", ["applicant_id"])
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("window_start", sa.DateTime, nullable=False),
        sa.Column("window_end", sa.DateTime, nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_drift_reports_model", "drift_reports", ["model_name", "model_version", "seq"])
    op.create_table(
        "performance_reports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("window_start", sa.DateTime, nullable=False),
        sa.Column("window_end", sa.DateTime, nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_table(
        "trigger_events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("trigger_time", sa.DateTime, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_trigger_events_model", "trigger_events", ["model_name", "seq"])


def downgrade() -> None:
    for table in (
        "trigger_events",
        "performance_reports",
        "drift_reports",
        "ground_truth",
        "prediction_events",
    ):
        op.drop_table(table)

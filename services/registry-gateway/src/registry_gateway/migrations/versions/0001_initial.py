"""Initial schema: the append-only audit trail (with the registry-wide alias change sequence).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("role", sa.Integer, nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("from_version", sa.BigInteger),
        sa.Column("to_version", sa.BigInteger),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("alias_seq", sa.BigInteger, unique=True),
    )
    op.create_index("ix_audit_model_seq", "audit_records", ["model_name", "seq"])
    op.create_index("ix_audit_time", "audit_records", ["time"])


def downgrade() -> None:
    op.drop_table("audit_records")

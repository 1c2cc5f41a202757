"""The artifact digests of every version the gateway registered, kept by the gateway itself: an
alias move signs these, never digests read back from MLflow's tags (which any MLflow writer can
change).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_digests",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("digests", sa.JSON, nullable=False),
        sa.Column("register_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registered_digests")

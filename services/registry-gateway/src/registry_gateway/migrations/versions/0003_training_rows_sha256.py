"""The sha256 of each registered version's training rows (``training_set/training_rows.parquet``
of its run), computed by the gateway at registration: the lineage digest the drift-service verifies
its reference rows against. Null for a version registered before this revision, or from a run that
logged no training rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registered_digests", sa.Column("training_rows_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registered_digests") as batch:
        batch.drop_column("training_rows_sha256")

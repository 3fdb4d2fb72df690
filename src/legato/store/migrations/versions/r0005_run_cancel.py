"""Who asked to cancel a run, and when.

Revision ID: r0005_run_cancel
Revises: r0004_journal_owner
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0005_run_cancel"
down_revision: str | None = "r0004_journal_owner"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cancelled_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("cancelled_by")

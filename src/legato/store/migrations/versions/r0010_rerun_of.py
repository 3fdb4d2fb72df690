"""Runs re-run from a step of an earlier run name it (``rerun_of``).

Revision ID: r0010_rerun_of
Revises: r0009_run_queues
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0010_rerun_of"
down_revision: str | None = "r0009_run_queues"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("rerun_of", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rerun_from", sa.String(255), nullable=True))
    op.create_index("ix_runs_rerun_of", "runs", ["rerun_of"])


def downgrade() -> None:
    op.drop_index("ix_runs_rerun_of", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("rerun_from")
        batch.drop_column("rerun_of")

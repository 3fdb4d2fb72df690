"""Retention and erasure: a run's data subject (a digest) and what is left of its payloads.

Revision ID: r0017_run_retention
Revises: r0016_model_call_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0017_run_retention"
down_revision: str | None = "r0016_model_call_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("subject", sa.String(64), nullable=True))
        batch.add_column(sa.Column("payloads", sa.String(16), nullable=True))
    op.create_index("ix_runs_subject", "runs", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_runs_subject", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("payloads")
        batch.drop_column("subject")

"""Schedules (their pause state and one row per fired tick), live workers for the
utilisation metric, and the time of a run's last claim for queue rate limits.

Revision ID: r0014_schedules_workers
Revises: r0013_model_calls
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0014_schedules_workers"
down_revision: str | None = "r0013_model_calls"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("claimed_at", sa.Float, nullable=True))
    op.create_index("ix_runs_queue_claimed", "runs", ["queue", "claimed_at"])
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("paused_at", sa.Float, nullable=True),
        sa.Column("last_tick", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "schedule_ticks",
        sa.Column("schedule", sa.String(255), primary_key=True),
        sa.Column("tick", sa.BigInteger, primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("owner", sa.String(255), primary_key=True),
        sa.Column("queues", sa.Text, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("schedule_ticks")
    op.drop_table("schedules")
    op.drop_index("ix_runs_queue_claimed", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("claimed_at")

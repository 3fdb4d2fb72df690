"""Queues: a run can be enqueued (status ``queued``) for a worker to claim.

Revision ID: r0009_run_queues
Revises: r0008_data_keys
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0009_run_queues"
down_revision: str | None = "r0008_data_keys"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("queue", sa.String(255), nullable=True))
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_runs_queue_status", "runs", ["queue", "status", "tenant"])


def downgrade() -> None:
    op.drop_index("ix_runs_queue_status", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("priority")
        batch.drop_column("queue")

"""Covering indexes for the dashboard's charts and call view.

Spend per day reads the time range with key, model and cost from one index; latency
percentiles per model read calls in latency order without a sort; the newest gateway
calls (every key's, or one key's) are read backwards by id.

Revision ID: r0016_model_call_indexes
Revises: r0015_run_notify
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "r0016_model_call_indexes"
down_revision: str | None = "r0015_run_notify"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_model_calls_at", "model_calls")
    op.drop_index("ix_model_calls_tenant_source", "model_calls")
    op.create_index("ix_model_calls_at", "model_calls", ["at", "tenant", "model", "cost"])
    op.create_index("ix_model_calls_model_latency", "model_calls", ["model", "latency_s", "at", "status", "tenant"])
    op.create_index("ix_model_calls_source", "model_calls", ["source", "id"])
    op.create_index("ix_model_calls_tenant_source", "model_calls", ["tenant", "source", "id"])


def downgrade() -> None:
    for name in (
        "ix_model_calls_at",
        "ix_model_calls_model_latency",
        "ix_model_calls_source",
        "ix_model_calls_tenant_source",
    ):
        op.drop_index(name, "model_calls")
    op.create_index("ix_model_calls_at", "model_calls", ["at"])
    op.create_index("ix_model_calls_tenant_source", "model_calls", ["tenant", "source", "at"])

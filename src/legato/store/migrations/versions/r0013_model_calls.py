"""Model calls: one row per call of an ``llm:``/``agent:`` step or a gateway request.

Metadata (model, deployment, status, timings, tokens, cost, trace id) is in the
clear for the dashboard's aggregates; the redacted prompt, answer and routing path
are one sealed value (``detail``) like every other payload.

Revision ID: r0013_model_calls
Revises: r0012_run_search
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0013_model_calls"
down_revision: str | None = "r0012_run_search"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "model_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False, server_default=""),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("step", sa.String(255), nullable=True),
        sa.Column("item", sa.Integer, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("deployment", sa.String(255), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("ttft_s", sa.Float, nullable=True),
        sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fallbacks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_model_calls_run", "model_calls", ["run_id", "id"])
    op.create_index("ix_model_calls_at", "model_calls", ["at"])
    op.create_index("ix_model_calls_tenant_source", "model_calls", ["tenant", "source", "at"])


def downgrade() -> None:
    op.drop_table("model_calls")

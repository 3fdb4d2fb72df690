"""Per-item checkpoints of map steps: the finished items of a map step that has not
finished yet, so a resume runs only the other items.

Revision ID: r0006_map_items
Revises: r0005_run_cancel
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0006_map_items"
down_revision: str | None = "r0005_run_cancel"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "map_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("item", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
    )
    op.create_index("ix_map_items_run_step", "map_items", ["run_id", "step"])


def downgrade() -> None:
    op.drop_index("ix_map_items_run_step", table_name="map_items")
    op.drop_table("map_items")

"""Data keys of the store's envelope encryption (wrapped by a key-encryption key).

Revision ID: r0008_data_keys
Revises: r0007_sessions_audit
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0008_data_keys"
down_revision: str | None = "r0007_sessions_audit"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("kek_ref", sa.String(500), nullable=False),
        sa.Column("wrapped", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("rotated_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("data_keys")

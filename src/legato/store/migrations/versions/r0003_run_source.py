"""Where a run's pipeline came from, so ``legato runs resume RUN_ID`` can reload it.

Revision ID: 0003_run_source
Revises: 0002_gateway_keys
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_run_source"
down_revision: str | None = "0002_gateway_keys"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("source", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("source")

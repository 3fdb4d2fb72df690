"""A gateway key may name a guardrail applied to every model it calls.

Revision ID: r0011_key_guardrail
Revises: r0010_rerun_of
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0011_key_guardrail"
down_revision: str | None = "r0010_rerun_of"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("guardrail", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("guardrail")

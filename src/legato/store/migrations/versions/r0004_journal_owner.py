"""The tenant (API key id) that wrote each journal entry; ``""`` is the local owner.

Revision ID: r0004_journal_owner
Revises: 0003_run_source
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0004_journal_owner"
down_revision: str | None = "0003_run_source"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both dialects: rebuilding the table would drop the FTS5 triggers on SQLite.
    op.add_column("journal_entries", sa.Column("owner", sa.String(255), nullable=False, server_default=""))
    op.create_index("ix_journal_entries_owner", "journal_entries", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_journal_entries_owner", table_name="journal_entries")
    with op.batch_alter_table("journal_entries", recreate="never") as batch:
        batch.drop_column("owner")

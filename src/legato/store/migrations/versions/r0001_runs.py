"""Runs, step attempts, run events and the journal (with its full-text index).

Revision ID: 0001_runs
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_runs"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# PRAGMA application_id of a legato SQLite store ("LGTO"); a file carrying another
# non-zero id belongs to some other application and is never migrated.
SQLITE_APPLICATION_ID = 0x4C47544F

_SQLITE_FTS = [
    """CREATE VIRTUAL TABLE journal_fts USING fts5(
        title, body, tags, content='journal_entries', content_rowid='id', tokenize='porter unicode61'
    )""",
    """CREATE TRIGGER journal_fts_ai AFTER INSERT ON journal_entries BEGIN
        INSERT INTO journal_fts(rowid, title, body, tags) VALUES (new.id, new.title, new.body, new.tags);
    END""",
    """CREATE TRIGGER journal_fts_ad AFTER DELETE ON journal_entries BEGIN
        INSERT INTO journal_fts(journal_fts, rowid, title, body, tags)
        VALUES ('delete', old.id, old.title, old.body, old.tags);
    END""",
    """CREATE TRIGGER journal_fts_au AFTER UPDATE ON journal_entries BEGIN
        INSERT INTO journal_fts(journal_fts, rowid, title, body, tags)
        VALUES ('delete', old.id, old.title, old.body, old.tags);
        INSERT INTO journal_fts(rowid, title, body, tags) VALUES (new.id, new.title, new.body, new.tags);
    END""",
]

_POSTGRES_FTS = [
    """ALTER TABLE journal_entries ADD COLUMN search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A')
        || setweight(to_tsvector('english', coalesce(tags, '')), 'A')
        || setweight(to_tsvector('english', coalesce(body, '')), 'B')
    ) STORED""",
    "CREATE INDEX ix_journal_entries_search ON journal_entries USING gin (search)",
]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("version_hash", sa.String(64), nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("outputs", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("failed_step", sa.String(255), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("recoveries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("dead_reason", sa.Text, nullable=True),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("estimated_cost", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_runs_idempotency"),
    )
    op.create_index("ix_runs_status_lease", "runs", ["status", "lease_expires_at"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "step_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=True),
        sa.Column("output_tokens", sa.Integer, nullable=True),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("meta", sa.Text, nullable=True),
    )
    op.create_index("ix_step_attempts_run_step", "step_attempts", ["run_id", "step"])

    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("step", sa.String(255), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=True),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "id"])

    op.create_table(
        "journal_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default=""),
        sa.Column("pipeline", sa.String(255), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_journal_entries_created_at", "journal_entries", ["created_at"])
    op.create_index("ix_journal_entries_run_id", "journal_entries", ["run_id"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
        op.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
    elif dialect == "postgresql":
        for statement in _POSTGRES_FTS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TABLE IF EXISTS journal_fts")
    op.drop_table("journal_entries")
    op.drop_table("run_events")
    op.drop_table("step_attempts")
    op.drop_table("runs")

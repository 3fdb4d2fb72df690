"""PostgreSQL tells listeners when the runs table changes (live dashboard views).

A statement-level trigger sends ``NOTIFY legato_runs_changed`` when runs are
inserted or deleted or their status, outputs, error, cost, start, finish or tags
change; heartbeats and checkpoints (lease and ``updated_at`` only) stay silent.
PostgreSQL folds identical notifications of one transaction into one. SQLite needs
nothing: readers watch ``PRAGMA data_version`` (see ``legato.store._changes``).

Revision ID: r0015_run_notify
Revises: r0014_schedules_workers
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "r0015_run_notify"
down_revision: str | None = "r0014_schedules_workers"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """CREATE FUNCTION legato_runs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('legato_runs_changed', '');
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER runs_changed
        AFTER INSERT OR DELETE OR UPDATE OF status, outputs, error, cost, started_at, finished_at, tags ON runs
        FOR EACH STATEMENT EXECUTE FUNCTION legato_runs_changed()"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS runs_changed ON runs")
    op.execute("DROP FUNCTION IF EXISTS legato_runs_changed()")

"""The store's tables, as SQLAlchemy Core metadata.

The migrations under ``migrations/versions`` create these tables; this module is
what the queries are written against. Times are epoch seconds (``Float``) so the
same code runs on SQLite and PostgreSQL without timezone handling. Values (inputs,
outputs, metadata) are stored as text produced by :mod:`legato.store._codec`.

The full-text indexes of the journal and of runs are not part of this metadata:
they are FTS5 virtual tables on SQLite and ``tsvector`` columns on PostgreSQL,
created by the migrations, kept by triggers, and queried with dialect-specific SQL
in :mod:`legato.store._journal` and :mod:`legato.store._search`.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "data_keys",
    "events",
    "journal_entries",
    "map_items",
    "metadata",
    "model_calls",
    "runs",
    "schedule_ticks",
    "schedules",
    "step_attempts",
    "workers",
]

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
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
    sa.Column("source", sa.Text, nullable=True),  # the pipeline's YAML path (revision 0003_run_source)
    sa.Column("cancelled_by", sa.String(255), nullable=True),  # who asked to cancel (revision r0005_run_cancel)
    sa.Column("cancel_requested_at", sa.Float, nullable=True),
    sa.Column("queue", sa.String(255), nullable=True),  # enqueued runs (revision r0009_run_queues)
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_runs_idempotency"),
    sa.Index("ix_runs_status_lease", "status", "lease_expires_at"),
    sa.Index("ix_runs_created_at", "created_at"),
    sa.Index("ix_runs_queue_status", "queue", "status", "tenant"),
    sa.Column("rerun_of", sa.String(64), nullable=True),  # the run this one re-runs (revision r0010_rerun_of)
    sa.Column("rerun_from", sa.String(255), nullable=True),  # the step it re-ran from
    sa.Index("ix_runs_rerun_of", "rerun_of"),
    sa.Column("tags", sa.String(1000), nullable=True),  # ",a,b," (revision r0012_run_search)
    sa.Column("claimed_at", sa.Float, nullable=True),  # last claim by a worker (revision r0014_schedules_workers)
    sa.Index("ix_runs_queue_claimed", "queue", "claimed_at"),
    # Retention and erasure (revision r0017_run_retention): the data subject's digest, and
    # what is left of the payloads (NULL: kept; "metadata", "expired" or "erased": none).
    sa.Column("subject", sa.String(64), nullable=True),
    sa.Column("payloads", sa.String(16), nullable=True),
    sa.Index("ix_runs_subject", "subject"),
)

step_attempts = sa.Table(
    "step_attempts",
    metadata,
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
    sa.Index("ix_step_attempts_run_step", "run_id", "step"),
)

# Finished items of map steps still running (revision r0006_map_items): a resume runs
# only the other items. The rows of a step are deleted when the whole step is committed.
map_items = sa.Table(
    "map_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("item", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Index("ix_map_items_run_step", "run_id", "step"),
)

events = sa.Table(
    "run_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("step", sa.String(255), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=True),
    sa.Index("ix_run_events_run", "run_id", "id"),
)

journal_entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False, server_default=""),
    sa.Column("pipeline", sa.String(255), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("author", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=True),
    sa.Column("owner", sa.String(255), nullable=False, server_default=""),  # the writing tenant (r0004)
    sa.Index("ix_journal_entries_created_at", "created_at"),
    sa.Index("ix_journal_entries_owner", "owner", "created_at"),
    sa.Index("ix_journal_entries_run_id", "run_id"),
)

# Data keys of the envelope encryption, wrapped by a key-encryption key that is never
# stored (revision r0008_data_keys; see legato.store._crypto).
data_keys = sa.Table(
    "data_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kek_id", sa.String(32), nullable=False),
    sa.Column("kek_ref", sa.String(500), nullable=False),
    sa.Column("wrapped", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("rotated_at", sa.Float, nullable=True),
)

# One row per model call of a step or a gateway request (revisions r0013_model_calls, r0016_model_call_indexes):
# metadata in the clear for aggregates, the redacted prompt/answer/path sealed in ``detail``.
model_calls = sa.Table(
    "model_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # "step" or "gateway"
    sa.Column("tenant", sa.String(255), nullable=False, server_default=""),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("step", sa.String(255), nullable=True),
    sa.Column("item", sa.Integer, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("deployment", sa.String(255), nullable=True),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("status", sa.String(64), nullable=False),  # "ok" or the error's class name
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
    sa.Index("ix_model_calls_run", "run_id", "id"),
    sa.Index("ix_model_calls_at", "at", "tenant", "model", "cost"),  # covers spend per day
    sa.Index("ix_model_calls_model_latency", "model", "latency_s", "at", "status", "tenant"),  # covers percentiles
    sa.Index("ix_model_calls_source", "source", "id"),  # the newest gateway calls
    sa.Index("ix_model_calls_tenant_source", "tenant", "source", "id"),  # ... of one key
)

# Schedules of legato.yaml (revision r0014_schedules_workers): the configuration is the
# file's; the store keeps whether each is paused and the latest tick fired, and one row
# per fired tick, whose primary key is what makes a tick fire once across every worker.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("paused_by", sa.String(255), nullable=True),
    sa.Column("paused_at", sa.Float, nullable=True),
    sa.Column("last_tick", sa.BigInteger, nullable=False),  # epoch seconds: ticks after it are due
    sa.Column("updated_at", sa.Float, nullable=False),
)

schedule_ticks = sa.Table(
    "schedule_ticks",
    metadata,
    sa.Column("schedule", sa.String(255), primary_key=True),
    sa.Column("tick", sa.BigInteger, primary_key=True),  # epoch seconds of the tick
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("fired_at", sa.Float, nullable=False),
)

# Workers alive (`legato worker`), each row renewed every few seconds: the slots they
# offer, for the utilisation metric (busy slots are their runs in flight).
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("owner", sa.String(255), primary_key=True),
    sa.Column("queues", sa.Text, nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
)

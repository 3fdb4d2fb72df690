"""Durable runs and the journal: checkpoints, resume, idempotency, leases.

``RunStore`` keeps runs, step attempts and events in SQLite (default
``./.legato/legato.db``) or PostgreSQL; ``DurableRunner`` executes pipelines so a
killed process resumes without redoing finished steps; ``Journal`` records and
searches what was learned. See docs/durable-runs.md and docs/journal.md.
"""

from legato.store._access import LOCAL, Principal, visible_run
from legato.store._call_stats import DurationStats, ModelStats, SpendPoint, model_stats, run_durations, spend_by_day
from legato.store._calls import CallRow, call_values, gateway_calls, record_calls, run_calls
from legato.store._configured import configured_url
from legato.store._database import DEFAULT_DATABASE_URL, resolve_url
from legato.store._datakeys import key_reference as store_key
from legato.store._durable import DurableRunner, pipeline_version, result_from_record, run_durably
from legato.store._ids import OwnerState, new_owner_id, new_run_id, owner_state
from legato.store._journal import Embedder, Journal, JournalEntry, LocalEmbedder, SearchMode
from legato.store._leases import interrupted
from legato.store._query import QueryError, RunQuery, next_cursor, run_query
from legato.store._queue import (
    QueueSettings,
    QueuesSection,
    QueueStats,
    QueueWaiter,
    RateLimit,
    WorkerStats,
    claim_run,
    default_queue,
    queue_stats,
    requeue,
    worker_stats,
)
from legato.store._records import CancelRequest, EventRecord, RecoveryAction, RunRecord, StepRecord, StoredStatus
from legato.store._recovery import Recovery, load_source, recover_expired_runs
from legato.store._reflection import reflect_on_run
from legato.store._rerun import downstream_of, prepare_rerun
from legato.store._retention import (
    ErasureReport,
    PayloadMode,
    PayloadState,
    RetentionConfig,
    RetentionReport,
    RetentionRule,
    apply_retention,
    erase_subject,
    explain_payloads,
    subject_key,
)
from legato.store._run_writes import NewRun
from legato.store._runs import RunStore
from legato.store._schedules import (
    Fired,
    Scheduler,
    ScheduleSettings,
    SchedulesSection,
    ScheduleState,
    ScheduleView,
    list_schedules,
    set_paused,
)
from legato.store._search import RunFilter
from legato.store._waits import expire_waits, respond, waiting_requests
from legato.store._worker import Worker

__all__ = [
    "DEFAULT_DATABASE_URL",
    "LOCAL",
    "CallRow",
    "CancelRequest",
    "DurableRunner",
    "DurationStats",
    "Embedder",
    "ErasureReport",
    "EventRecord",
    "Fired",
    "Journal",
    "JournalEntry",
    "LocalEmbedder",
    "ModelStats",
    "NewRun",
    "OwnerState",
    "PayloadMode",
    "PayloadState",
    "Principal",
    "QueryError",
    "QueueSettings",
    "QueueStats",
    "QueueWaiter",
    "QueuesSection",
    "RateLimit",
    "Recovery",
    "RecoveryAction",
    "RetentionConfig",
    "RetentionReport",
    "RetentionRule",
    "RunFilter",
    "RunQuery",
    "RunRecord",
    "RunStore",
    "ScheduleSettings",
    "ScheduleState",
    "ScheduleView",
    "Scheduler",
    "SchedulesSection",
    "SearchMode",
    "SpendPoint",
    "StepRecord",
    "StoredStatus",
    "Worker",
    "WorkerStats",
    "apply_retention",
    "call_values",
    "claim_run",
    "configured_url",
    "default_queue",
    "downstream_of",
    "erase_subject",
    "expire_waits",
    "explain_payloads",
    "gateway_calls",
    "interrupted",
    "list_schedules",
    "load_source",
    "model_stats",
    "new_owner_id",
    "new_run_id",
    "next_cursor",
    "owner_state",
    "pipeline_version",
    "prepare_rerun",
    "queue_stats",
    "record_calls",
    "recover_expired_runs",
    "reflect_on_run",
    "requeue",
    "resolve_url",
    "respond",
    "result_from_record",
    "run_calls",
    "run_durably",
    "run_durations",
    "run_query",
    "set_paused",
    "spend_by_day",
    "store_key",
    "subject_key",
    "visible_run",
    "waiting_requests",
    "worker_stats",
]

"""What the store returns: immutable records of runs, step attempts and events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "ACTIVE",
    "CANCELLABLE",
    "NEEDS_FORCE",
    "TERMINAL",
    "CancelRequest",
    "EventRecord",
    "MapItemRecord",
    "RecoveryAction",
    "RunRecord",
    "StepRecord",
    "StoredStatus",
]


class StoredStatus(StrEnum):
    """A run's status in the store: the engine's ``RunStatus`` values plus ``dead``
    (dead-lettered after its worker died too often; only ``resume --force`` revives it)."""

    PENDING = "pending"
    QUEUED = "queued"  # enqueued on a queue, waiting for a `legato worker` to claim it
    RUNNING = "running"
    WAITING = "waiting"  # paused on a wait step: no worker, no lease, resumed by its answer
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"


class RecoveryAction(StrEnum):
    """What :func:`~legato.store.recover_expired_runs` did with one orphaned run."""

    RESUMED = "resumed"  # taken over and executed (the Recovery's result says how it ended)
    DEAD_LETTERED = "dead_lettered"  # its worker died too often while executing it
    UNKNOWN_PIPELINE = "unknown_pipeline"  # this process does not serve its pipeline
    TAKEN = "taken"  # another worker took it (or it finished) first
    ERROR = "error"  # could not be resumed; the Recovery's detail says why


ACTIVE: Final = frozenset({StoredStatus.PENDING, StoredStatus.RUNNING})
# Not finished: a cancel stops it (a queued run cancelled never starts, a waiting one takes no answer).
CANCELLABLE: Final = frozenset({*ACTIVE, StoredStatus.QUEUED, StoredStatus.WAITING})
TERMINAL: Final = frozenset({StoredStatus.SUCCEEDED, StoredStatus.FAILED, StoredStatus.CANCELLED, StoredStatus.DEAD})
# Stopped on purpose (an operator cancelled it, recovery gave up on it): resumed only with force.
NEEDS_FORCE: Final = frozenset({StoredStatus.CANCELLED, StoredStatus.DEAD})


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A recorded request to cancel a run: who asked (free text) and when (epoch seconds)."""

    by: str
    at: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return f"cancelled by {self.by or 'an unnamed caller'} at {when}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as stored. ``lease_owner``/``lease_expires_at`` say who executes it."""

    id: str
    pipeline: str
    version_hash: str
    inputs: dict[str, Any]
    status: StoredStatus
    tenant: str = ""
    idempotency_key: str | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    failed_step: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    recoveries: int = 0
    cancel_requested: bool = False
    dead_reason: str | None = None
    cost: float | None = None
    estimated_cost: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    request_hash: str = ""  # identity of (pipeline, inputs) for idempotency
    source: str | None = None  # where the pipeline came from (a YAML path), for resuming from the CLI
    cancelled_by: str | None = None  # who asked to cancel it (revision r0005_run_cancel)
    cancel_requested_at: float | None = None
    queue: str | None = None  # the queue it was enqueued on (revision r0009_run_queues)
    priority: int = 0  # higher is claimed first within its queue
    rerun_of: str | None = None  # the run this one re-ran from a step (revision r0010_rerun_of)
    rerun_from: str | None = None  # that step
    tags: tuple[str, ...] = ()  # labels given when it was started (revision r0012_run_search)
    subject: str | None = None  # the digest of its data subject (revision r0017_run_retention)
    payloads: str | None = None  # None: stored; "metadata", "expired", "erased": not (see _retention)

    @property
    def cancel_request(self) -> CancelRequest | None:
        if not self.cancel_requested:
            return None
        return CancelRequest(self.cancelled_by or "", self.cancel_requested_at or self.updated_at)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def lease_live(self, now: float) -> bool:
        return self.lease_owner is not None and self.lease_expires_at is not None and self.lease_expires_at > now


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One attempt of one step. Only finished attempts are stored: a step in flight
    when the process died left no row and runs again on resume."""

    run_id: str
    step: str
    status: str  # succeeded | skipped | failed | cancelled
    attempt: int = 1
    output: Any = None
    error_type: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MapItemRecord:
    """One finished item of a map step whose other items may still be running: a
    resume reuses it. Kept only until the whole step is checkpointed."""

    run_id: str
    step: str
    index: int
    output: Any = None
    attempt: int = 1
    finished_at: float = 0.0
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One run event (the scheduler's events, plus the store's own: lease takeovers,
    cancellation requests, dead-lettering). ``id`` orders events within a run."""

    run_id: str
    type: str
    at: float
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

"""What the store returns: immutable records of runs, step attempts and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["ACTIVE", "TERMINAL", "EventRecord", "RunRecord", "StepRecord"]

# Run statuses in the store: the engine's RunStatus values plus "dead" (dead-lettered
# after too many failed recoveries; only an explicit ``resume --force`` revives it).
ACTIVE: Final = frozenset({"pending", "running"})
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "dead"})


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as stored. ``lease_owner``/``lease_expires_at`` say who executes it."""

    id: str
    pipeline: str
    version_hash: str
    inputs: dict[str, Any]
    status: str
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
class EventRecord:
    """One run event (the scheduler's events, plus the store's own: lease takeovers,
    cancellation requests, dead-lettering). ``id`` orders events within a run."""

    run_id: str
    type: str
    at: float
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

"""Typed run events and the statuses they report.

The scheduler publishes these on an :class:`EventBus`; the store, metrics, traces,
the dashboard and the CLI progress display are all subscribers. Events are frozen
dataclasses with ``slots`` so that publishing one costs a few hundred nanoseconds.

Times are wall-clock epoch seconds (``at``) plus monotonic durations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # paused for a person's answer (a wait step)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    at: float


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    pipeline: str
    inputs: dict[str, Any]
    resumed_steps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    step: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class StepFinished(Event):
    step: str
    output: Any
    duration_s: float
    attempt: int = 1
    started_at: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # model used, tokens, cost, ...


@dataclass(frozen=True, slots=True)
class MapItemFinished(Event):
    """One item of a map step returned ``output``. Published (and awaited) before the
    worker that ran it takes its next item, so a durable subscriber that commits it
    here bounds what a crash can lose to the items in flight."""

    step: str
    index: int
    output: Any
    attempt: int = 1
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StepProgress(Event):
    """A running step recorded entry ``seq`` of its journal (an agent's model turn or
    tool call). Published and awaited before the step goes on, so a durable
    subscriber that commits it here lets a later attempt skip that part of the work
    (see :func:`legato.engine.step_journal`). ``index`` is the map item, if any."""

    step: str
    index: int | None
    seq: int
    entry: Any


@dataclass(frozen=True, slots=True)
class ModelCalled(Event):
    """A step (or map item) finished one model call; ``call`` is plain data (model,
    deployment, status, timings, tokens, cost, trace id, prompt and answer): see
    :class:`legato.observe.ModelCall`. Published and awaited like :class:`StepProgress`,
    so the run store keeps the call even when the step fails afterwards."""

    step: str
    index: int | None
    attempt: int
    call: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    step: str
    error_type: str
    message: str
    duration_s: float
    attempt: int = 1
    started_at: float = 0.0
    cancelled: bool = False
    error: BaseException | None = field(default=None, compare=False, repr=False)
    index: int | None = None  # a map step: the item whose failure failed it


@dataclass(frozen=True, slots=True)
class StepWaiting(Event):
    """A wait step asks for a person's answer (``request``: kind, question, schema,
    timeout, default); its dependents do not start until the answer arrives."""

    step: str
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRetried(Event):
    step: str
    attempt: int  # the attempt that failed
    delay_s: float
    error_type: str
    message: str
    index: int | None = None  # the map item retried, if the step maps over a list


@dataclass(frozen=True, slots=True)
class StepSkipped(Event):
    step: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    status: RunStatus
    outputs: dict[str, Any]
    duration_s: float
    error: str | None = None
    failed_step: str | None = None

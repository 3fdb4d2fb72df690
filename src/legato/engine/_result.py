"""What a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from legato.engine._events import RunStatus, StepStatus
from legato.errors import RunError

__all__ = ["MapItemError", "RunResult", "StepTiming"]


@dataclass(frozen=True, slots=True)
class MapItemError:
    """In the output of a map step with ``map_errors="collect"``: item ``index``
    failed (after its retries) with an exception of type ``error_type``."""

    index: int
    error_type: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error_type": self.error_type, "message": self.message}


@dataclass(slots=True)
class StepTiming:
    """When a step ran, as monotonic offsets in seconds from the start of the run.

    ``attempts`` counts attempts of the step (for a map step: the most any item needed).
    A step that never started has ``started`` None.
    """

    status: StepStatus = StepStatus.PENDING
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    failed_item: int | None = None  # a map step: the item whose failure failed it

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "started": self.started,
            "finished": self.finished,
            "duration": self.duration,
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class RunResult:
    """The outcome of one run.

    Attributes:
        status: ``SUCCEEDED``, ``FAILED`` or ``CANCELLED``.
        outputs: step name -> output, for every step that succeeded (including
            steps taken from ``completed=`` on a resumed run).
        result: what the pipeline returns: its declared ``outputs:`` (YAML, or
            ``Pipeline(outputs=...)``) rendered after a successful run; without a
            declaration, the same mapping as ``outputs``. Empty when the run failed.
        run_id: the run's id.
        timings: step name -> :class:`StepTiming`.
        step_status: step name -> :class:`StepStatus` (pending = never started).
        duration_s: wall time of the run.
        error: ``"ExceptionType: message"`` of what ended the run, or None.
        exception: the :class:`~legato.errors.RunError` :meth:`raise_for_status` raises.
        failed_step: the first step that failed, or None.
        skipped: step name -> why it was skipped.
        errors: step name -> ``"ExceptionType: message"`` for each step whose
            failure the run tolerated (``continue_on_error``).
        failures: step name -> ``"ExceptionType: message"`` for every step that
            failed the run (all of them under ``failure_policy: continue``); a map
            step's reads ``"item N: ExceptionType: message"``.
        waiting: step name -> the request (kind, question, schema, timeout,
            default) of each wait step the run is paused on (status ``WAITING``).
        cost: USD spent by model calls in this run (priced calls only).
        usage: the run ledger's summary (calls, tokens, cost, by_model...).
    """

    status: RunStatus
    run_id: str
    pipeline: str
    outputs: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, StepTiming] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    exception: RunError | None = field(default=None, repr=False)
    failed_step: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def step_status(self) -> dict[str, StepStatus]:
        return {name: t.status for name, t in self.timings.items()}

    def raise_for_status(self) -> RunResult:
        """Return self when the run succeeded; raise ``StepError``,
        ``RunCancelled`` or ``DeadlineExceeded`` otherwise."""
        if self.exception is not None:
            raise self.exception
        if self.status is not RunStatus.SUCCEEDED:
            raise RunError(self.error or f"run {self.run_id} {self.status}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (outputs are included as they are)."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": str(self.status),
            "outputs": self.result,
            "duration_s": self.duration_s,
            "error": self.error,
            "failed_step": self.failed_step,
            "step_errors": dict(self.errors),
            "failures": dict(self.failures),
            "waiting": dict(self.waiting),
            "cost": self.cost,
            "timings": {name: t.as_dict() for name, t in self.timings.items()},
        }

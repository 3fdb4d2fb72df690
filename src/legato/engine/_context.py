"""What a running step can know about itself, the ``SKIPPED`` marker and run control."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Final

import anyio

from legato.ledger import Ledger, _LazyChild
from legato.ledger import _current as _ledger_var

__all__ = ["SKIPPED", "RunControl", "StepContext", "current_step"]


class _Skipped:
    """Marks a step recorded as skipped (in ``completed=`` for resumed runs)."""

    _instance: _Skipped | None = None

    def __new__(cls) -> _Skipped:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SKIPPED"

    def __reduce__(self) -> str:
        return "SKIPPED"

    def __bool__(self) -> bool:
        return False


SKIPPED: Final = _Skipped()


@dataclass(frozen=True, slots=True)
class StepContext:
    """The step attempt the current code runs in (see :func:`current_step`).
    ``idempotency_key`` is stable across retries and resumes of the same run, so a
    step may pass it to an external system to make its side effects happen once:
    ``"{run_id}/{step}"``, plus ``"/{index}"`` for a map item.
    """

    run_id: str
    pipeline: str
    step: str
    attempt: int = 1
    index: int | None = None  # position of the item, for map steps
    iteration: int | None = None  # 1-based loop iteration, for loop steps

    @property
    def idempotency_key(self) -> str:
        key = f"{self.run_id}/{self.step}"
        return key if self.index is None else f"{key}/{self.index}"


# The scheduler sets a plain tuple of StepContext's fields (building the frozen
# dataclass for every step and map item would cost more than the rest of the step's
# bookkeeping); current_step() builds the StepContext when someone asks.
StepFields = tuple[str, str, str, int, "int | None", "int | None"]

_current: contextvars.ContextVar[StepContext | StepFields | None] = contextvars.ContextVar("legato_step", default=None)


def current_step() -> StepContext | None:
    """The :class:`StepContext` of the step attempt running this code, or None
    outside a pipeline step. Worker threads started by the engine see it too."""
    ctx = _current.get()
    if isinstance(ctx, tuple):
        return StepContext(*ctx)
    return ctx


def _set_step(ctx: StepContext | StepFields) -> contextvars.Token[StepContext | StepFields | None]:
    return _current.set(ctx)


def _reset_step(token: contextvars.Token[StepContext | StepFields | None]) -> None:
    _current.reset(token)


class StepScope:
    """``with StepScope(fields, ledger):`` makes ``fields`` the current step and
    ``ledger`` the current ledger (what :func:`current_step` and
    :func:`~legato.ledger.current_ledger` return, in worker threads too) and resets
    both on exit: the one way the engine enters a step attempt. ``fields=None`` sets
    only the ledger (a map step, whose item workers each set their own step)."""

    __slots__ = ("_fields", "_ledger", "_ledger_token", "_step_token")

    def __init__(self, fields: StepFields | None, ledger: Ledger | _LazyChild) -> None:
        self._fields = fields
        self._ledger = ledger

    def __enter__(self) -> None:
        fields = self._fields
        self._step_token = None if fields is None else _current.set(fields)
        self._ledger_token = _ledger_var.set(self._ledger)

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        _ledger_var.reset(self._ledger_token)
        if self._step_token is not None:
            _current.reset(self._step_token)


class RunControl:
    """Cancel a run from outside: pass ``control=RunControl()`` to
    :meth:`Pipeline.run`, then call :meth:`cancel` from any task of the same event
    loop (from another thread use ``anyio.from_thread.run_sync(control.cancel)``).

    Running steps are cancelled and recorded as cancelled; the result's status is
    ``CANCELLED``. Cancelling before the run starts cancels it at once.
    """

    __slots__ = ("_scope", "reason")

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled") -> None:
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def _attach(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        if self.reason is not None:
            scope.cancel()

    def _detach(self) -> None:
        self._scope = None

    def __repr__(self) -> str:
        return f"RunControl(cancelled={self.cancelled})"

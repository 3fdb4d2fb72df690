"""Step journals: a step records parts of its work as it goes, so that a later
attempt of the same run (a retry, or a resume after a crash) does not redo them.

A step asks for its journal with :func:`step_journal` and calls ``append(entry)``
after each piece of work that must not happen twice (an ``agent:`` step appends
each model turn and each tool call). ``append`` publishes :class:`StepProgress`
and returns once every subscriber has taken it: with the run store subscribed, the
entry is committed. ``load()`` returns the entries recorded by earlier attempts of
the same step (and map item) of this run: those of this process, and those a
resumed run was given (``Pipeline.run(journals=...)``, which the run store fills in).

Entries must be values the run store can encode (plain JSON is best). Outside a run,
and in steps an executor runs in another process, there is no journal (``None``).

Model calls a step makes are reported through :func:`model_call_sink`. In another
process (a Ray worker) there is no run to report to, so the executor wraps the step in
:func:`captured_model_calls` there and hands the calls to the run's sink in the driver
with the step's result.
"""

from __future__ import annotations

import contextvars
import copy
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from legato.engine._context import _current as _step_var
from legato.engine._events import Event, ModelCalled, StepProgress

__all__ = ["StepJournal", "captured_model_calls", "journal_key", "model_call_sink", "step_journal"]


def journal_key(step: str, index: int | None = None) -> str:
    """The key of a step's journal (``step``, or ``step[index]`` for a map item)."""
    return step if index is None else f"{step}[{index}]"


class RunJournals:
    """The journals of one run: entries handed in on resume plus those appended since."""

    __slots__ = ("emit", "entries", "inherited", "run_id")

    def __init__(
        self, run_id: str, emit: Callable[[Event], Awaitable[Any]] | None, loaded: Mapping[str, Sequence[Any]]
    ) -> None:
        self.run_id = run_id
        self.emit = emit
        self.entries: dict[str, list[Any]] = {key: list(values) for key, values in loaded.items()}
        self.inherited = {key: len(values) for key, values in self.entries.items()}


class StepJournal:
    """The journal of one step (or map item) of a run; see the module docstring."""

    __slots__ = ("_run", "index", "key", "step")

    def __init__(self, run: RunJournals, step: str, index: int | None) -> None:
        self._run = run
        self.step = step
        self.index = index
        self.key = journal_key(step, index)

    @property
    def inherited(self) -> int:
        """How many of the entries were recorded before this process took the run over
        (the rest were appended by earlier attempts in this process)."""
        return self._run.inherited.get(self.key, 0)

    async def load(self) -> list[Any]:
        """The entries recorded so far, oldest first (copies: changing them changes nothing)."""
        return copy.deepcopy(self._run.entries.get(self.key, []))

    async def append(self, entry: Any) -> None:
        """Record ``entry``; returns once the run's subscribers (the store) have it."""
        entries = self._run.entries.setdefault(self.key, [])
        seq = len(entries)
        entries.append(copy.deepcopy(entry))
        if self._run.emit is not None:
            await self._run.emit(StepProgress(self._run.run_id, time.time(), self.step, self.index, seq, entry))

    def __repr__(self) -> str:
        return f"StepJournal({self.key!r}, entries={len(self._run.entries.get(self.key, ()))})"


_journals: contextvars.ContextVar[RunJournals | None] = contextvars.ContextVar("legato_journals", default=None)


def step_journal() -> StepJournal | None:
    """The journal of the step attempt running this code, or None outside a run."""
    run = _journals.get()
    ctx = _step_var.get()
    if run is None or ctx is None:
        return None
    if isinstance(ctx, tuple):
        return StepJournal(run, ctx[2], ctx[4])
    return StepJournal(run, ctx.step, ctx.index)


_captured: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "legato_captured_calls", default=None
)


@contextmanager
def captured_model_calls() -> Iterator[list[dict[str, Any]]]:
    """Keep the model calls reported in this context in the list it yields, instead of
    publishing them (for a step running away from its run; see the module docstring)."""
    calls: list[dict[str, Any]] = []
    token = _captured.set(calls)
    try:
        yield calls
    finally:
        _captured.reset(token)


def model_call_sink() -> Callable[[Mapping[str, Any]], Awaitable[None]] | None:
    """Where the step attempt running this code reports its model calls (each published
    as :class:`ModelCalled` and awaited), or None when nobody listens (outside a run, or a
    run without subscribers)."""
    captured = _captured.get()
    if captured is not None:

        async def keep(call: Mapping[str, Any]) -> None:
            captured.append(dict(call))

        return keep
    run = _journals.get()
    ctx = _step_var.get()
    if run is None or ctx is None or run.emit is None:
        return None
    emit = run.emit
    if isinstance(ctx, tuple):
        step, attempt, index = ctx[2], ctx[3], ctx[4]
    else:
        step, attempt, index = ctx.step, ctx.attempt, ctx.index

    async def report(call: Mapping[str, Any]) -> None:
        await emit(ModelCalled(run.run_id, time.time(), step, index, attempt, dict(call)))

    return report

"""Who spent what: the usage ledger that ties model calls to steps and runs.

The engine opens a :class:`Ledger` for each run and a child ledger for each step
attempt and makes it current (a ``contextvars`` variable, so it follows the task
tree and worker threads started with ``anyio.to_thread``). Provider adapters
:meth:`Ledger.record` every finished call, including streams, on the current
ledger; a child passes what it records up to its parents. The engine then reads
the step's totals into ``StepFinished.meta`` and the run's into ``RunResult.cost``.

It is a leaf module (no legato imports) so that the engine and the model layer can
both use it without depending on each other.

A run opens one ledger per step, so a ledger is small: slotted, and guarded by one
(reentrant) lock shared by every ledger rather than a lock each. Calls are recorded
a few times per step at most, so the shared lock is rarely contended, and holding it
for the whole walk up the parents makes a record atomic across the tree.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallRecord", "Ledger", "current_ledger", "use_ledger"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    model: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: float | None = None  # None: price unknown
    cached: bool = False  # answered from legato's response cache (no upstream spend)
    saved: float = 0.0  # what a cache hit or cheaper tier saved, in USD


_LOCK = threading.RLock()
_NOTHING: dict[str, Any] = {
    "calls": 0,
    "cache_hits": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_input_tokens": 0,
    "cost": 0.0,
    "saved": 0.0,
    "unpriced_calls": 0,
}


@dataclass(slots=True)
class Ledger:
    """Running totals of model calls. Thread-safe; children report to parents."""

    name: str = ""
    parent: Ledger | None = None
    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: float = 0.0
    saved: float = 0.0
    unpriced_calls: int = 0
    by_model: dict[str, float] = field(default_factory=dict)

    def child(self, name: str) -> Ledger:
        return Ledger(name=name, parent=self)

    def record(self, call: CallRecord) -> None:
        with _LOCK:
            node: Ledger | None = self
            while node is not None:
                node._add(call)
                node = node.parent

    def record_saving(self, amount: float) -> None:
        """Credit ``amount`` USD saved without a call of its own (a cheaper cascade tier answered)."""
        with _LOCK:
            node: Ledger | None = self
            while node is not None:
                node.saved += amount
                node = node.parent

    def _add(self, call: CallRecord) -> None:
        # called with _LOCK held
        self.calls += 1
        self.cache_hits += call.cached
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.cached_input_tokens += call.cached_input_tokens
        self.saved += call.saved
        if call.cost is None:
            self.unpriced_calls += 1
        else:
            self.cost += call.cost
            self.by_model[call.model] = self.by_model.get(call.model, 0.0) + call.cost

    def summary(self) -> dict[str, Any]:
        if not self.calls and not self.saved:  # nothing recorded (most runs and steps)
            return {**_NOTHING, "by_model": {}}
        with _LOCK:
            return {
                "calls": self.calls,
                "cache_hits": self.cache_hits,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cached_input_tokens": self.cached_input_tokens,
                "cost": self.cost,
                "saved": self.saved,
                "unpriced_calls": self.unpriced_calls,
                "by_model": dict(self.by_model),
            }


class _LazyChild:
    """A child ledger created on first use: most steps make no model call, so the
    engine makes one of these current for each step instead of a :class:`Ledger`."""

    __slots__ = ("ledger", "name", "parent")

    def __init__(self, parent: Ledger, name: str) -> None:
        self.parent = parent
        self.name = name
        self.ledger: Ledger | None = None

    def get(self) -> Ledger:
        ledger = self.ledger
        if ledger is None:
            with _LOCK:
                if self.ledger is None:
                    self.ledger = self.parent.child(self.name)
                ledger = self.ledger
        return ledger


_current: contextvars.ContextVar[Ledger | _LazyChild | None] = contextvars.ContextVar("legato_ledger", default=None)


def current_ledger() -> Ledger | None:
    """The ledger of the step (or run) this code runs in, or None outside a run."""
    ledger = _current.get()
    if isinstance(ledger, _LazyChild):
        return ledger.get()
    return ledger


@contextmanager
def use_ledger(ledger: Ledger | None) -> Iterator[Ledger | None]:
    token = _current.set(ledger)
    try:
        yield ledger
    finally:
        _current.reset(token)

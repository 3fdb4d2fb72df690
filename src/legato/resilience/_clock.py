"""Injected time: every resilience wrapper reads the clock and sleeps through one.

:class:`SystemClock` is the real thing (``time.monotonic`` and ``anyio.sleep``).
:class:`VirtualClock` lets tests and benchmarks run hours of backoff, open
breakers and slow tails in milliseconds. It has two modes:

* sequential (the default): ``sleep(d)`` moves time forward by ``d`` at once and
  fires any timeout that falls inside the jump. Right for code that sleeps from
  one task at a time (retries, rate-limit waits, breaker wait durations).
* auto-jump (``async with clock.autojump():``): sleepers park until a driver task
  advances time to the earliest deadline once every task is blocked on the clock
  (the loop made no progress for a few turns). Right for concurrent code such as
  hedged requests, where two attempts sleep at the same time.

Timeouts go through :meth:`Clock.move_on_after`, which returns an
``anyio.CancelScope``; the virtual clock cancels it when virtual time passes the
deadline, so ``Timeout`` and ``Bulkhead`` need no extra task per call.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds, sleeping, and a timeout scope on the same time line."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope cancelled ``seconds`` from now; check ``cancelled_caught``."""
        ...


class SystemClock:
    """Real monotonic time."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        return anyio.move_on_after(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """Time that moves only when someone sleeps (see the module docstring).

    ``sleeps`` records every requested sleep, so tests can assert on backoff.
    """

    def __init__(self, start: float = 0.0, *, settle_turns: int = 20) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, int, anyio.Event | anyio.CancelScope]] = []
        self._seq = itertools.count()
        self._driving = False
        self._settle_turns = settle_turns
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and fire what falls due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._advance_to(self._now + seconds)

    def _advance_to(self, target: float) -> None:
        while self._timers and self._timers[0][0] <= target:
            deadline, _, action = heapq.heappop(self._timers)
            self._now = max(self._now, deadline)
            if isinstance(action, anyio.CancelScope):
                action.cancel()
            else:
                action.set()
        self._now = max(self._now, target)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self._driving:
            event = anyio.Event()
            heapq.heappush(self._timers, (self._now + seconds, next(self._seq), event))
            await event.wait()
            return
        target = self._now + seconds
        # Stop at each timeout inside the jump so a cancelled sleeper sees the
        # clock at its deadline, not at the end of the sleep it never finished.
        while self._timers and self._timers[0][0] <= target:
            self._advance_to(self._timers[0][0])
            await anyio.lowlevel.checkpoint()
        self._advance_to(target)
        await anyio.lowlevel.checkpoint()

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        return self._timeout_scope(seconds)

    @contextmanager
    def _timeout_scope(self, seconds: float) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope()
        entry = (self._now + max(0.0, seconds), next(self._seq), scope)
        heapq.heappush(self._timers, entry)
        try:
            with scope:
                yield scope
        finally:
            # A scope whose body finished early must not pull time forward later.
            if entry in self._timers:
                self._timers.remove(entry)
                heapq.heapify(self._timers)

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[VirtualClock]:
        """Drive time concurrently: jump to the next deadline whenever all tasks wait."""
        if self._driving:
            raise RuntimeError("this VirtualClock is already auto-jumping")
        self._driving = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drive)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._driving = False

    async def _drive(self) -> None:
        while True:
            for _ in range(self._settle_turns):
                await anyio.lowlevel.checkpoint()
            if self._timers:
                self._advance_to(self._timers[0][0])
            else:
                await anyio.sleep(0.0005)  # nothing to wake: let real I/O progress

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:g})"

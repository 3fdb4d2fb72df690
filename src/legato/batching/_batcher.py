"""Micro-batching: many concurrent single-item calls become one batched call.

A :class:`Batcher` wraps an async function that processes a *list* of items (an
embedding model, a classifier, an NER pipeline) and offers a single-item call.
Concurrent callers are collected for up to ``max_wait_ms`` (counted from the oldest
waiting item) or until ``max_batch`` items wait, whichever comes first; then one
``fn(items)`` call answers all of them.

Who runs ``fn`` (structured concurrency, no orphan tasks):

* **Owned worker** — ``async with Batcher(fn) as b:`` opens a task group that owns one
  worker task. Callers only wait for their slot; a caller's cancellation never
  interrupts a batch in flight. Leaving the block drains the queue, then stops the
  worker (on an exception the worker is cancelled instead).
* **Lazy, caller-driven** — without ``async with``, the first caller to find no
  driver becomes the *driver*: it collects and runs batches in its own task until its
  own item is answered, then hands the role to the next waiting caller. If the driver
  is cancelled mid-batch, the batch's other items go back to the front of the queue and
  another waiter takes over, so one caller's cancellation never fails the others (the
  batch is re-run; ``fn`` must tolerate being called again with the same items).

There is no well-kept library for this in the async Python ecosystem that supports
anyio task groups and per-item errors, hence this module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

_QUEUED, _IN_FLIGHT, _DONE = 0, 1, 2


@dataclass(eq=False, slots=True)
class _Slot(Generic[T, R]):
    item: T
    enqueued_at: float
    wake: anyio.Event = field(default_factory=anyio.Event)
    state: int = _QUEUED
    abandoned: bool = False
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.state = result, error, _DONE
        self.wake.set()


class Batcher(Generic[T, R]):
    """Collect concurrent single-item calls into one ``fn(list_of_items)`` call.

    Args:
        fn: async function taking a list of items and returning one result per item,
            in order. An element of the returned list that is an exception instance is
            raised to that item's caller only (per-item errors). If ``fn`` raises, every
            caller of that batch gets the exception; if it returns a list of the wrong
            length, every caller gets a ``RuntimeError`` saying so.
        max_batch: most items per ``fn`` call.
        max_wait_ms: longest time the oldest waiting item waits for the batch to fill.
        max_queue: most items waiting to be batched; further callers wait for room
            (backpressure). ``None``: unbounded.
        name: shown in errors and ``repr``.

    ``await batcher(item)`` (or ``await batcher.submit(item)``) returns the item's
    result. A cancelled caller's item is dropped if not yet sent, or its result
    discarded; other callers are not affected. After :meth:`aclose` new calls raise
    ``RuntimeError``; calls already waiting still complete.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int | None = None,
        name: str = "",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 or None, got {max_queue}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.name = name or getattr(fn, "__qualname__", "batcher")
        self._queue: deque[_Slot[T, R]] = deque()
        self._driving = False  # a worker or a caller is collecting and running batches
        self._closed = False
        self._tg: anyio.abc.TaskGroup | None = None
        # Created on first use: anyio primitives need a running event loop.
        self._arrival: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._worker_done: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self.batches = 0  # number of fn calls made (for metrics and tests)

    def __repr__(self) -> str:
        return f"Batcher({self.name!r}, max_batch={self.max_batch}, max_wait_ms={self.max_wait * 1000:g})"

    # -- public API -----------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Items waiting to be sent in a batch (not counting a batch in flight)."""
        return len(self._queue)

    async def __call__(self, item: T) -> R:
        return await self.submit(item)

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (or its error)."""
        if self._closed:
            raise RuntimeError(f"batcher {self.name!r} is closed")
        await self._wait_for_room()
        slot: _Slot[T, R] = _Slot(item, anyio.current_time())
        self._queue.append(slot)
        self._signal_arrival()
        try:
            while slot.state != _DONE:
                if not self._driving:
                    await self._drive_until(slot)
                else:
                    wake = slot.wake
                    await wake.wait()
                    if slot.state != _DONE and wake.is_set():
                        slot.wake = anyio.Event()
        except BaseException:
            self._abandon(slot)
            raise
        if slot.error is not None:
            raise slot.error
        result: R = slot.result
        return result

    async def __aenter__(self) -> Batcher[T, R]:
        if self._tg is not None:
            raise RuntimeError(f"batcher {self.name!r} is already running")
        if self._closed:
            raise RuntimeError(f"batcher {self.name!r} is closed")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._worker_done = anyio.Event()
        tg.start_soon(self._work, name=f"batcher:{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            if exc_type is None:
                await self.aclose()
            else:
                self._closed = True
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            # The group only ever holds the worker: the block's own exception is re-raised
            # as is instead of being wrapped in an exception group.
            await tg.__aexit__(None, None, None)
        return None

    async def aclose(self) -> None:
        """Refuse new items; with an owned worker, wait until the queue is drained."""
        self._closed = True
        self._signal_arrival()
        if self._room is not None:
            self._room.set()
        if self._tg is not None and self._worker_done is not None:
            await self._worker_done.wait()

    # -- driving --------------------------------------------------------------------

    async def _work(self) -> None:
        """The owned worker: waits for any lazy driver to finish, then drives until closed."""
        assert self._worker_done is not None
        try:
            while self._driving:  # a caller was driving before the block opened
                self._idle = anyio.Event()
                await self._idle.wait()
            self._driving = True
            try:
                while True:
                    batch = await self._collect()
                    if not batch:
                        return  # closed and drained
                    await self._run(batch)
            finally:
                self._driving = False
                self._wake_waiters()
        finally:
            self._worker_done.set()

    async def _drive_until(self, mine: _Slot[T, R]) -> None:
        """Drive batches from the calling task until ``mine`` is answered."""
        self._driving = True
        try:
            while mine.state != _DONE:
                batch = await self._collect()
                if batch:
                    await self._run(batch)
        finally:
            self._driving = False
            self._wake_waiters()  # someone else takes over the queue
            if self._idle is not None:
                self._idle.set()

    async def _collect(self) -> list[_Slot[T, R]]:
        """Wait for a first item, then until the batch is full or the oldest item's wait is over."""
        while not self._queue:
            if self._closed:
                return []
            await self._next_arrival()
        deadline = self._queue[0].enqueued_at + self.max_wait
        while len(self._queue) < self.max_batch and not self._closed:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                await self._next_arrival()
        batch: list[_Slot[T, R]] = []
        while self._queue and len(batch) < self.max_batch:
            slot = self._queue.popleft()
            slot.state = _IN_FLIGHT
            batch.append(slot)
        if batch and self._room is not None:
            self._room.set()
        return batch

    async def _run(self, batch: list[_Slot[T, R]]) -> None:
        self.batches += 1
        try:
            results = await self.fn([s.item for s in batch])
        except anyio.get_cancelled_exc_class():
            # The driving task was cancelled: give the other items back, oldest first.
            for slot in reversed(batch):
                if not slot.abandoned and slot.state != _DONE:
                    slot.state = _QUEUED
                    slot.enqueued_at = float("-inf")  # this batch was due already: resend at once
                    self._queue.appendleft(slot)
            raise
        except BaseException as exc:
            for slot in batch:
                slot.finish(error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        if len(results) != len(batch):
            error = RuntimeError(
                f"batch function of {self.name!r} returned {len(results)} results for {len(batch)} items"
            )
            for slot in batch:
                slot.finish(error=error)
            return
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                slot.finish(error=result)
            else:
                slot.finish(result=result)

    # -- queue bookkeeping ----------------------------------------------------------

    def _abandon(self, slot: _Slot[T, R]) -> None:
        slot.abandoned = True
        if slot.state == _QUEUED:
            try:
                self._queue.remove(slot)
            except ValueError:
                pass
            else:
                if self._room is not None:
                    self._room.set()

    async def _wait_for_room(self) -> None:
        if self.max_queue is None:
            return
        while len(self._queue) >= self.max_queue:
            if self._room is None or self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
            if self._closed:
                raise RuntimeError(f"batcher {self.name!r} is closed")

    async def _next_arrival(self) -> None:
        if self._arrival is None or self._arrival.is_set():
            self._arrival = anyio.Event()
        await self._arrival.wait()

    def _signal_arrival(self) -> None:
        if self._arrival is not None:
            self._arrival.set()

    def _wake_waiters(self) -> None:
        for slot in self._queue:
            slot.wake.set()

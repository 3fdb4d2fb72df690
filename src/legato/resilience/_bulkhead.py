"""``Bulkhead``: at most N calls in flight, a bounded queue, a queue timeout.

A slow deployment then cannot absorb every task of the process: when the
``max_concurrent`` slots are busy, up to ``max_queue`` callers wait (FIFO) for at
most ``queue_timeout`` seconds; beyond that the call is refused with
:class:`Overloaded` (``provider="legato"``, ``code="bulkhead_full"``), which
routers treat as "try another deployment" and breakers do not count.

A stream holds its slot until it ends or the caller stops reading it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from legato.errors import Overloaded
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._breaker import LOCAL_PROVIDER
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import BulkheadRejected, EventHub, default_hub
from legato.resilience._streaming import close_stream

__all__ = ["Bulkhead", "BulkheadPolicy"]

T = TypeVar("T")


class BulkheadPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent: int = Field(default=16, ge=1)
    max_queue: int = Field(default=64, ge=0, description="callers allowed to wait for a slot")
    queue_timeout: float = Field(default=10.0, ge=0, description="seconds a caller may wait")


class Bulkhead(ModelWrapper):
    """A Model that admits at most ``max_concurrent`` calls to ``inner`` at a time."""

    def __init__(
        self,
        inner: Model,
        policy: BulkheadPolicy | None = None,
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.policy = policy or BulkheadPolicy()
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        self._slots = anyio.Semaphore(self.policy.max_concurrent, fast_acquire=True)
        self._waiting = 0

    @property
    def in_flight(self) -> int:
        return self.policy.max_concurrent - self._slots.value

    @property
    def waiting(self) -> int:
        return self._waiting

    def _reject(self, reason: str) -> Overloaded:
        if self.events.active:
            self.events.emit(BulkheadRejected(self.name, self.clock.now(), reason))
        return Overloaded(
            f"bulkhead of {self.name!r} is full ({reason.replace('_', ' ')})",
            provider=LOCAL_PROVIDER,
            model=self.name,
            code="bulkhead_full",
        )

    async def acquire(self) -> None:
        """Take a slot; raise ``Overloaded`` when the queue is full or the wait times out."""
        try:
            self._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        if self._waiting >= self.policy.max_queue:
            raise self._reject("queue_full")
        self._waiting += 1
        try:
            with self.clock.move_on_after(self.policy.queue_timeout) as scope:
                await self._slots.acquire()
        finally:
            self._waiting -= 1
        if scope.cancelled_caught:
            raise self._reject("queue_timeout")

    def release(self) -> None:
        self._slots.release()

    async def _admitted(self, fn: Callable[[], Awaitable[T]]) -> T:
        await self.acquire()
        try:
            return await fn()
        finally:
            self.release()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._admitted(lambda: self.inner.chat(request))

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._admitted(lambda: self.inner.embed(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.acquire()
        inner = self.inner.stream(request)
        try:
            async for chunk in inner:
                yield chunk
        finally:
            try:
                await close_stream(inner)
            finally:
                self.release()

"""``Hedge``: a second request when the first is slower than usual.

"The Tail at Scale" (Dean & Barroso, 2013): send the request; if it has not
answered after the observed p95 latency, send a copy; take whichever answers
first and cancel the other. Most of the tail disappears for a few percent of
extra load. The extra load is capped (``max_extra``, default 5% of requests), so a
uniformly slow upstream is not hit with twice the traffic.

Only idempotent calls are hedged: ``chat`` and ``embed`` (a completion has no side
effect upstream), unless the request says ``metadata={"hedge": False}``.
Streams pass through unhedged: once a token is shown the answer is committed.
Wrap a router to send the copy to another deployment: a least-in-flight or
latency strategy naturally picks a different one.

The delay is the ``quantile`` of recent latencies of first attempts. A first
attempt that lost the race is recorded at the time it was abandoned (a lower
bound of its real latency), so the tail stays visible to the estimate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import EventHub, HedgeSent, default_hub

__all__ = ["Hedge", "HedgePolicy"]

T = TypeVar("T")


class HedgePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quantile: float = Field(default=0.95, gt=0, lt=1, description="hedge after this latency quantile")
    max_extra: float = Field(default=0.05, ge=0, le=1, description="hedges as a fraction of requests")
    min_samples: int = Field(default=20, ge=1, description="latencies observed before hedging starts")
    window: int = Field(default=500, ge=10, description="recent latencies kept for the quantile")
    delay: float | None = Field(default=None, gt=0, description="a fixed delay instead of the quantile")
    min_delay: float = Field(default=0.0, ge=0, description="never hedge sooner than this")


class Hedge(ModelWrapper):
    """A Model that sends a delayed second copy of slow idempotent calls to ``inner``."""

    def __init__(
        self,
        inner: Model,
        policy: HedgePolicy | None = None,
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.policy = policy or HedgePolicy()
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        self._latencies: deque[float] = deque(maxlen=self.policy.window)
        self._cached_delay: float | None = None
        self._since_sort = 0
        self.requests = 0
        self.hedges = 0

    def current_delay(self) -> float | None:
        """The delay after which a copy is sent now, or None while still learning."""
        if self.policy.delay is not None:
            return max(self.policy.delay, self.policy.min_delay)
        if len(self._latencies) < self.policy.min_samples:
            return None
        if self._cached_delay is None or self._since_sort >= 16:
            ordered = sorted(self._latencies)
            rank = max(0, math.ceil(self.policy.quantile * len(ordered)) - 1)
            self._cached_delay = max(ordered[rank], self.policy.min_delay)
            self._since_sort = 0
        return self._cached_delay

    def _observe(self, latency: float) -> None:
        self._latencies.append(latency)
        self._since_sort += 1

    def _may_hedge(self) -> bool:
        return self.hedges + 1 <= self.policy.max_extra * self.requests

    async def _race(self, fn: Callable[[], Awaitable[T]], hedgeable: bool) -> T:
        self.requests += 1
        start = self.clock.now()
        delay = self.current_delay() if hedgeable else None
        if delay is None:
            result = await fn()
            self._observe(self.clock.now() - start)
            return result
        return await self._hedged(fn, start, delay)

    async def _hedged(self, fn: Callable[[], Awaitable[T]], start: float, delay: float) -> T:
        results: list[T] = []
        errors: list[Exception] = []
        state: dict[str, Any] = {"hedge_sent": False, "primary_done": False, "hedge_done": False}

        async with anyio.create_task_group() as tg:

            async def primary() -> None:
                try:
                    results.append(await fn())
                    self._observe(self.clock.now() - start)
                    tg.cancel_scope.cancel()
                except Exception as error:
                    errors.append(error)
                    state["primary_done"] = True
                    if not state["hedge_sent"] or state["hedge_done"]:
                        tg.cancel_scope.cancel()

            async def hedge() -> None:
                await self.clock.sleep(delay)
                if not self._may_hedge():
                    return
                state["hedge_sent"] = True
                self.hedges += 1
                if self.events.active:
                    self.events.emit(HedgeSent(self.name, self.clock.now(), self.clock.now() - start))
                try:
                    results.append(await fn())
                    # the first attempt lost: its latency is at least this long
                    self._observe(self.clock.now() - start)
                    tg.cancel_scope.cancel()
                except Exception as error:
                    errors.append(error)
                    state["hedge_done"] = True
                    if state["primary_done"]:
                        tg.cancel_scope.cancel()

            tg.start_soon(primary)
            tg.start_soon(hedge)

        if results:
            return results[0]
        raise errors[0]

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._race(lambda: self.inner.chat(request), request.metadata.get("hedge", True) is not False)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._race(lambda: self.inner.embed(request), request.metadata.get("hedge", True) is not False)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(request)

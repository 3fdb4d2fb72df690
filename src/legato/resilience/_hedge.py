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

The delay tracks the ``quantile`` of recent first-attempt latencies. Hedging
censors the data it learns from (a slow first attempt is cancelled, so we only
know it ran past the delay); the estimate therefore counts such attempts as
"above the delay" and nudges the delay up while more than ``1 - quantile`` of
first attempts are above it, and takes the observed quantile otherwise. The
delay settles at the edge of the tail instead of drifting into it or below it.
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
        self._delay: float | None = None
        self._since_update = 0
        self.requests = 0
        self.hedges = 0

    def current_delay(self) -> float | None:
        """The delay after which a copy is sent now, or None while still learning."""
        p = self.policy
        if p.delay is not None:
            return max(p.delay, p.min_delay)
        if self._delay is None:
            if len(self._latencies) < p.min_samples:
                return None
            ordered = sorted(self._latencies)
            delay = ordered[self._rank(len(ordered))]
            # From now on anything slower than the delay is only known as "above".
            self._latencies = deque((x if x <= delay else math.inf for x in self._latencies), maxlen=p.window)
            self._delay = delay
        elif self._since_update >= 16:
            self._update()
        return max(self._delay, p.min_delay)

    def _update(self) -> None:
        # Once hedging, a slow first attempt is cancelled, so its latency is only
        # known to exceed the delay: it is recorded as "above" (inf). When more than
        # 1 - quantile of first attempts are above, the quantile is above the delay
        # by an unknown amount: raise the delay a little. Otherwise the quantile is
        # one of the known latencies: take it.
        self._since_update = 0
        assert self._delay is not None
        n = len(self._latencies)
        above = sum(1 for x in self._latencies if x == math.inf)
        known = sorted(x for x in self._latencies if x != math.inf)
        if above > (1 - self.policy.quantile) * n:
            # Rise gently, and while known latencies remain, not far past the slowest
            # of them: a tail that is a separate mode (a 1 s stall behind 50 ms
            # answers) must not pull the delay into the gap between the two.
            ceiling = max(self._delay, 1.5 * known[-1]) if known else math.inf
            self._delay = min(self._delay * 1.05, ceiling)
            return
        self._delay = known[min(self._rank(n), len(known) - 1)]

    def _rank(self, n: int) -> int:
        """Index of the quantile in ``n`` sorted latencies: a lower confidence bound.

        When the tail is a separate mode about as large as ``1 - quantile`` (5% of
        calls stall), the sample quantile falls in the tail whenever the sample
        holds a few more slow calls than average; two standard errors lower, it
        stays at the top of the fast mode, where hedging helps.
        """
        q = self.policy.quantile
        return max(0, math.ceil(q * n - 2 * math.sqrt(n * q * (1 - q))) - 1)

    def _observe(self, latency: float) -> None:
        """Record a first attempt's latency (``inf``: it ran past the delay)."""
        if self._delay is not None and latency > self._delay:
            latency = math.inf
        self._latencies.append(latency)
        self._since_update += 1

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
                    self._observe(math.inf)  # the first attempt lost: it ran past the delay
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

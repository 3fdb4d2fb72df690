"""``Retry``: a Model that tries again, within a retry budget.

The *when* and *how long* come from :class:`legato.retry.RetryPolicy` (exponential
backoff with full jitter, ``retry_after`` honoured and capped, only ``retryable``
errors, max attempts, overall deadline), the same policy the engine uses for
steps. This wrapper adds the sleeping (through the injected clock) and a
:class:`RetryBudget`, so that a full outage does not multiply upstream load: when
every call fails, retries stop once they reach ~10% of requests.

Why a budget and not just max attempts: with 3 attempts, an outage triples the
traffic to an upstream that is already failing (the classic retry storm). The
budget is the Finagle/gRPC design; see docs/decisions for the exact rule.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from legato.errors import ModelError
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import EventHub, RetryBudgetExhausted, RetryScheduled, default_hub
from legato.resilience._streaming import close_stream, interrupted, open_stream
from legato.retry import RetryPolicy

__all__ = ["Retry", "RetryBudget"]

T = TypeVar("T")

# Budgets that already counted the request being served in this context, so that
# nested users of one budget (a Retry around a Router) count a request once.
_counted: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("legato_budget_counted", default=frozenset())


class RetryBudget:
    """Caps retries to a fraction of recent requests.

    Within a sliding ``window`` (seconds, in 1-second buckets), a retry is allowed
    while ``retries < max(min_retries, ratio * requests)``. The floor lets a
    low-traffic caller retry its occasional failure; under load the ratio rules,
    so a 100% failure over N calls costs at most ``N * (1 + ratio)`` attempts.
    A retry that succeeds is refunded (:meth:`refund`): only failing retries,
    the ones that amplify an outage, consume the budget.
    One budget may be shared by several wrappers (a router's failovers and a
    retry wrapper's retries draw on the same allowance).
    """

    def __init__(
        self,
        ratio: float = 0.1,
        *,
        min_retries: int = 10,
        window: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError("RetryBudget ratio must be between 0 and 1")
        if min_retries < 0:
            raise ValueError("RetryBudget min_retries must be >= 0")
        if window <= 0:
            raise ValueError("RetryBudget window must be > 0")
        self.ratio = ratio
        self.min_retries = min_retries
        self.window = window
        self.clock: Clock = clock or SystemClock()
        self._buckets: deque[list[int]] = deque()  # [second, requests, retries]
        self._requests = 0
        self._retries = 0
        self._lock = threading.Lock()

    def _bucket(self) -> list[int]:
        second = int(self.clock.now())
        horizon = second - int(self.window)
        while self._buckets and self._buckets[0][0] <= horizon:
            _, requests, retries = self._buckets.popleft()
            self._requests -= requests
            self._retries -= retries
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def record_request(self) -> None:
        """Count one new request (its first attempt)."""
        with self._lock:
            self._bucket()[1] += 1
            self._requests += 1

    def begin_request(self) -> contextvars.Token[frozenset[int]] | None:
        """Count a new request unless an outer user of this budget already did.

        Returns a token for :meth:`end_request` (None when nothing was counted).
        Call both from the same task, with no ``yield`` in between.
        """
        seen = _counted.get()
        if id(self) in seen:
            return None
        self.record_request()
        return _counted.set(seen | {id(self)})

    @staticmethod
    def end_request(token: contextvars.Token[frozenset[int]] | None) -> None:
        if token is not None:
            _counted.reset(token)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is exhausted."""
        with self._lock:
            bucket = self._bucket()
            if self._retries + 1 > max(self.min_retries, self.ratio * self._requests):
                return False
            bucket[2] += 1
            self._retries += 1
            return True

    def refund(self) -> None:
        """Give back one retry that succeeded.

        A retry that works is evidence the upstream has capacity, so only failed
        retries use up the budget: a full outage is held to ``ratio`` while a
        partial one (one flaky deployment among healthy ones) is not starved.
        """
        with self._lock:
            self._bucket()[2] -= 1
            self._retries -= 1

    @property
    def requests(self) -> int:
        return self._requests

    @property
    def retries(self) -> int:
        return self._retries

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, min_retries={self.min_retries}, window={self.window})"


class Retry(ModelWrapper):
    """Retry failed calls of ``inner`` according to ``policy``, within ``budget``.

    Raises the last error when the policy stops, the deadline would pass, or the
    budget is exhausted. Streams are retried only before their first chunk.
    ``budget=None`` disables the budget (not recommended in front of a network).
    """

    def __init__(
        self,
        inner: Model,
        policy: RetryPolicy | None = None,
        *,
        budget: RetryBudget | bool | None = True,
        clock: Clock | None = None,
        events: EventHub | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.policy = policy or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        if budget is True:
            budget = RetryBudget(clock=self.clock)
        self.budget: RetryBudget | None = budget or None
        self.events = events or default_hub

    async def _call(self, attempt_fn: Callable[[], Awaitable[T]]) -> T:
        start = self.clock.now()
        token = self.budget.begin_request() if self.budget is not None else None
        try:
            attempt = 1
            while True:
                try:
                    result = await attempt_fn()
                except ModelError as error:
                    await self._before_retry(attempt, error, start)
                    attempt += 1
                    continue
                if attempt > 1 and self.budget is not None:
                    self.budget.refund()
                return result
        finally:
            RetryBudget.end_request(token)

    async def _before_retry(self, attempt: int, error: ModelError, start: float) -> None:
        """Sleep before the next attempt, or re-raise ``error`` when we stop."""
        delay = self.policy.next_delay(attempt, error, self.clock.now() - start)
        if delay is None:
            raise error
        if self.budget is not None and not self.budget.try_spend():
            if self.events.active:
                self.events.emit(RetryBudgetExhausted(self.name, self.clock.now(), attempt, type(error).__name__))
            raise error
        if self.events.active:
            self.events.emit(RetryScheduled(self.name, self.clock.now(), attempt, delay, type(error).__name__))
        await self.clock.sleep(delay)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._call(lambda: self.inner.chat(request))

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._call(lambda: self.inner.embed(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        start = self.clock.now()
        token = self.budget.begin_request() if self.budget is not None else None
        try:
            attempt = 1
            while True:
                inner = self.inner.stream(request)
                try:
                    head = await open_stream(inner)
                except ModelError as error:
                    await close_stream(inner)
                    await self._before_retry(attempt, error, start)
                    attempt += 1
                    continue
                if attempt > 1 and self.budget is not None:
                    self.budget.refund()
                break
        finally:
            RetryBudget.end_request(token)  # before the first yield: same context
        try:
            for chunk in head:
                yield chunk
            try:
                async for chunk in inner:
                    yield chunk
            except ModelError as error:
                raise interrupted(error, self.name) from error
        finally:
            await close_stream(inner)

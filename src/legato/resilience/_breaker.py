"""``CircuitBreaker``: stop calling a deployment that keeps failing.

Semantics follow resilience4j's ``CircuitBreaker`` (the reference most operators
know): a count- or time-based sliding window, a failure-rate and a slow-call-rate
threshold (percent, "equal or greater" trips), a minimum number of calls before
any decision, a wait in OPEN, then HALF_OPEN with a limited number of probe
calls whose outcome decides between CLOSED and OPEN (optionally bounded by a
maximum wait in HALF_OPEN). OPEN moves to HALF_OPEN lazily, on the first call
after the wait.

Written here rather than taken from pybreaker or aiobreaker: those count
consecutive failures only (no sliding window, no failure-rate or slow-call
thresholds, no limited half-open probes) and read the wall clock directly, so
they can neither express these semantics nor run in virtual time.

Client errors (``BadRequest`` and its subclasses, ``AuthenticationFailed``,
``PermissionDenied``, ``QuotaExhausted``, ``ModelNotFound``) say nothing about the
deployment's health and are never recorded; neither are local rejections
(a bulkhead or rate limiter in front refused the call, ``provider="legato"``).
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    CircuitOpen,
    ModelError,
    ModelNotFound,
    PermissionDenied,
    QuotaExhausted,
)
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import BreakerStateChanged, EventHub, default_hub
from legato.resilience._streaming import close_stream, interrupted, open_stream

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "is_client_error", "is_local_rejection"]

T = TypeVar("T")

CLIENT_ERRORS: tuple[type[ModelError], ...] = (
    BadRequest,
    AuthenticationFailed,
    PermissionDenied,
    QuotaExhausted,
    ModelNotFound,
)
LOCAL_PROVIDER = "legato"


def is_client_error(error: BaseException) -> bool:
    """A 400/401/403/404/422 or quota error: the request or account, not the deployment's health."""
    return isinstance(error, CLIENT_ERRORS)


def is_local_rejection(error: BaseException) -> bool:
    """Refused before reaching the upstream (bulkhead full, local rate limit, open breaker)."""
    return isinstance(error, CircuitOpen) or (isinstance(error, ModelError) and error.provider == LOCAL_PROVIDER)


def records_failure(error: BaseException) -> bool:
    """Default: every error except client errors and local rejections counts as a failure."""
    return not (is_client_error(error) or is_local_rejection(error))


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerPolicy(BaseModel):
    """Thresholds of a circuit breaker (resilience4j names, snake_case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sliding_window_type: Literal["count", "time"] = "count"
    sliding_window_size: int = Field(default=50, ge=1, description="calls (count) or seconds (time)")
    minimum_number_of_calls: int = Field(default=20, ge=1)
    failure_rate_threshold: float = Field(default=50.0, gt=0, le=100, description="percent")
    slow_call_rate_threshold: float = Field(default=100.0, gt=0, le=100, description="percent")
    slow_call_duration_threshold: float = Field(default=60.0, gt=0, description="seconds")
    wait_duration_in_open_state: float = Field(default=30.0, ge=0, description="seconds")
    permitted_number_of_calls_in_half_open_state: int = Field(default=3, ge=1)
    max_wait_duration_in_half_open_state: float = Field(
        default=0.0, ge=0, description="seconds; 0 waits until the probes finish"
    )


class _Window:
    """Failure and slow-call totals over the last N calls or N seconds."""

    def __init__(self, kind: Literal["count", "time"], size: int) -> None:
        self.kind = kind
        self.size = size
        self._entries: deque[list[float]] = deque()  # count: [fail, slow]; time: [second, calls, fail, slow]
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        if self.kind == "count":
            self._entries.append([float(failed), float(slow)])
            if len(self._entries) > self.size:
                old = self._entries.popleft()
                self.failures -= int(old[0])
                self.slow -= int(old[1])
            else:
                self.calls += 1
        else:
            self._expire(now)
            second = float(int(now))
            if not self._entries or self._entries[-1][0] != second:
                self._entries.append([second, 0.0, 0.0, 0.0])
            entry = self._entries[-1]
            entry[1] += 1
            entry[2] += failed
            entry[3] += slow
            self.calls += 1
        self.failures += failed
        self.slow += slow

    def _expire(self, now: float) -> None:
        horizon = int(now) - self.size
        while self._entries and self._entries[0][0] <= horizon:
            _, calls, failures, slow = self._entries.popleft()
            self.calls -= int(calls)
            self.failures -= int(failures)
            self.slow -= int(slow)

    def counts(self, now: float) -> tuple[int, int, int]:
        """Calls, failures and slow calls currently in the window."""
        if self.kind == "time":
            self._expire(now)
        return self.calls, self.failures, self.slow


def _reaches(count: int, calls: int, threshold_percent: float) -> bool:
    """Whether ``count`` of ``calls`` is at least ``threshold_percent`` percent, without rounding."""
    return Fraction(100 * count, calls) >= Fraction(threshold_percent)


class CircuitBreaker(ModelWrapper):
    """A Model that refuses calls with :class:`CircuitOpen` while its circuit is open.

    The state machine is usable without the wrapper (a router consults it):
    :meth:`try_acquire` before a call, then :meth:`on_success`, :meth:`on_error` or
    :meth:`release` (the call was abandoned, nothing learned).
    """

    def __init__(
        self,
        inner: Model,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
        records: Callable[[BaseException], bool] = records_failure,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.policy = policy or BreakerPolicy()
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        self.records = records
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._since = self.clock.now()
        self._window = self._new_window()
        self._half_open_issued = 0
        self._half_open_done = 0

    def _new_window(self, state: BreakerState = BreakerState.CLOSED) -> _Window:
        p = self.policy
        if state is BreakerState.HALF_OPEN:
            # resilience4j: the probes are judged together, however long they take.
            return _Window("count", p.permitted_number_of_calls_in_half_open_state)
        return _Window(p.sliding_window_type, p.sliding_window_size)

    # -- state machine -------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    def retry_after(self) -> float:
        """Seconds until an OPEN circuit lets a probe through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._since + self.policy.wait_duration_in_open_state - self.clock.now())

    def available(self) -> bool:
        """Whether a call would be permitted now (does not take a permit)."""
        with self._lock:
            self._tick()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN:
                return self._half_open_issued < self.policy.permitted_number_of_calls_in_half_open_state
            return False

    def try_acquire(self) -> bool:
        """Take permission for one call; False means the circuit refuses it."""
        with self._lock:
            self._tick()
            if self._state is BreakerState.CLOSED:
                return True
            if (
                self._state is BreakerState.HALF_OPEN
                and self._half_open_issued < self.policy.permitted_number_of_calls_in_half_open_state
            ):
                self._half_open_issued += 1
                return True
            return False

    def release(self) -> None:
        """Give back a permit whose call taught us nothing (cancelled, client error)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._half_open_issued > self._half_open_done:
                self._half_open_issued -= 1

    def on_success(self, duration: float) -> None:
        self._record(failed=False, duration=duration)

    def on_error(self, duration: float, error: BaseException) -> None:
        if self.records(error):
            self._record(failed=True, duration=duration)
        else:
            self.release()

    def _record(self, *, failed: bool, duration: float) -> None:
        slow = duration > self.policy.slow_call_duration_threshold  # resilience4j: "slower than"
        with self._lock:
            now = self.clock.now()
            if self._state is BreakerState.OPEN:
                return  # a call that started before the circuit opened
            self._window.add(now, failed, slow)
            if self._state is BreakerState.HALF_OPEN:
                self._half_open_done += 1
                if self._half_open_done >= self.policy.permitted_number_of_calls_in_half_open_state:
                    self._decide(now, self.policy.permitted_number_of_calls_in_half_open_state)
            else:
                # Every outcome is a decision point: the call that reaches the minimum may be a
                # success (5 failures then 5 successes is 50% at a minimum of 10 calls).
                minimum = self.policy.minimum_number_of_calls
                if self.policy.sliding_window_type == "count":
                    minimum = min(minimum, self.policy.sliding_window_size)
                self._decide(now, minimum)

    def _decide(self, now: float, minimum: int) -> None:
        calls, failures, slow = self._window.counts(now)
        if calls == 0 or calls < minimum:
            return
        p = self.policy
        # Compared exactly (100 * count >= threshold * calls): a float percentage such as 100/3
        # must not land on either side of a threshold by rounding.
        tripped = _reaches(failures, calls, p.failure_rate_threshold) or _reaches(
            slow, calls, p.slow_call_rate_threshold
        )
        failure_rate, slow_rate = 100.0 * failures / calls, 100.0 * slow / calls
        if tripped:
            self._transition(BreakerState.OPEN, now, failure_rate, slow_rate)
        elif self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED, now, failure_rate, slow_rate)

    def _tick(self) -> None:
        now = self.clock.now()
        p = self.policy
        if self._state is BreakerState.OPEN and now >= self._since + p.wait_duration_in_open_state:
            self._transition(BreakerState.HALF_OPEN, now)
        elif (
            self._state is BreakerState.HALF_OPEN
            and p.max_wait_duration_in_half_open_state > 0
            and now >= self._since + p.max_wait_duration_in_half_open_state
        ):
            self._transition(BreakerState.OPEN, now)

    def _transition(
        self, new: BreakerState, now: float, failure_rate: float | None = None, slow_rate: float | None = None
    ) -> None:
        old = self._state
        self._state = new
        self._since = now
        self._window = self._new_window(new)
        self._half_open_issued = 0
        self._half_open_done = 0
        if self.events.active:
            self.events.emit(BreakerStateChanged(self.name, now, old.value, new.value, failure_rate, slow_rate))

    def reset(self) -> None:
        """Close the circuit and forget the window (an operator or a passing health check)."""
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                self._transition(BreakerState.CLOSED, self.clock.now())
            else:
                self._window = self._new_window()

    def _refuse(self) -> CircuitOpen:
        return CircuitOpen(
            f"circuit breaker of {self.name!r} is {self._state.value}",
            provider=LOCAL_PROVIDER,
            model=self.name,
            retry_after=self.retry_after() or None,
        )

    # -- Model ---------------------------------------------------------------

    async def _guarded(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.try_acquire():
            raise self._refuse()
        start = self.clock.now()
        try:
            result = await fn()
        except BaseException as error:
            if isinstance(error, Exception):
                self.on_error(self.clock.now() - start, error)
            else:
                self.release()
            raise
        self.on_success(self.clock.now() - start)
        return result

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._guarded(lambda: self.inner.chat(request))

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._guarded(lambda: self.inner.embed(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not self.try_acquire():
            raise self._refuse()
        start = self.clock.now()
        inner = self.inner.stream(request)
        delivered = False
        outcome_known = False
        try:
            head = await open_stream(inner)
            if head:
                delivered = True
                for chunk in head:
                    yield chunk
                async for chunk in inner:
                    yield chunk
            self.on_success(self.clock.now() - start)
            outcome_known = True
        except Exception as error:
            self.on_error(self.clock.now() - start, error)
            outcome_known = True
            if delivered and isinstance(error, ModelError):
                raise interrupted(error, self.name) from error
            raise
        finally:
            if not outcome_known:
                self.release()  # the consumer stopped reading: nothing learned
            await close_stream(inner)

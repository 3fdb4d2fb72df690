"""Property test: the breaker's decisions equal the resilience4j rule on random call sequences.

The reference below is written from resilience4j's documented rule, as plainly as possible
(a list of every outcome since the last state change, re-scanned on each call), not from the
breaker's incremental window: in CLOSED, once the window holds at least
``minimum_number_of_calls`` calls (capped at the window size for a count window), the circuit
opens when the failure rate or the slow-call rate is *equal to or greater than* its threshold;
a call is slow when it takes longer than ``slow_call_duration_threshold``; a time window holds
the calls of the last ``sliding_window_size`` whole seconds (decision 0019); OPEN turns
HALF_OPEN on the first call after the wait; HALF_OPEN admits the permitted probes and judges
them together with the same thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_model import Scripted

from legato.errors import BadRequest, ServerError
from legato.resilience import BreakerPolicy, BreakerState, CircuitBreaker, VirtualClock

SLOW = 1.0
Outcome = str  # "ok" | "fail" | "slow_ok" | "slow_fail" | "at_threshold" | "client_error"
OUTCOMES = ["ok", "fail", "slow_ok", "slow_fail", "at_threshold", "client_error"]


@dataclass
class Reference:
    policy: BreakerPolicy
    state: BreakerState = BreakerState.CLOSED
    since: float = 0.0
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)
    issued: int = 0
    done: int = 0

    def _go(self, state: BreakerState, now: float) -> None:
        self.state, self.since, self.outcomes, self.issued, self.done = state, now, [], 0, 0

    def _tick(self, now: float) -> None:
        p = self.policy
        if self.state is BreakerState.OPEN and now >= self.since + p.wait_duration_in_open_state:
            self._go(BreakerState.HALF_OPEN, now)
        elif (
            self.state is BreakerState.HALF_OPEN
            and p.max_wait_duration_in_half_open_state > 0
            and now >= self.since + p.max_wait_duration_in_half_open_state
        ):
            self._go(BreakerState.OPEN, now)

    def acquire(self, now: float) -> bool:
        self._tick(now)
        if self.state is BreakerState.CLOSED:
            return True
        if (
            self.state is BreakerState.HALF_OPEN
            and self.issued < self.policy.permitted_number_of_calls_in_half_open_state
        ):
            self.issued += 1
            return True
        return False

    def release(self) -> None:
        if self.state is BreakerState.HALF_OPEN and self.issued > self.done:
            self.issued -= 1

    def record(self, now: float, failed: bool, duration: float) -> None:
        p = self.policy
        if self.state is BreakerState.OPEN:
            return
        self.outcomes.append((now, failed, duration > p.slow_call_duration_threshold))
        if self.state is BreakerState.HALF_OPEN:
            self.done += 1
            if self.done >= p.permitted_number_of_calls_in_half_open_state:
                self._judge(now, self.outcomes, p.permitted_number_of_calls_in_half_open_state)
            return
        if p.sliding_window_type == "count":
            window = self.outcomes[-p.sliding_window_size :]
            minimum = min(p.minimum_number_of_calls, p.sliding_window_size)
        else:
            window = [o for o in self.outcomes if floor(o[0]) > floor(now) - p.sliding_window_size]
            minimum = p.minimum_number_of_calls
        self._judge(now, window, minimum)

    def _judge(self, now: float, window: list[tuple[float, bool, bool]], minimum: int) -> None:
        calls = len(window)
        if calls == 0 or calls < minimum:
            return
        failure_rate = Fraction(100 * sum(f for _, f, _ in window), calls)
        slow_rate = Fraction(100 * sum(s for _, _, s in window), calls)
        p = self.policy
        if failure_rate >= Fraction(p.failure_rate_threshold) or slow_rate >= Fraction(p.slow_call_rate_threshold):
            self._go(BreakerState.OPEN, now)
        elif self.state is BreakerState.HALF_OPEN:
            self._go(BreakerState.CLOSED, now)


THRESHOLDS = st.sampled_from([1.0, 10.0, 20.0, 25.0, 100 / 3, 40.0, 50.0, 60.0, 200 / 3, 75.0, 80.0, 99.5, 100.0])


@st.composite
def policies(draw: st.DrawFn) -> BreakerPolicy:
    return BreakerPolicy(
        sliding_window_type=draw(st.sampled_from(["count", "time"])),
        sliding_window_size=draw(st.integers(1, 12)),
        minimum_number_of_calls=draw(st.integers(1, 15)),
        failure_rate_threshold=draw(THRESHOLDS),
        slow_call_rate_threshold=draw(THRESHOLDS),
        slow_call_duration_threshold=SLOW,
        wait_duration_in_open_state=draw(st.sampled_from([0.0, 1.0, 5.0, 30.0])),
        permitted_number_of_calls_in_half_open_state=draw(st.integers(1, 4)),
        max_wait_duration_in_half_open_state=draw(st.sampled_from([0.0, 0.0, 3.0, 20.0])),
    )


CALLS = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 3.0, 12.0]), st.sampled_from(OUTCOMES)),
    max_size=80,
)


def duration_of(outcome: Outcome) -> float:
    return {"slow_ok": 2.0, "slow_fail": 2.0, "at_threshold": SLOW}.get(outcome, 0.1)


@settings(max_examples=400, deadline=None)
@given(policy=policies(), calls=CALLS)
def test_decisions_match_the_resilience4j_rule(policy: BreakerPolicy, calls: list[tuple[float, Outcome]]) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(Scripted("m", ["ok"], clock=clock), policy, clock=clock)
    reference = Reference(policy)
    for step, (advance, outcome) in enumerate(calls):
        clock.advance(advance)
        now = clock.now()
        admitted = reference.acquire(now)
        assert breaker.try_acquire() is admitted, f"call {step}: admission differs"
        if admitted:
            duration = duration_of(outcome)
            if outcome == "client_error":
                breaker.on_error(duration, BadRequest("bad"))
                reference.release()
            elif outcome in ("fail", "slow_fail"):
                breaker.on_error(duration, ServerError("down"))
                reference.record(now, True, duration)
            else:
                breaker.on_success(duration)
                reference.record(now, False, duration)
        assert breaker.state is reference.state, f"call {step} ({outcome}): {breaker.state} != {reference.state}"


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_failures_then_successes_reaching_the_minimum_open_the_circuit(window_type: str) -> None:
    policy = BreakerPolicy(
        sliding_window_type=window_type,  # type: ignore[arg-type]
        sliding_window_size=10 if window_type == "count" else 60,
        minimum_number_of_calls=10,
        failure_rate_threshold=50,
    )
    clock = VirtualClock()
    breaker = CircuitBreaker(Scripted("m", ["ok"], clock=clock), policy, clock=clock)
    for _ in range(5):
        breaker.on_error(0.1, ServerError("down"))
    for _ in range(4):
        breaker.on_success(0.1)
    assert breaker.state is BreakerState.CLOSED  # 9 calls: below the minimum
    breaker.on_success(0.1)
    assert breaker.state is BreakerState.OPEN  # 5 of 10 failed: 50% >= 50%

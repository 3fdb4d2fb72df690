from __future__ import annotations

import contextlib

import pytest
from scripted_model import Cut, Scripted, req

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    CircuitOpen,
    ContextWindowExceeded,
    NoDeploymentAvailable,
    Overloaded,
    PermissionDenied,
    QuotaExhausted,
    ServerError,
    StreamInterrupted,
)
from legato.resilience import (
    BreakerPolicy,
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
    EventHub,
    VirtualClock,
)

POLICY = BreakerPolicy(
    sliding_window_size=10,
    minimum_number_of_calls=4,
    failure_rate_threshold=50,
    wait_duration_in_open_state=30,
    permitted_number_of_calls_in_half_open_state=2,
)


async def fail_n(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises((ServerError, CircuitOpen)):
            await breaker.chat(req())


async def test_opens_at_the_failure_rate_after_minimum_calls(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok", "ok", ServerError("x")], clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    await breaker.chat(req())
    await breaker.chat(req())
    await fail_n(breaker, 1)
    assert breaker.state is BreakerState.CLOSED  # 3 calls < minimum 4
    await fail_n(breaker, 1)  # 2 of 4 failed = 50% >= threshold
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        await breaker.chat(req())
    assert isinstance(info.value, NoDeploymentAvailable)
    assert info.value.retry_after == pytest.approx(30)
    assert model.calls == 4  # the refused call never reached the model


async def test_stays_closed_below_the_threshold(clock: VirtualClock) -> None:
    model = Scripted("m", lambda n: ServerError("x") if n % 3 == 2 else "ok", clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    for _ in range(30):
        with contextlib.suppress(ServerError):
            await breaker.chat(req())
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_admits_only_the_permitted_probes_then_closes(clock: VirtualClock) -> None:
    outcomes: list[str | Exception] = [ServerError("x")] * 4
    model = Scripted("m", lambda n: outcomes[n] if n < len(outcomes) else "ok", clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    await fail_n(breaker, 4)
    assert breaker.state is BreakerState.OPEN
    clock.advance(29)
    assert not breaker.available()
    clock.advance(1)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.try_acquire()  # no third probe
    breaker.on_success(0.1)
    breaker.on_success(0.1)
    assert breaker.state is BreakerState.CLOSED


async def test_failed_probe_reopens(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("x")], clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    await fail_n(breaker, 4)
    clock.advance(30)
    await fail_n(breaker, 2)
    assert breaker.state is BreakerState.OPEN
    assert model.calls == 6
    await fail_n(breaker, 5)
    assert model.calls == 6


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("bad"),
        ContextWindowExceeded("long"),
        AuthenticationFailed("key"),
        PermissionDenied("no"),
        QuotaExhausted("quota"),
        Overloaded("bulkhead", provider="legato"),
    ],
)
async def test_client_errors_and_local_rejections_never_trip(clock: VirtualClock, error: Exception) -> None:
    breaker = CircuitBreaker(Scripted("m", [error], clock=clock), POLICY, clock=clock)
    for _ in range(20):
        with pytest.raises(type(error)):
            await breaker.chat(req())
    assert breaker.state is BreakerState.CLOSED


async def test_slow_calls_trip_the_slow_call_rate(clock: VirtualClock) -> None:
    policy = BreakerPolicy(
        sliding_window_size=5,
        minimum_number_of_calls=5,
        slow_call_duration_threshold=2.0,
        slow_call_rate_threshold=60,
    )
    model = Scripted("m", ["ok"], latency=lambda n: 3.0 if n % 2 == 0 else 0.1, clock=clock)
    breaker = CircuitBreaker(model, policy, clock=clock)
    for _ in range(5):
        await breaker.chat(req())
    assert breaker.state is BreakerState.OPEN  # 3 of 5 slow = 60%


async def test_time_based_window_forgets_old_failures(clock: VirtualClock) -> None:
    policy = BreakerPolicy(sliding_window_type="time", sliding_window_size=10, minimum_number_of_calls=4)
    model = Scripted("m", lambda n: ServerError("x") if n < 3 else "ok", clock=clock)
    breaker = CircuitBreaker(model, policy, clock=clock)
    await fail_n(breaker, 3)
    clock.advance(20)
    await breaker.chat(req())  # the three failures left the window: 1 call, no decision
    assert breaker.state is BreakerState.CLOSED


async def test_state_changes_are_published(clock: VirtualClock) -> None:
    hub = EventHub()
    seen: list[BreakerStateChanged] = []
    hub.subscribe(lambda e: seen.append(e) if isinstance(e, BreakerStateChanged) else None)
    model = Scripted("m", lambda n: ServerError("x") if n < 4 else "ok", clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock, events=hub, name="east")
    await fail_n(breaker, 4)
    clock.advance(30)
    await breaker.chat(req())
    await breaker.chat(req())
    assert [(e.old, e.new) for e in seen] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert seen[0].source == "east"
    assert seen[0].failure_rate == 100.0


async def test_abandoned_probe_gives_its_permit_back(clock: VirtualClock) -> None:
    model = Scripted("m", lambda n: ServerError("x") if n < 4 else "a b c", clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    await fail_n(breaker, 4)
    clock.advance(30)
    stream = breaker.stream(req())
    await stream.__anext__()
    await stream.aclose()  # the consumer walked away
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()
    assert breaker.try_acquire()


async def test_stream_cut_after_first_chunk_counts_and_is_interrupted(clock: VirtualClock) -> None:
    model = Scripted("m", [Cut(1, ServerError("cut"))], clock=clock)
    breaker = CircuitBreaker(model, POLICY, clock=clock)
    for _ in range(4):
        with pytest.raises(StreamInterrupted) as info:
            async for _ in breaker.stream(req()):
                pass
        assert info.value.retryable is False
    assert breaker.state is BreakerState.OPEN


async def test_policy_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="failure_rate_threshold"):
        BreakerPolicy(failure_rate_threshold=150)

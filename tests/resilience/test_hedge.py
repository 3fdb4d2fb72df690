from __future__ import annotations

import pytest
from scripted_model import Scripted, req

from legato.errors import ServerError
from legato.resilience import EventHub, Hedge, HedgePolicy, HedgeSent, VirtualClock


async def test_slow_first_attempt_is_hedged_and_cancelled(clock: VirtualClock) -> None:
    model = Scripted("m", lambda n: f"answer-{n}", latency=lambda n: 10.0 if n == 0 else 0.5, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock)
    async with clock.autojump():
        response = await hedge.chat(req())
    assert response.text == "answer-1"
    assert clock.now() == pytest.approx(1.5)
    assert model.calls == 2
    assert hedge.hedges == 1


async def test_fast_answer_sends_no_copy(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=0.2, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock)
    async with clock.autojump():
        for _ in range(5):
            await hedge.chat(req())
    assert model.calls == 5
    assert hedge.hedges == 0


async def test_extra_load_is_capped(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=5.0, clock=clock)  # uniformly slow upstream
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=0.05), clock=clock)
    async with clock.autojump():
        for _ in range(100):
            await hedge.chat(req())
    assert hedge.hedges == 5
    assert model.calls == 105


async def test_learns_the_delay_from_observed_latency(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=lambda n: 0.1 * (1 + n % 10), clock=clock)
    hedge = Hedge(model, HedgePolicy(min_samples=20, quantile=0.9, max_extra=0.0), clock=clock)
    assert hedge.current_delay() is None
    async with clock.autojump():
        for _ in range(20):
            await hedge.chat(req())
    # p90 of 0.1..1.0 is 0.9; with 20 samples the lower confidence bound is 0.8
    assert hedge.current_delay() == pytest.approx(0.8)


async def test_opt_out_per_request(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=5.0, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock)
    async with clock.autojump():
        await hedge.chat(req(metadata={"hedge": False}))
    assert model.calls == 1


async def test_first_attempt_failing_before_the_delay_fails_the_call(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("x"), "ok"], latency=0.1, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock)
    async with clock.autojump():
        with pytest.raises(ServerError):
            await hedge.chat(req())
    assert model.calls == 1


async def test_copy_answers_when_the_first_attempt_fails_late(clock: VirtualClock) -> None:
    hub = EventHub()
    sent: list[HedgeSent] = []
    hub.subscribe(lambda e: sent.append(e) if isinstance(e, HedgeSent) else None)
    model = Scripted("m", [ServerError("late"), "copy"], latency=lambda n: 3.0 if n == 0 else 4.0, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock, events=hub)
    async with clock.autojump():
        response = await hedge.chat(req())
    assert response.text == "copy"
    assert clock.now() == pytest.approx(5.0)
    assert [e.delay for e in sent] == [pytest.approx(1.0)]


async def test_both_failing_raises_the_first_error(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("first"), ServerError("second")], latency=2.0, clock=clock)
    hedge = Hedge(model, HedgePolicy(delay=1.0, max_extra=1.0), clock=clock)
    async with clock.autojump():
        with pytest.raises(ServerError, match="first"):
            await hedge.chat(req())

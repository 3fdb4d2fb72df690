from __future__ import annotations

import pytest
from scripted_model import Cut, Scripted, drain, req

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from legato.providers import EmbedRequest
from legato.resilience import EventHub, Retry, RetryBudget, RetryBudgetExhausted, RetryScheduled, VirtualClock
from legato.retry import RetryPolicy


async def test_retries_retryable_errors_then_succeeds(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("boom"), ServerError("boom"), "fine"], clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=3, base_delay=1.0), clock=clock)
    response = await retry.chat(req())
    assert response.text == "fine"
    assert model.calls == 3
    assert len(clock.sleeps) == 2
    assert all(0 <= s <= 2.0 for s in clock.sleeps)


async def test_stops_at_max_attempts_and_raises_last_error(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("boom")], clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=4), clock=clock, budget=None)
    with pytest.raises(ServerError):
        await retry.chat(req())
    assert model.calls == 4


@pytest.mark.parametrize(
    "error",
    [BadRequest("bad"), AuthenticationFailed("key"), QuotaExhausted("quota", code="insufficient_quota")],
)
async def test_client_errors_are_never_retried(clock: VirtualClock, error: Exception) -> None:
    model = Scripted("m", [error, "fine"], clock=clock)
    with pytest.raises(type(error)):
        await Retry(model, RetryPolicy(max_attempts=5), clock=clock).chat(req())
    assert model.calls == 1
    assert clock.sleeps == []


async def test_retry_after_is_honoured_in_virtual_time(clock: VirtualClock) -> None:
    model = Scripted("m", [RateLimited("slow down", retry_after=2.0), "fine"], clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=3, base_delay=0.1), clock=clock)
    assert (await retry.chat(req())).text == "fine"
    assert model.started_at[1] - model.started_at[0] >= 2.0


async def test_retry_after_beyond_the_cap_gives_up_at_once(clock: VirtualClock) -> None:
    model = Scripted("m", [RateLimited("later", retry_after=600.0), "fine"], clock=clock)
    with pytest.raises(RateLimited):
        await Retry(model, RetryPolicy(max_attempts=3, max_retry_after=60), clock=clock).chat(req())
    assert model.calls == 1


async def test_deadline_stops_retrying(clock: VirtualClock) -> None:
    model = Scripted("m", [RateLimited("x", retry_after=4.0)], clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=10, deadline=10.0), clock=clock, budget=None)
    with pytest.raises(RateLimited):
        await retry.chat(req())
    assert model.calls == 3  # t=0, t=4, t=8; the next would start at 12 > 10
    assert clock.now() < 10.0


async def test_budget_caps_retries_during_an_outage(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("down")], clock=clock)
    budget = RetryBudget(0.1, min_retries=10, clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=3, base_delay=0.0), clock=clock, budget=budget)
    for _ in range(1000):
        with pytest.raises(ServerError):
            await retry.chat(req())
    assert model.calls <= 1100
    assert budget.retries >= 90  # the budget is spent, not merely unused


async def test_budget_floor_lets_a_quiet_caller_retry(clock: VirtualClock) -> None:
    budget = RetryBudget(0.1, min_retries=3, clock=clock)
    budget.record_request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


async def test_budget_window_forgets_old_traffic(clock: VirtualClock) -> None:
    budget = RetryBudget(0.5, min_retries=0, window=10, clock=clock)
    for _ in range(4):
        budget.record_request()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(11)
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()
    assert not budget.try_spend()


async def test_events_report_retries_and_budget_exhaustion(clock: VirtualClock) -> None:
    hub = EventHub()
    seen: list[object] = []
    hub.subscribe(seen.append)
    budget = RetryBudget(0.0, min_retries=1, clock=clock)
    model = Scripted("m", [ServerError("down")], clock=clock)
    retry = Retry(model, RetryPolicy(max_attempts=3), clock=clock, budget=budget, events=hub, name="primary")
    with pytest.raises(ServerError):
        await retry.chat(req())
    assert [type(e) for e in seen] == [RetryScheduled, RetryBudgetExhausted]
    assert isinstance(seen[0], RetryScheduled)
    assert seen[0].source == "primary"
    assert seen[0].error == "ServerError"


async def test_stream_retries_before_the_first_chunk(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("early"), "hello there"], clock=clock)
    chunks = [c async for c in Retry(model, clock=clock).stream(req())]
    assert "".join(c.text for c in chunks) == "hello there "
    assert model.calls == 2


async def test_stream_failure_after_first_chunk_is_interrupted_not_retried(clock: VirtualClock) -> None:
    model = Scripted("m", [Cut(2, ServerError("cut")), "never"], clock=clock)
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        await drain(Retry(model, clock=clock).stream(req()), got)
    assert info.value.retryable is False
    assert got == ["m-0 ", "m-1 "]
    assert model.calls == 1


async def test_embed_is_retried(clock: VirtualClock) -> None:
    model = Scripted("m", [ServerError("x"), "ok"], clock=clock)
    response = await Retry(model, clock=clock).embed(EmbedRequest(inputs=["a", "b"]))
    assert len(response.vectors) == 2
    assert model.calls == 2

from __future__ import annotations

import anyio
import pytest
from scripted_model import Scripted, drain, req

from legato.errors import Overloaded, ProviderTimeout, RateLimited, StreamInterrupted
from legato.resilience import (
    Bulkhead,
    BulkheadPolicy,
    RateLimiter,
    RateLimitPolicy,
    Timeout,
    VirtualClock,
    estimate_tokens,
    is_local_rejection,
)

# -- RateLimiter ---------------------------------------------------------------


async def test_rpm_spaces_calls_in_virtual_time(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], clock=clock)
    limiter = RateLimiter(model, RateLimitPolicy(rpm=60, max_wait=120), clock=clock)
    for _ in range(62):
        await limiter.chat(req())
    # a burst of 60, then one request per second
    assert model.started_at[59] == 0.0
    assert model.started_at[60] == pytest.approx(1.0)
    assert model.started_at[61] == pytest.approx(2.0)


async def test_fail_fast_raises_local_rate_limited_with_retry_after(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], clock=clock)
    limiter = RateLimiter(model, RateLimitPolicy(rpm=2, wait=False), clock=clock)
    await limiter.chat(req())
    await limiter.chat(req())
    with pytest.raises(RateLimited) as info:
        await limiter.chat(req())
    assert info.value.retry_after == pytest.approx(30.0)
    assert is_local_rejection(info.value)
    assert model.calls == 2


async def test_tpm_uses_the_estimate_then_reconciles_with_usage(clock: VirtualClock) -> None:
    # Scripted reports 15 real tokens; the estimate with max_tokens=500 is ~501.
    model = Scripted("m", ["ok"], clock=clock)
    limiter = RateLimiter(model, RateLimitPolicy(tpm=1000, wait=False), clock=clock)
    request = req(max_tokens=500)
    assert estimate_tokens(request) == 501
    for _ in range(10):
        await limiter.chat(request)  # without reconciliation the third call would be refused
    assert model.calls == 10
    headroom = limiter.headroom()
    assert headroom is not None
    assert headroom < 1.0


async def test_wait_longer_than_max_wait_fails(clock: VirtualClock) -> None:
    limiter = RateLimiter(Scripted("m", ["ok"], clock=clock), rpm=1, max_wait=10, clock=clock)
    await limiter.chat(req())
    with pytest.raises(RateLimited):
        await limiter.chat(req())


# -- Bulkhead ------------------------------------------------------------------


async def test_bulkhead_bounds_concurrency_and_queue(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=1.0, clock=clock)
    bulkhead = Bulkhead(model, BulkheadPolicy(max_concurrent=2, max_queue=1, queue_timeout=5), clock=clock)
    outcomes: list[str] = []
    peak = 0

    async def call() -> None:
        nonlocal peak
        try:
            await bulkhead.chat(req())
            outcomes.append("ok")
        except Overloaded as error:
            outcomes.append(f"rejected:{error.code}")

    async def watch() -> None:
        nonlocal peak
        for _ in range(50):
            peak = max(peak, bulkhead.in_flight)
            await anyio.lowlevel.checkpoint()

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(watch)
        for _ in range(4):
            tg.start_soon(call)
    assert sorted(outcomes) == ["ok", "ok", "ok", "rejected:bulkhead_full"]
    assert peak == 2
    assert bulkhead.in_flight == 0


async def test_bulkhead_queue_timeout(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=10.0, clock=clock)
    bulkhead = Bulkhead(model, BulkheadPolicy(max_concurrent=1, max_queue=5, queue_timeout=2), clock=clock)
    results: list[str] = []

    async def call() -> None:
        try:
            await bulkhead.chat(req())
            results.append(f"ok@{clock.now():g}")
        except Overloaded:
            results.append(f"timeout@{clock.now():g}")

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(call)
        await clock.sleep(0.5)
        tg.start_soon(call)
    assert results == ["timeout@2.5", "ok@10"]


# -- Timeout -------------------------------------------------------------------


async def test_timeout_cancels_a_slow_call(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=30.0, clock=clock)
    with pytest.raises(ProviderTimeout) as info:
        await Timeout(model, 5, clock=clock).chat(req())
    assert info.value.retryable
    assert clock.now() == pytest.approx(5.0)


async def test_timeout_lets_a_fast_call_through(clock: VirtualClock) -> None:
    model = Scripted("m", ["ok"], latency=1.0, clock=clock)
    assert (await Timeout(model, 5, clock=clock).chat(req())).text == "ok"
    clock.advance(100)  # the finished call's timer must not fire later


async def test_stream_timeout_between_chunks_is_an_interruption(clock: VirtualClock) -> None:
    class SlowAfterFirst(Scripted):
        async def stream(self, request):  # type: ignore[no-untyped-def,override]
            async for chunk in super().stream(request):
                yield chunk
                await self.clock.sleep(60)

    model = SlowAfterFirst("m", ["a b"], clock=clock)
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        await drain(Timeout(model, 5, clock=clock).stream(req()), got)
    assert got == ["a "]
    assert info.value.retryable is False


async def test_stream_timeout_before_first_chunk_is_a_timeout(clock: VirtualClock) -> None:
    model = Scripted("m", ["a b"], latency=60, clock=clock)
    with pytest.raises(ProviderTimeout):
        async for _ in Timeout(model, 5, clock=clock).stream(req()):
            pass


def test_timeout_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="seconds"):
        Timeout(Scripted("m"), 0)

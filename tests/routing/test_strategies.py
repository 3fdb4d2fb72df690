from __future__ import annotations

import random
from collections import Counter

import anyio
import pytest
from scripted_model import Scripted, req

from legato.resilience import VirtualClock
from legato.routing import (
    Deployment,
    LatencyBased,
    LeastInFlight,
    LowestCost,
    RoundRobin,
    Router,
    UsageBased,
    Weighted,
    strategy_named,
)


async def tiers(r: Router, n: int) -> Counter[str]:
    return Counter([(await r.chat(req())).tier or "" for _ in range(n)])


async def test_round_robin_spreads_evenly(clock: VirtualClock) -> None:
    r = Router("g", [Scripted(x, clock=clock) for x in "abc"], strategy=RoundRobin(), clock=clock)
    assert await tiers(r, 9) == {"g/a": 3, "g/b": 3, "g/c": 3}


async def test_weighted_is_proportional_and_interleaved(clock: VirtualClock) -> None:
    a, b = Scripted("a", clock=clock), Scripted("b", clock=clock)
    r = Router("g", [Deployment(a, weight=3), Deployment(b, weight=1)], strategy=Weighted(), clock=clock)
    order = [(await r.chat(req())).tier for _ in range(8)]
    assert Counter(order) == {"g/a": 6, "g/b": 2}
    assert order[:4].count("g/b") == 1  # smooth: not aaa...b bursts across the cycle


async def test_least_in_flight_avoids_the_busy_deployment(clock: VirtualClock) -> None:
    slow = Scripted("slow", latency=10.0, clock=clock)
    fast = Scripted("fast", latency=0.1, clock=clock)
    r = Router("g", [slow, fast], strategy=LeastInFlight(), clock=clock)
    answered: list[str] = []

    async def call() -> None:
        answered.append((await r.chat(req())).tier or "")

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(call)  # takes "slow" (tie broken round-robin) and holds it
        await clock.sleep(0.01)
        for _ in range(5):
            await call()
    assert slow.calls == 1
    assert fast.calls == 5


async def test_latency_strategy_prefers_the_fast_deployment(clock: VirtualClock) -> None:
    slow = Scripted("slow", latency=2.0, clock=clock)
    fast = Scripted("fast", latency=0.2, clock=clock)
    strategy = LatencyBased(explore=0.05, rng=random.Random(1))
    r = Router("g", [slow, fast], strategy=strategy, clock=clock)
    counts = await tiers(r, 200)
    assert counts["g/fast"] >= 180
    assert counts["g/slow"] >= 2  # measured once, then explored now and then


async def test_lowest_cost_meets_constraints(clock: VirtualClock) -> None:
    cheap = Scripted("cheap", clock=clock)
    pricey = Scripted("pricey", clock=clock)
    r = Router(
        "g",
        [
            Deployment(pricey, input_cost_per_mtok=10, output_cost_per_mtok=30, context_window=200_000),
            Deployment(cheap, input_cost_per_mtok=0.1, output_cost_per_mtok=0.4, context_window=1000),
        ],
        strategy=LowestCost(),
        clock=clock,
    )
    assert (await r.chat(req())).tier == "g/cheap"
    assert (await r.chat(req("x" * 20_000))).tier == "g/pricey"  # does not fit the cheap one


async def test_usage_based_goes_where_tpm_headroom_is(clock: VirtualClock) -> None:
    a, b = Scripted("a", clock=clock), Scripted("b", clock=clock)
    r = Router("g", [Deployment(a, tpm=10_000), Deployment(b, tpm=100_000)], strategy=UsageBased(), clock=clock)
    counts = await tiers(r, 20)
    assert counts["g/b"] > counts["g/a"]


def test_strategy_names() -> None:
    assert isinstance(strategy_named("latency"), LatencyBased)
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'"):
        strategy_named("fastest")

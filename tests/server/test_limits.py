"""Per-key RPM, TPM and budgets: in process and in Redis (shared by limiters = replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from legato.cost import BudgetStore, MemoryBudgetStore, RedisBudgetStore
from legato.server import ApiKey
from legato.server._errors import GatewayError
from legato.server._limits import KeyLimiter, MemoryCounters, RedisCounters, period_start

from .conftest import closed_port

T0 = 1_790_000_080.0  # 2026-09-21 14:14:40 UTC, 40 s into a minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(**kw: object) -> ApiKey:
    return ApiKey(id="k1", prefix="lg_abcdefghi", name="t", scopes=frozenset({"chat"}), **kw)  # type: ignore[arg-type]


class Stores:
    """The counters and the budget store of one replica, on one clock."""

    def __init__(self, kind: str, prefix: str, redis: Any = None) -> None:
        self.clock = Clock()
        self.counters: Any = MemoryCounters() if redis is None else RedisCounters(redis)
        self.budgets: BudgetStore = (
            MemoryBudgetStore(clock=self.clock)
            if redis is None
            else RedisBudgetStore(client=redis, prefix=prefix + "budget:", clock=self.clock)
        )
        self.prefix = prefix


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield Stores("memory", "mem:")
        return
    from redis.asyncio import Redis

    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis = Redis.from_url(url)
    try:
        yield Stores("redis", prefix, redis)
    finally:
        names = [k async for k in redis.scan_iter(match=prefix + "*")]
        if names:
            await redis.delete(*names)
        await redis.aclose()


def limiter(stores: Stores, *, spent: float = 0.0, **kw: Any) -> KeyLimiter:
    async def seed(key_id: str, since: str | None) -> float:
        return spent

    return KeyLimiter(stores.counters, stores.budgets, prefix=stores.prefix, clock=stores.clock, seed=seed, **kw)


async def test_rpm(stores: Stores) -> None:
    clock = stores.clock
    lim = limiter(stores)
    k = key(rpm=3)
    for _ in range(3):
        await lim.admit(k)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k)
    assert err.value.status == 429
    assert err.value.code == "rate_limit_exceeded"
    assert int(err.value.headers["Retry-After"]) >= 1
    # Two minutes later the window has slid past.
    clock.now += 120
    await lim.admit(k)


async def test_sliding_window_carries_part_of_the_previous_minute(stores: Stores) -> None:
    clock = stores.clock
    clock.now = T0 + 15  # 55 s into the minute
    lim = limiter(stores)
    k = key(rpm=10)
    for _ in range(10):
        await lim.admit(k)
    clock.now += 10  # 5 s into the next minute: ~92% of the 10 still count
    with pytest.raises(GatewayError) as err:
        await lim.admit(k)
    # It takes until ~10% of the way into the minute for one slot to free up.
    assert 1 <= int(err.value.headers["Retry-After"]) <= 6
    clock.now += 30  # 35 s in: ~42% of the previous minute's 10 still count
    for _ in range(5):
        await lim.admit(k)
    with pytest.raises(GatewayError):
        await lim.admit(k)


async def test_tpm_counts_settled_tokens(stores: Stores) -> None:
    lim = limiter(stores)
    k = key(tpm=100)
    await (await lim.admit(k)).settle(tokens=60, cost=None)
    await (await lim.admit(k)).settle(tokens=60, cost=None)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k)
    assert "tokens per minute" in err.value.message


async def test_budget(stores: Stores) -> None:
    lim = limiter(stores, spent=0.5)  # 0.5 already recorded this month
    k = key(budget_usd=1.0, budget_period="month")
    await (await lim.admit(k, 0.1)).settle(tokens=10, cost=0.4)
    await (await lim.admit(k, 0.1)).settle(tokens=10, cost=0.2)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k, 0.1)
    assert err.value.status == 429
    assert err.value.code == "budget_exceeded"
    assert "lg_abcdefghi" in err.value.message


async def test_the_worst_case_is_held_until_the_call_settles(stores: Stores) -> None:
    lim = limiter(stores, budget_wait_s=0)
    k = key(budget_usd=1.0, budget_period="day")
    first = await lim.admit(k, 0.6)
    with pytest.raises(GatewayError) as err:  # 0.6 held + 0.6 > 1.0, and a call is in flight
        await lim.admit(k, 0.6)
    assert (err.value.status, err.value.code) == (429, "budget_busy")
    assert int(err.value.headers["Retry-After"]) >= 1
    await first.settle(tokens=5, cost=0.1)  # it cost far less than its worst case
    second = await lim.admit(k, 0.6)
    third = await lim.admit(k, 0.3)  # 0.1 spent + 0.6 held + 0.3 fits
    await second.settle(tokens=0, cost=0.0)  # a failed call releases everything
    await third.settle(tokens=0, cost=0.0)
    state = await stores.budgets.state(lim_budget(k), run=None)
    assert (round(state.spent, 6), state.reserved) == (0.1, 0.0)


async def test_the_last_call_of_a_budget_runs_alone(stores: Stores) -> None:
    """A worst case bigger than what is left is admitted only with nothing else in flight."""
    lim = limiter(stores, spent=0.9, budget_wait_s=0)
    k = key(budget_usd=1.0, budget_period="day")
    last = await lim.admit(k, 0.5)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k, 0.01)
    assert err.value.code == "budget_busy"
    await last.settle(tokens=1, cost=0.2)  # 1.1 spent: over by less than one worst case
    with pytest.raises(GatewayError) as err:
        await lim.admit(k, 0.01)
    assert err.value.code == "budget_exceeded"


async def test_a_waiting_call_is_admitted_when_the_call_in_flight_settles(stores: Stores) -> None:
    import anyio

    lim = limiter(stores, budget_wait_s=30)
    k = key(budget_usd=1.0, budget_period="day")
    first = await lim.admit(k, 0.8)
    admitted: list[object] = []

    async def second() -> None:
        admitted.append(await lim.admit(k, 0.8))

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.1)
        assert not admitted  # still waiting for the first call
        await first.settle(tokens=1, cost=0.1)
    assert len(admitted) == 1


def lim_budget(k: ApiKey) -> Any:
    from legato.cost import Budget

    return Budget(k.budget_usd or 0.0, f"key:{k.id}", "day")


async def test_daily_budget_renews_the_next_day(stores: Stores) -> None:
    lim = limiter(stores)
    k = key(budget_usd=0.01, budget_period="day")
    await (await lim.admit(k, 0.001)).settle(tokens=1, cost=0.02)
    with pytest.raises(GatewayError):
        await lim.admit(k, 0.001)
    stores.clock.now += 86_400
    await lim.admit(k, 0.001)


async def test_keys_without_limits_cost_nothing(stores: Stores) -> None:
    lim = limiter(stores)
    for _ in range(100):
        await lim.admit(key())


async def test_two_limiters_on_one_redis_share_counts(redis_url: str, redis_prefix: str) -> None:
    """Two replicas (two clients, two limiters) see one RPM and one budget."""
    from redis.asyncio import Redis

    a, b = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        sa, sb = Stores("redis", redis_prefix, a), Stores("redis", redis_prefix, b)
        sb.clock = sa.clock
        sb.budgets = RedisBudgetStore(client=b, prefix=redis_prefix + "budget:", clock=sa.clock)
        la, lb = limiter(sa), limiter(sb)
        k = key(rpm=4, budget_usd=1.0)
        held = [await la.admit(k), await lb.admit(k), await la.admit(k), await lb.admit(k)]
        with pytest.raises(GatewayError):
            await la.admit(k)
        with pytest.raises(GatewayError):
            await lb.admit(k)
        sa.clock.now += 120
        await held[0].settle(tokens=1, cost=1.5)
        with pytest.raises(GatewayError) as err:
            await lb.admit(k)
        assert err.value.code == "budget_exceeded"
    finally:
        names = [n async for n in a.scan_iter(match=redis_prefix + "*")]
        if names:
            await a.delete(*names)
        await a.aclose()
        await b.aclose()


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_an_unreachable_limits_store_follows_the_failure_mode(mode: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1, socket_timeout=1)
    try:
        stores = Stores("redis", "down:", redis)
        stores.budgets = RedisBudgetStore(client=redis, prefix="down:budget:", on_unavailable=mode)  # type: ignore[arg-type]
        lim = limiter(stores, failure_mode=mode)
        for k in (key(rpm=10), key(budget_usd=1.0)):
            if mode == "fail_open":
                await (await lim.admit(k, 0.1)).settle(tokens=5, cost=0.1)  # served, not counted, no error
                continue
            with pytest.raises(GatewayError) as err:
                await lim.admit(k, 0.1)
            assert (err.value.status, err.value.code) == (503, "limits_unavailable")
            assert int(err.value.headers["Retry-After"]) >= 1
            assert "Connection" not in err.value.message
    finally:
        await redis.aclose()


def test_period_start() -> None:
    assert period_start("day", T0) == "2026-09-21"
    assert period_start("month", T0) == "2026-09-01"
    assert period_start("total", T0) is None


def test_a_budget_guard_behind_the_gateway_answers_redis_failures_as_503() -> None:
    """A pipeline-style budget (``budgets:`` in legato.yaml) raising inside the model call."""
    from legato.errors import BudgetBusy, LimitsUnavailable
    from legato.server._errors import from_exception

    down = from_exception(LimitsUnavailable("the budget store (Redis) is unavailable: ConnectionError"))
    assert (down.status, down.code, down.headers) == (503, "limits_unavailable", {"Retry-After": "1"})
    assert "ConnectionError" not in down.message
    busy = from_exception(BudgetBusy("day", 1.0, 0.9, needed=0.2))
    assert (busy.status, busy.code) == (429, "budget_busy")
    assert "held by calls in flight" in busy.message


async def test_the_in_memory_counters_are_pruned_once_a_window_not_once_a_request() -> None:
    """Pruning walks every counter of the replica; it runs at the start of every eighth
    window, once, however many requests that window serves."""

    class Counting(MemoryCounters):
        prunes = 0

        def prune(self, live_windows: set[str]) -> None:
            self.prunes += 1
            super().prune(live_windows)

    clock = Clock()
    clock.now = 8 * 60 * 1000 + 1.0  # early in a window whose number is a multiple of 8
    counters = Counting()
    lim = KeyLimiter(counters, MemoryBudgetStore(clock=clock), clock=clock)
    for _ in range(50):
        await lim.admit(key(rpm=1000))
    assert counters.prunes == 1
    clock.now += 60  # the next window (not a multiple of 8): no pruning
    await lim.admit(key(rpm=1000))
    assert counters.prunes == 1
    clock.now += 7 * 60  # the next multiple of 8
    await lim.admit(key(rpm=1000))
    assert counters.prunes == 2

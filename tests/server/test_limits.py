"""Per-key RPM, TPM and budgets: in process and in Redis (shared by limiters = replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from legato.server import ApiKey
from legato.server._errors import GatewayError
from legato.server._limits import KeyLimiter, MemoryCounters, RedisCounters, period_start

T0 = 1_790_000_080.0  # 2026-09-21 14:14:40 UTC, 40 s into a minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(**kw: object) -> ApiKey:
    return ApiKey(id="k1", prefix="lg_abcdefghi", name="t", scopes=frozenset({"chat"}), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    from redis.asyncio import Redis

    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis = Redis.from_url(url)
    try:
        yield RedisCounters(redis)
    finally:
        names = [k async for k in redis.scan_iter(match=prefix + "*")]
        if names:
            await redis.delete(*names)
        await redis.aclose()


def limiter(counters: object, clock: Clock, prefix: str = "legato-test:", spent: float = 0.0) -> KeyLimiter:
    async def seed(key_id: str, since: str | None) -> float:
        return spent

    return KeyLimiter(counters, prefix=prefix, clock=clock, seed=seed)  # type: ignore[arg-type]


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    if "redis" in request.node.name:
        return str(request.getfixturevalue("redis_prefix"))
    return "mem:"


async def test_rpm(counters: object, prefix: str) -> None:
    clock = Clock()
    lim = limiter(counters, clock, prefix)
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


async def test_sliding_window_carries_part_of_the_previous_minute(counters: object, prefix: str) -> None:
    clock = Clock(T0 + 15)  # 55 s into the minute
    lim = limiter(counters, clock, prefix)
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


async def test_tpm_counts_settled_tokens(counters: object, prefix: str) -> None:
    clock = Clock()
    lim = limiter(counters, clock, prefix)
    k = key(tpm=100)
    await lim.admit(k)
    await lim.settle(k, tokens=60, cost=None)
    await lim.admit(k)
    await lim.settle(k, tokens=60, cost=None)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k)
    assert "tokens per minute" in err.value.message


async def test_budget(counters: object, prefix: str) -> None:
    clock = Clock()
    lim = limiter(counters, clock, prefix, spent=0.5)  # 0.5 already recorded this month
    k = key(budget_usd=1.0, budget_period="month")
    await lim.admit(k)
    await lim.settle(k, tokens=10, cost=0.4)
    await lim.admit(k)
    await lim.settle(k, tokens=10, cost=0.2)
    with pytest.raises(GatewayError) as err:
        await lim.admit(k)
    assert err.value.status == 429
    assert err.value.code == "budget_exceeded"
    assert "lg_abcdefghi" in err.value.message


async def test_daily_budget_renews_the_next_day(counters: object, prefix: str) -> None:
    clock = Clock()
    lim = limiter(counters, clock, prefix)
    k = key(budget_usd=0.01, budget_period="day")
    await lim.admit(k)
    await lim.settle(k, tokens=1, cost=0.02)
    with pytest.raises(GatewayError):
        await lim.admit(k)
    clock.now += 86_400
    await lim.admit(k)


async def test_keys_without_limits_cost_nothing(counters: object, prefix: str) -> None:
    lim = limiter(counters, Clock(), prefix)
    for _ in range(100):
        await lim.admit(key())


async def test_two_limiters_on_one_redis_share_counts(redis_url: str, redis_prefix: str) -> None:
    """Two replicas (two clients, two limiters) see one RPM and one budget."""
    from redis.asyncio import Redis

    a, b = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        clock = Clock()
        la, lb = limiter(RedisCounters(a), clock, redis_prefix), limiter(RedisCounters(b), clock, redis_prefix)
        k = key(rpm=4, budget_usd=1.0)
        await la.admit(k)
        await lb.admit(k)
        await la.admit(k)
        await lb.admit(k)
        with pytest.raises(GatewayError):
            await la.admit(k)
        with pytest.raises(GatewayError):
            await lb.admit(k)
        clock.now += 120
        await la.settle(k, tokens=1, cost=1.5)
        with pytest.raises(GatewayError) as err:
            await lb.admit(k)
        assert err.value.code == "budget_exceeded"
    finally:
        names = [n async for n in a.scan_iter(match=redis_prefix + "*")]
        if names:
            await a.delete(*names)
        await a.aclose()
        await b.aclose()


def test_period_start() -> None:
    assert period_start("day", T0) == "2026-09-21"
    assert period_start("month", T0) == "2026-09-01"
    assert period_start("total", T0) is None

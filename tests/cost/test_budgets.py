from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from legato.cost import (
    Budget,
    BudgetGuard,
    BudgetStore,
    CostEstimator,
    MemoryBudgetStore,
    RedisBudgetStore,
)
from legato.errors import BadRequest, BudgetBusy, BudgetExceeded, ConfigError, LimitsUnavailable, ServerError
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatChunk, ChatRequest, EmbedRequest

from ._doubles import PricedModel, ask

DAY = 86_400.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BudgetStore]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    redis_url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis_store = RedisBudgetStore(redis_url, prefix=prefix)
    yield redis_store
    keys = [k async for k in redis_store.client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_store.client.delete(*keys)
    await redis_store.aclose()


def per_call(model: PricedModel) -> float:
    estimate = CostEstimator().chat(ask(), model).usd
    assert estimate is not None
    return estimate


async def test_reserve_settle_and_state(store: BudgetStore) -> None:
    budget = Budget(1.0, "key:abc")
    held = await store.reserve(budget, 0.4)  # with others possibly in flight, it holds twice its estimate
    state = await store.state(budget)
    assert (state.spent, state.reserved) == (0.0, 0.8)
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(budget, 0.7, wait_s=0)  # would fit only once the first call settles
    assert info.value.scope == "key:abc"
    assert info.value.limit == 1.0
    assert info.value.spent == pytest.approx(0.8)
    assert info.value.needed == 0.7
    await held.settle(0.25)
    await held.settle(5.0)  # settling twice is a no-op
    state = await store.state(budget)
    assert (state.spent, state.reserved) == (0.25, 0.0)
    assert state.remaining == pytest.approx(0.75)
    alone = await store.reserve(budget, 0.7)  # nothing else in flight: admitted alone, holding its estimate
    assert (await store.state(budget)).reserved == pytest.approx(0.7)
    await alone.release()
    await store.charge(budget, 0.5)
    assert (await store.state(budget)).spent == pytest.approx(0.75)
    with pytest.raises(BudgetExceeded):
        await store.reserve(budget, 0.3)  # exhausted: refused at once, without waiting


async def test_a_caller_waits_for_calls_in_flight_instead_of_failing(store: BudgetStore) -> None:
    budget = Budget(1.0, "key:wait")
    first = await store.reserve(budget, 0.4)
    admitted: list[float] = []

    async def second() -> None:
        reservation = await store.reserve(budget, 0.5)
        admitted.append((await store.state(budget)).spent)
        await reservation.settle(0.5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert admitted == []  # 0.8 is held by the first call
        await first.settle(0.4)
    assert admitted == [0.4]
    assert (await store.state(budget)).spent == pytest.approx(0.9)


async def test_many_small_charges_add_up_exactly(store: BudgetStore) -> None:
    budget = Budget(1.0, "pipeline:tiny")
    for _ in range(1000):
        await store.charge(budget, 0.0001)
    assert (await store.state(budget)).spent == 0.1


async def test_a_reservation_lapses_when_its_holder_dies(store: BudgetStore) -> None:
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    store.lease_s = 30
    budget = Budget(1.0, "key:crashy")
    await store.reserve(budget, 0.9)  # never settled: its process "died"
    with pytest.raises(BudgetExceeded):
        await store.reserve(budget, 0.5, wait_s=0)
    now[0] += 31
    await (await store.reserve(budget, 0.5)).settle(0.5)
    assert (await store.state(budget)).spent == 0.5


async def test_daily_budgets_restart_at_midnight_utc(store: BudgetStore) -> None:
    now = [20_000 * DAY + DAY - 10]  # 23:59:50 UTC
    store.clock = lambda: now[0]
    budget = Budget(1.0, "key:k", period="day")
    await store.charge(budget, 1.0)
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(budget, 0.1)
    assert info.value.scope.startswith("key:k@")
    now[0] += 20  # the next day
    await store.reserve(budget, 0.1)
    assert (await store.state(Budget(5.0, "day"))).key.startswith("day@")


async def test_monthly_budgets_restart_on_the_first(store: BudgetStore) -> None:
    import datetime as dt

    now = [dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC).timestamp()]
    store.clock = lambda: now[0]
    budget = Budget(1.0, "key:m", period="month")
    await store.charge(budget, 1.0)
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(budget, 0.1)
    assert info.value.scope == "key:m@2026-12"
    now[0] = dt.datetime(2027, 1, 1, 0, 0, 1, tzinfo=dt.UTC).timestamp()
    await store.reserve(budget, 0.1)
    assert (await store.state(budget)).key == "key:m@2027-01"
    assert budget.expires_after(now[0]) == pytest.approx(31 * DAY - 1 + DAY)


@pytest.mark.redis
async def test_replicas_share_one_budget_through_redis(redis_url: str, redis_prefix: str) -> None:
    replicas = [RedisBudgetStore(redis_url, prefix=redis_prefix) for _ in range(2)]
    budget = Budget(1.0, "key:shared")
    try:
        await replicas[0].charge(budget, 0.8)
        with pytest.raises(BudgetExceeded):
            await replicas[1].reserve(budget, 0.3)
        assert (await replicas[1].state(budget)).spent == pytest.approx(0.8)
    finally:
        for replica in replicas:
            await replica.aclose()


def test_budget_validation_and_run_scope() -> None:
    with pytest.raises(ValueError, match="limit_usd"):
        Budget(-1)
    with pytest.raises(ValueError, match="scope"):
        Budget(1, "two words")
    with pytest.raises(ValueError, match="period"):
        Budget(1, "key:k", period="week")  # type: ignore[arg-type]
    budget = Budget(1.0)
    assert budget.key(0.0, run="r1") == "run:r1"
    run_ledger = Ledger("run-42")
    with use_ledger(run_ledger.child("step").child("attempt")):
        assert budget.key(0.0) == "run:run-42"


async def test_guard_stops_calls_once_the_budget_is_spent(store: BudgetStore) -> None:
    model = PricedModel()
    cost = per_call(model)
    guard = BudgetGuard(model, [Budget(cost * 3.5, "pipeline:p")], store=store)
    for _ in range(3):
        await guard.chat(ask())
    with pytest.raises(BudgetExceeded):
        await guard.chat(ask())
    assert model.calls == 3
    assert (await store.state(Budget(1, "pipeline:p"))).spent == pytest.approx(3 * cost)


async def test_guard_charges_the_real_cost_not_the_estimate(store: BudgetStore) -> None:
    model = PricedModel(output_tokens=10)  # max_tokens is 50: the real call is cheaper than its estimate
    guard = BudgetGuard(model, [Budget(1.0, "key:k")], store=store)
    ledger = Ledger("run")
    with use_ledger(ledger):
        response = await guard.chat(ask())
    state = await store.state(Budget(1.0, "key:k"))
    assert state.reserved == 0
    assert state.spent == pytest.approx(response.cost)
    assert state.spent == pytest.approx(ledger.cost)
    assert state.spent < per_call(model)


async def test_guard_counts_streams_and_embeddings(store: BudgetStore) -> None:
    model = PricedModel()
    budget = Budget(1.0, "key:s")
    guard = BudgetGuard(model, [budget], store=store)
    chunks = [c async for c in guard.stream(ask())]
    streamed = chunks[-1].cost
    assert streamed is not None
    assert streamed > 0
    embedded = (await guard.embed(EmbedRequest(inputs=["some text to embed"]))).cost
    assert embedded is not None
    state = await store.state(budget)
    assert state.spent == pytest.approx(streamed + embedded)
    assert state.reserved == 0


async def test_a_failed_call_releases_its_reservation(store: BudgetStore) -> None:
    model = PricedModel(fail=True)
    budget = Budget(1.0, "key:f")
    guard = BudgetGuard(model, [budget], store=store)
    with pytest.raises(ServerError):
        await guard.chat(ask())
    state = await store.state(budget)
    assert (state.spent, state.reserved) == (0.0, 0.0)


async def test_every_budget_must_accept_a_call() -> None:
    store = MemoryBudgetStore()
    model = PricedModel()
    wide, narrow = Budget(1.0, "day"), Budget(per_call(model) / 2, "key:small")
    guard = BudgetGuard(model, [wide, narrow], store=store)
    with pytest.raises(BudgetExceeded) as info:
        await guard.chat(ask())
    assert info.value.scope == "key:small"
    assert (await store.state(wide)).reserved == 0  # the first reservation was given back
    assert model.calls == 0


async def test_downgrade_to_a_cheaper_model() -> None:
    from legato.providers import Price

    expensive = PricedModel("big", price=Price(input=1000.0, output=1000.0))
    cheap = PricedModel("small", price=Price(input=1.0, output=1.0))
    limit = per_call(cheap) * 2
    guard = BudgetGuard(expensive, [Budget(limit, "run")], downgrade=cheap)
    response = await guard.chat(ask())
    assert response.degraded is True
    assert response.model == "small"
    assert (expensive.calls, cheap.calls) == (0, 1)
    await guard.chat(ask())
    with pytest.raises(BudgetExceeded):
        await guard.chat(ask())  # not even the cheaper model fits any more


async def test_unpriced_models_are_rejected_unless_allowed() -> None:
    model = PricedModel("mystery-model")
    model.price = None
    with pytest.raises(ConfigError, match="no price known for testprov 'mystery-model'"):
        await BudgetGuard(model, [Budget(1.0)]).chat(ask())
    assert model.calls == 0
    assert (await BudgetGuard(model, [Budget(1.0)], unpriced="allow").chat(ask())).text == "ok"


@pytest.mark.parametrize(
    ("extra_input", "max_tokens", "output_tokens"),
    [
        (0, 50, 50),  # the estimate is exact
        (5, 50, 50),  # real input is 60% above the estimate
        (0, None, 400),  # no max_tokens: real output is 1.5x the assumed 256 tokens
    ],
)
async def test_overshoot_is_at_most_one_call_with_50_concurrent_callers(
    store: BudgetStore, extra_input: int, max_tokens: int | None, output_tokens: int
) -> None:
    """50 callers race twice for a budget that fits about a dozen calls."""
    gate = anyio.Event()
    model = PricedModel(output_tokens=output_tokens, extra_input=extra_input, gate=gate)
    budget = Budget(0.1, "pipeline:race")
    guard = BudgetGuard(model, [budget], store=store)
    refused = 0

    async def caller() -> None:
        nonlocal refused
        try:
            await guard.chat(ask(max_tokens=max_tokens))
        except BudgetExceeded:
            refused += 1

    for _wave in range(2):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        gate = model.gate = anyio.Event()
    state = await store.state(budget)
    assert model.price is not None
    one_call = model.price.cost(model.usage(ask(max_tokens=max_tokens)))
    assert state.reserved == 0
    assert state.spent <= budget.limit_usd + one_call
    assert model.calls + refused == 100
    assert model.calls >= int(budget.limit_usd / one_call) - 1  # the budget is used, not wasted


async def test_a_stream_refused_at_once_releases_its_reservation(store: BudgetStore) -> None:
    class NoStreams(PricedModel):
        def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
            raise BadRequest("this model does not stream", provider=self.provider)

    budget = Budget(1.0, "key:nostream")
    guard = BudgetGuard(NoStreams(), [budget], store=store)
    with pytest.raises(BadRequest):
        async for _ in guard.stream(ask()):
            pass
    state = await store.state(budget)
    assert (state.spent, state.reserved) == (0.0, 0.0)


async def test_memory_store_forgets_periods_long_over() -> None:
    now = [20_000 * DAY]
    store = MemoryBudgetStore(clock=lambda: now[0])
    for day in range(5):
        now[0] = (20_000 + day) * DAY + 60
        await store.charge(Budget(1.0, "day"), 0.5)
    assert len(store._spent) <= 3  # today's, yesterday's (kept a day past its end) and maybe one more
    assert (await store.state(Budget(1.0, "day"))).spent == 0.5


async def test_a_free_call_settles(store: BudgetStore) -> None:
    """Holding and releasing $0 (an unpriced call allowed through) leaves nothing behind."""
    budget = Budget(1.0, "label:free")
    reservation = await store.reserve(budget, 0.0)
    await reservation.settle(0.0)
    state = await store.state(budget)
    assert (state.spent, state.reserved) == (0.0, 0.0)


async def test_last_alone_admits_a_call_bigger_than_what_is_left_only_by_itself(store: BudgetStore) -> None:
    budget = Budget(1.0, "label:last")
    await store.charge(budget, 0.9)
    last = await store.reserve(budget, 0.5, margin=1.0, wait_s=0, last_alone=True)
    with pytest.raises(BudgetBusy):  # money is left, but held by the call in flight
        await store.reserve(budget, 0.01, margin=1.0, wait_s=0, last_alone=True)
    await last.settle(0.2)
    with pytest.raises(BudgetExceeded) as err:  # 1.1 spent: at most one call over
        await store.reserve(budget, 0.01, margin=1.0, wait_s=0, last_alone=True)
    assert not isinstance(err.value, BudgetBusy)


async def test_an_unseen_budget_starts_from_its_seed(store: BudgetStore) -> None:
    budget = Budget(1.0, "label:seeded")
    seeded: list[int] = []

    async def seed() -> float:
        seeded.append(1)
        return 0.75

    await (await store.reserve(budget, 0.2, seed=seed)).settle(0.2)
    await (await store.reserve(budget, 0.01, seed=seed)).settle(0.01)
    assert len(seeded) == 1
    assert round((await store.state(budget)).spent, 6) == 0.96


def unreachable_redis() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there once the socket is closed


async def test_an_unreachable_redis_is_a_legato_error_in_pipelines() -> None:
    store = RedisBudgetStore(unreachable_redis(), timeout_s=0.5)
    model = PricedModel()
    guard = BudgetGuard(model, [Budget(1.0, "day")], store=store)
    try:
        with pytest.raises(LimitsUnavailable) as err:
            await guard.chat(ask())
        assert err.value.retryable
        assert model.calls == 0  # fail_closed: nothing was sent
    finally:
        await store.aclose()


async def test_fail_open_lets_pipeline_calls_through_uncounted() -> None:
    store = RedisBudgetStore(unreachable_redis(), timeout_s=0.5, on_unavailable="fail_open")
    model = PricedModel()
    guard = BudgetGuard(model, [Budget(1.0, "day")], store=store)
    try:
        response = await guard.chat(ask())
        assert response.message.content == "ok"
        assert model.calls == 1
    finally:
        await store.aclose()

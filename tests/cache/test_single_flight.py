from __future__ import annotations

import anyio
import pytest

from legato.cache import ResponseCache, SingleFlight
from legato.errors import ServerError
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatResponse

from ._doubles import PRICE, CountingModel, ask


async def test_100_identical_concurrent_requests_make_one_upstream_call() -> None:
    gate = anyio.Event()
    upstream = CountingModel(gate=gate)
    cache = ResponseCache(upstream)
    answers: list[ChatResponse] = []
    ledger = Ledger("run")

    async def one() -> None:
        answers.append(await cache.chat(ask("same question")))

    with use_ledger(ledger):
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert upstream.chat_calls == 1
    assert len(answers) == 100
    assert {a.text for a in answers} == {"echo: same question"}
    assert sum(not a.cached for a in answers) == 1
    assert cache.stats.shared == 99
    # one paid call, 99 free ones that each saved its price
    assert ledger.calls == 100
    assert ledger.cost == pytest.approx(PRICE)
    assert ledger.saved == pytest.approx(99 * PRICE)


async def test_identical_concurrent_streams_share_one_upstream_stream() -> None:
    gate = anyio.Event()
    upstream = CountingModel(gate=gate)
    cache = ResponseCache(upstream)
    texts: list[str] = []

    async def one() -> None:
        texts.append("".join([c.text async for c in cache.stream(ask("a b c"))]))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert upstream.stream_calls == 1
    assert texts == ["echo: a b c"] * 20


async def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    gate = anyio.Event()
    upstream = CountingModel(gate=gate, fail=True)
    cache = ResponseCache(upstream)
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await cache.chat(ask("q"))
        except ServerError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert upstream.chat_calls == 1
    assert len(errors) == 10
    upstream.fail = False
    assert (await cache.chat(ask("q"))).cached is False
    assert upstream.chat_calls == 2


async def test_a_cancelled_follower_does_not_disturb_the_others() -> None:
    gate = anyio.Event()
    upstream = CountingModel(gate=gate)
    cache = ResponseCache(upstream)
    done: list[str] = []
    follower = anyio.CancelScope()

    async def one(scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            done.append((await cache.chat(ask("q"))).text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await upstream.entered.wait()
        tg.start_soon(one, follower)
        tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        follower.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert done == ["echo: q", "echo: q"]
    assert upstream.chat_calls == 1


async def test_a_cancelled_leader_hands_over_to_a_waiter() -> None:
    gate = anyio.Event()
    upstream = CountingModel(gate=gate)
    cache = ResponseCache(upstream)
    done: list[str] = []
    leader = anyio.CancelScope()

    async def one(scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            done.append((await cache.chat(ask("q"))).text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, leader)
        await upstream.entered.wait()
        for _ in range(5):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        leader.cancel()  # the upstream call in flight is abandoned with its caller
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert done == ["echo: q"] * 5
    assert upstream.chat_calls == 2  # the new leader's own call


async def test_single_flight_primitive() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = anyio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    results: list[int] = []

    async def one(key: str) -> None:
        results.append(await flights.do(key, work))

    async with anyio.create_task_group() as tg:
        for key in ("a", "a", "a", "b"):
            tg.start_soon(one, key)
        await anyio.wait_all_tasks_blocked()
        assert len(flights) == 2
        gate.set()
    assert calls == 2
    assert results == [42] * 4
    assert len(flights) == 0  # nothing is remembered once a flight lands
    assert await flights.do("a", work) == 42
    assert calls == 3


async def test_a_stream_leader_leaving_early_hands_the_stream_to_a_waiter() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    leader_has_chunk = anyio.Event()
    leader_may_leave = anyio.Event()
    follower_text: list[str] = []

    async def leader() -> None:
        stream = cache.stream(ask("a b c"))
        async for _ in stream:
            leader_has_chunk.set()
            await leader_may_leave.wait()
            break
        await stream.aclose()  # type: ignore[attr-defined]

    async def follower() -> None:
        follower_text.append("".join([c.text async for c in cache.stream(ask("a b c"))]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await leader_has_chunk.wait()
        tg.start_soon(follower)
        await anyio.wait_all_tasks_blocked()
        assert upstream.stream_calls == 1  # the follower waits for the leader's stream
        leader_may_leave.set()
    assert follower_text == ["echo: a b c"]
    assert upstream.stream_calls == 2  # the follower streamed for itself
    assert cache.stats.stored == 1

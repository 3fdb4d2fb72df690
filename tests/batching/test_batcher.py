from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.batching import Batcher

LONG_WAIT_MS = 60_000.0  # batches in these tests fire because they are full, never on the timer


class Recorder:
    """A batch function that records every batch it was called with."""

    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.started = anyio.Event()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def gather(batcher: Batcher[int, int], items: Sequence[int]) -> dict[int, int | BaseException]:
    results: dict[int, int | BaseException] = {}

    async def one(i: int) -> None:
        try:
            results[i] = await batcher(i)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in items:
            tg.start_soon(one, i)
    return results


async def test_lazy_mode_collects_concurrent_calls_into_one_batch() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_batch=8, max_wait_ms=LONG_WAIT_MS)
    results = await gather(batcher, range(8))
    assert fn.batches == [list(range(8))]
    assert results == {i: i * 10 for i in range(8)}


async def test_owned_worker_collects_and_drains_on_exit() -> None:
    fn = Recorder()
    results: dict[int, int] = {}
    async with Batcher(fn, max_batch=4, max_wait_ms=LONG_WAIT_MS) as batcher:

        async def one(i: int) -> None:
            results[i] = await batcher.submit(i)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
            await anyio.wait_all_tasks_blocked()
            # two full batches went out; the last two items wait for the timer or the close
            assert [len(b) for b in fn.batches] == [4, 4]
            await batcher.aclose()
    assert sorted(len(b) for b in fn.batches) == [2, 4, 4]
    assert [i for b in fn.batches for i in b] == list(range(10))  # submission order is kept
    assert results == {i: i * 10 for i in range(10)}


async def test_timer_sends_a_partial_batch() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_batch=64, max_wait_ms=1)
    results = await gather(batcher, range(3))
    assert results == {0: 0, 1: 10, 2: 20}
    assert sum(len(b) for b in fn.batches) == 3


async def test_per_item_errors_reach_only_their_caller() -> None:
    batcher = Batcher(Recorder(), max_batch=4, max_wait_ms=LONG_WAIT_MS)
    results = await gather(batcher, [1, -2, 3, -4])
    assert results[1] == 10
    assert results[3] == 30
    assert isinstance(results[-2], ValueError)
    assert str(results[-2]) == "bad -2"
    assert str(results[-4]) == "bad -4"


async def test_a_failing_batch_fails_every_caller_of_that_batch() -> None:
    calls = 0

    async def broken(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        raise ConnectionError("model server went away")

    batcher = Batcher(broken, max_batch=5, max_wait_ms=LONG_WAIT_MS)
    results = await gather(batcher, range(5))
    assert calls == 1
    assert all(isinstance(r, ConnectionError) for r in results.values())


async def test_wrong_result_count_is_a_clear_error_for_everyone() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = Batcher(short, max_batch=3, max_wait_ms=LONG_WAIT_MS, name="short")
    results = await gather(batcher, range(3))
    for r in results.values():
        assert isinstance(r, RuntimeError)
        assert "returned 2 results for 3 items" in str(r)
        assert "'short'" in str(r)


async def test_cancelled_caller_item_is_dropped_and_others_unaffected() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_batch=3, max_wait_ms=LONG_WAIT_MS)
    results: dict[int, int] = {}
    doomed = anyio.CancelScope()

    async def one(i: int, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            results[i] = await batcher(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, doomed)
        await anyio.wait_all_tasks_blocked()  # item 0 waits for the batch to fill
        doomed.cancel()
        await anyio.wait_all_tasks_blocked()
        assert batcher.queued == 0
        for i in (1, 2, 3):
            tg.start_soon(one, i)
    assert results == {1: 10, 2: 20, 3: 30}
    assert fn.batches == [[1, 2, 3]]


async def test_cancelled_driver_hands_its_batch_to_the_other_callers() -> None:
    gate = anyio.Event()
    fn = Recorder(gate)
    batcher = Batcher(fn, max_batch=3, max_wait_ms=LONG_WAIT_MS)
    results: dict[int, int] = {}
    driver_scope = anyio.CancelScope()

    async def driver() -> None:
        with driver_scope:
            results[0] = await batcher(0)

    async def other(i: int) -> None:
        results[i] = await batcher(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(driver)
        await anyio.wait_all_tasks_blocked()  # the first caller became the driver
        tg.start_soon(other, 1)
        tg.start_soon(other, 2)
        await fn.started.wait()  # the driver runs fn([0, 1, 2]) and is stuck on the gate
        driver_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert 0 not in results
    assert results == {1: 10, 2: 20}
    assert fn.batches[0] == [0, 1, 2]
    assert fn.batches[-1] == [1, 2]  # re-run by a new driver without the cancelled item


async def test_backpressure_bounds_the_queue() -> None:
    gate = anyio.Event()
    fn = Recorder(gate)
    batcher = Batcher(fn, max_batch=1, max_wait_ms=0, max_queue=2)
    peak = 0

    async def one(i: int) -> None:
        await batcher(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
        await anyio.wait_all_tasks_blocked()
        peak = max(peak, batcher.queued)
        assert batcher.queued == 2  # one item in flight, two queued, three callers held back
        gate.set()
    assert peak == 2
    assert sorted(i for b in fn.batches for i in b) == list(range(6))


async def test_closed_batcher_refuses_new_items() -> None:
    batcher = Batcher(Recorder(), max_batch=2)
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher(1)


async def test_exception_in_the_block_cancels_the_worker() -> None:
    gate = anyio.Event()
    fn = Recorder(gate)

    async def body() -> None:
        async with Batcher(fn, max_batch=1, max_wait_ms=0) as batcher:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(batcher, 5)
                    await fn.started.wait()
                    scope.cancel()
            raise KeyError("boom")

    with pytest.raises(KeyError):  # not wrapped in an exception group
        await body()
    assert fn.batches == [[5]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"max_queue": 0}, "max_queue"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batcher(Recorder(), **kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(min_value=-50, max_value=50), min_size=1, max_size=40),
    max_batch=st.integers(min_value=1, max_value=16),
    owned=st.booleans(),
)
def test_every_caller_gets_its_own_outcome(items: list[int], max_batch: int, owned: bool) -> None:
    """Whatever the batch size and mode, results and per-item errors reach the right caller."""

    async def main() -> tuple[dict[int, int | str], list[list[int]]]:
        fn = Recorder()
        outcomes: dict[int, int | str] = {}

        async def one(index: int, batcher: Batcher[int, int]) -> None:
            try:
                outcomes[index] = await batcher(items[index])
            except ValueError as exc:
                outcomes[index] = str(exc)

        async def run(batcher: Batcher[int, int]) -> None:
            async with anyio.create_task_group() as tg:
                for index in range(len(items)):
                    tg.start_soon(one, index, batcher)

        if owned:
            async with Batcher(fn, max_batch=max_batch, max_wait_ms=1) as batcher:
                await run(batcher)
        else:
            await run(Batcher(fn, max_batch=max_batch, max_wait_ms=1))
        return outcomes, fn.batches

    outcomes, batches = anyio.run(main)
    assert outcomes == {i: (f"bad {v}" if v < 0 else v * 10) for i, v in enumerate(items)}
    assert all(1 <= len(b) <= max_batch for b in batches)
    assert sorted(v for b in batches for v in b) == sorted(items)

"""Queues in the store: enqueue, claim order, global concurrency, fairness, cancel, requeue."""

from __future__ import annotations

import uuid

import anyio
import pytest

from legato.config import LegatoConfig
from legato.errors import ConfigError, IdempotencyConflict
from legato.store import (
    NewRun,
    QueueSettings,
    QueuesSection,
    RateLimit,
    RunStore,
    StoredStatus,
    claim_run,
    queue_stats,
    requeue,
    worker_stats,
)
from legato.store._queue import forget_worker, renew_worker

from .conftest import FakeClock


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session's tests


async def _enqueue(store: RunStore, queue: str, n: int, *, tenant: str = "", priority: int = 0) -> list[str]:
    ids = []
    for i in range(n):
        record, created = await store.create_run(
            NewRun(pipeline="p", version_hash="v", inputs={"i": i}, tenant=tenant, queue=queue, priority=priority)
        )
        assert created
        assert record.status is StoredStatus.QUEUED
        assert record.lease_owner is None
        ids.append(record.id)
        store.clock.advance(0.001)  # type: ignore[attr-defined]  # the FakeClock: creation order is time order
    return ids


async def test_claims_oldest_first_once_each(store: RunStore) -> None:
    queue = _queue()
    ids = await _enqueue(store, queue, 3)
    claimed = [await claim_run(store, queue, f"w{i}") for i in range(4)]
    assert [c.id if c else None for c in claimed] == [*ids, None]
    first = await store.get_run(ids[0])
    assert first.status is StoredStatus.RUNNING
    assert first.lease_owner == "w0"
    assert first.started_at is not None
    assert [e.type for e in await store.events(ids[0])] == ["RunClaimed"]


async def test_concurrent_claims_never_take_one_run_twice(store: RunStore) -> None:
    queue = _queue()
    ids = await _enqueue(store, queue, 20)
    taken: list[str] = []

    async def claimer(name: str) -> None:
        while (record := await claim_run(store, queue, name)) is not None:
            taken.append(record.id)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(claimer, f"w{i}")
    assert sorted(taken) == sorted(ids)


async def test_global_concurrency_is_part_of_the_claim(store: RunStore) -> None:
    queue = _queue()
    ids = await _enqueue(store, queue, 5)
    got = [await claim_run(store, queue, f"w{i}", concurrency=2) for i in range(3)]
    assert [g.id if g else None for g in got] == [ids[0], ids[1], None]
    await store.finish_run(ids[0], "w0", status="succeeded", outputs={})
    again = await claim_run(store, queue, "w9", concurrency=2)
    assert again is not None
    assert again.id == ids[2]
    [stats] = [s for s in await queue_stats(store) if s.queue == queue]
    assert (stats.queued, stats.running) == (2, 2)
    with pytest.raises(ValueError, match="concurrency"):
        await claim_run(store, queue, "w", concurrency=0)


async def test_fairness_prefers_the_tenant_with_fewer_runs_in_flight(store: RunStore) -> None:
    queue = _queue()
    busy = await _enqueue(store, queue, 5, tenant="busy")
    quiet = await _enqueue(store, queue, 1, tenant="quiet")
    first = await claim_run(store, queue, "w1")
    second = await claim_run(store, queue, "w2")
    assert first is not None
    assert first.id == busy[0]
    assert second is not None
    assert second.id == quiet[0]


async def test_priority_orders_the_claims_within_fairness(store: RunStore) -> None:
    queue = _queue()
    low = await _enqueue(store, queue, 2, tenant="a")
    [urgent] = await _enqueue(store, queue, 1, tenant="a", priority=5)
    [middle] = await _enqueue(store, queue, 1, tenant="a", priority=2)
    first = await claim_run(store, queue, "w")
    assert first is not None
    assert first.id == urgent  # one tenant: highest priority first
    [other] = await _enqueue(store, queue, 1, tenant="b")
    second = await claim_run(store, queue, "w")
    assert second is not None
    assert second.id == other  # b has nothing in flight, a has one: fairness before a's priority
    rest = [await claim_run(store, queue, "w") for _ in range(3)]
    assert [r.id if r else None for r in rest] == [middle, *low]


async def test_a_rate_limit_counts_claims_in_a_sliding_window(store: RunStore, clock: FakeClock) -> None:
    queue = _queue()
    ids = await _enqueue(store, queue, 5)
    rate = RateLimit.parse("2/10s")
    got = [await claim_run(store, queue, "w", rate=rate) for _ in range(3)]
    assert [g.id if g else None for g in got] == [ids[0], ids[1], None]
    await store.finish_run(ids[0], "w", status="succeeded", outputs={})
    assert await claim_run(store, queue, "w", rate=rate) is None  # finished runs still count in their window
    clock.advance(10)
    later = [await claim_run(store, queue, "w", rate=rate) for _ in range(3)]
    assert [g.id if g else None for g in later] == [ids[2], ids[3], None]


@pytest.mark.parametrize(
    ("text", "limit"), [("10/s", RateLimit(10, 1.0)), ("100/m", RateLimit(100, 60.0)), ("5/10s", RateLimit(5, 10.0))]
)
def test_rates_parse(text: str, limit: RateLimit) -> None:
    assert RateLimit.parse(text) == limit
    assert QueueSettings(rate=text).rate_limit == limit


@pytest.mark.parametrize("text", ["10", "0/s", "10/0s", "ten/s", "10/d"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="a rate is RUNS/PERIOD"):
        LegatoConfig({"queues": {"q": {"rate": text}}}).section("queues", QueuesSection)


async def test_worker_stats_count_busy_slots(store: RunStore, clock: FakeClock) -> None:
    queue = _queue()
    owner = f"worker-{queue}"
    await renew_worker(store, owner, [queue], 4)
    await _enqueue(store, queue, 3)
    for _ in range(3):
        assert await claim_run(store, queue, owner) is not None
    [mine] = [w for w in await worker_stats(store) if w.owner == owner]
    assert (mine.queues, mine.slots, mine.busy, mine.utilisation) == ([queue], 4, 3, 0.75)
    clock.advance(31)
    assert owner not in [w.owner for w in await worker_stats(store)]  # not renewed: gone
    await renew_worker(store, owner, [queue], 4)
    await forget_worker(store, owner)
    assert owner not in [w.owner for w in await worker_stats(store)]


async def test_a_cancelled_queued_run_never_starts(store: RunStore) -> None:
    queue = _queue()
    [run_id] = await _enqueue(store, queue, 1)
    cancelled = await store.request_cancel(run_id, by="ops")
    assert cancelled.status is StoredStatus.CANCELLED
    assert cancelled.cancelled_by == "ops"
    assert await claim_run(store, queue, "w") is None
    assert not [s for s in await queue_stats(store) if s.queue == queue]


async def test_idempotency_and_prefixes_for_queued_runs(store: RunStore) -> None:
    queue = _queue()
    key = uuid.uuid4().hex
    first, created = await store.create_run(
        NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key, queue=queue)
    )
    again, created_again = await store.create_run(
        NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key, queue=queue)
    )
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.create_run(
            NewRun(pipeline="p", version_hash="v", inputs={"a": 2}, idempotency_key=key, queue=queue)
        )
    assert (await store.get_run(first.id[:20])).id == first.id


async def test_requeue_puts_a_stopped_run_back(store: RunStore) -> None:
    queue = _queue()
    [run_id] = await _enqueue(store, queue, 1)
    assert await claim_run(store, queue, "w1") is not None
    assert not await requeue(store, run_id, "someone-else")  # not theirs
    await store.release(run_id, "w1")
    assert await requeue(store, run_id, "w1")
    back = await store.get_run(run_id)
    assert back.status is StoredStatus.QUEUED
    assert back.lease_owner is None
    again = await claim_run(store, queue, "w2")
    assert again is not None
    assert again.id == run_id


async def test_a_rate_limit_holds_across_two_workers(database_url: str) -> None:
    from legato.engine import Pipeline
    from legato.store import Worker, pipeline_version

    p = Pipeline("tick")

    @p.step
    async def noop() -> int:
        return 1

    queue = _queue()
    async with RunStore(database_url) as submitter, RunStore(database_url) as a, RunStore(database_url) as b:
        ids = []
        for _ in range(6):
            record, _ = await submitter.create_run(
                NewRun(pipeline="tick", version_hash=pipeline_version(p), inputs={}, queue=queue)
            )
            ids.append(record.id)
        limits = {queue: QueueSettings(rate="2/s")}
        workers = [Worker(s, limits, lambda _r: p, concurrency=4, poll_s=0.05) for s in (a, b)]
        async with anyio.create_task_group() as tg:
            for w in workers:
                await tg.start(w.serve)
            with anyio.fail_after(60):
                while [s for s in await queue_stats(submitter) if s.queue == queue]:
                    await anyio.sleep(0.05)
            for w in workers:
                w.drain()
        claims = sorted([e.at for i in ids for e in await submitter.events(i) if e.type == "RunClaimed"])
        assert {(await submitter.get_run(i)).status for i in ids} == {StoredStatus.SUCCEEDED}
    assert len(claims) == 6
    assert sum(w.claimed for w in workers) == 6
    assert all(claims[k + 2] - claims[k] >= 1.0 for k in range(4))  # never 3 starts within one second

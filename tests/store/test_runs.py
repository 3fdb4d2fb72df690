"""RunStore on SQLite and PostgreSQL: runs, idempotency, leases, fencing, dead letters, prune."""

from __future__ import annotations

import uuid

import anyio
import pytest

from legato.errors import IdempotencyConflict, LeaseLost, RunNotFound, RunNotResumable, StoreError
from legato.store import CancelRequest, EventRecord, NewRun, RunStore, StepRecord

from .conftest import FakeClock


def name() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


async def test_create_get_and_list(store: RunStore) -> None:
    pipeline = name()
    record, created = await store.create_run(
        NewRun(pipeline=pipeline, version_hash="v1", inputs={"text": "hi", "n": [1, (2, 3)]}, owner="w1")
    )
    assert created
    assert record.status == "running"
    assert record.lease_owner == "w1"
    fetched = await store.get_run(record.id)
    assert fetched.inputs == {"text": "hi", "n": [1, (2, 3)]}
    assert (await store.get_run(record.id[:-4])).id == record.id  # unique prefix
    other, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v1", inputs={}))
    assert other.status == "pending"
    listed = await store.list_runs(pipeline=pipeline)
    assert [r.id for r in listed] == [other.id, record.id]
    assert [r.id for r in await store.list_runs(pipeline=pipeline, status="pending")] == [other.id]
    with pytest.raises(RunNotFound, match="no run with id 'missing'"):
        await store.get_run("missing")


async def test_same_key_same_inputs_returns_the_existing_run(store: RunStore) -> None:
    key = uuid.uuid4().hex
    first, created = await store.create_run(
        NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key)
    )
    again, created_again = await store.create_run(
        NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key)
    )
    assert created
    assert not created_again
    assert again.id == first.id
    # another tenant may use the same key for its own run
    theirs, created_theirs = await store.create_run(
        NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key, tenant="other")
    )
    assert created_theirs
    assert theirs.id != first.id


async def test_same_key_different_inputs_is_a_conflict(store: RunStore) -> None:
    key = uuid.uuid4().hex
    first, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"a": 1}, idempotency_key=key))
    with pytest.raises(IdempotencyConflict, match=f"already used by run {first.id}"):
        await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"a": 2}, idempotency_key=key))
    with pytest.raises(IdempotencyConflict):
        await store.create_run(NewRun(pipeline="other", version_hash="v", inputs={"a": 1}, idempotency_key=key))


async def test_100_concurrent_submissions_with_one_key_make_exactly_one_run(database_url: str) -> None:
    key = uuid.uuid4().hex
    pipeline = name()
    results: list[tuple[str, bool]] = []
    stores = [RunStore(database_url) for _ in range(4)]  # several connection pools, as several workers
    # Each pool may grow to 30 connections; 4 x 25 concurrent callers would pass PostgreSQL's default
    # max_connections (100) together with any other client. 48 at once still races on the key.
    connections = anyio.CapacityLimiter(48)
    for s in stores:
        await s.open()
    try:

        async def submit(i: int) -> None:
            async with connections:
                record, created = await stores[i % len(stores)].create_run(
                    NewRun(
                        pipeline=pipeline, version_hash="v", inputs={"q": "same"}, idempotency_key=key, owner=f"w{i}"
                    )
                )
            results.append((record.id, created))

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(submit, i)
        assert len(results) == 100
        assert len({run_id for run_id, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert len(await stores[0].list_runs(pipeline=pipeline)) == 1
    finally:
        for s in stores:
            await s.aclose()


async def test_checkpoints_are_fenced_by_the_lease(store: RunStore, clock: FakeClock) -> None:
    w1 = name()  # unique: a takeover is charged only when its holder held no other run
    record, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner=w1, lease_ttl=30))
    step = StepRecord(record.id, "a", "succeeded", output={"x": 1})
    await store.checkpoint(record.id, w1, attempts=[step], new_events=[EventRecord(record.id, "StepFinished", 1.0)])
    # a live lease cannot be taken by another worker...
    with pytest.raises(LeaseLost, match=f"being executed by {w1}"):
        await store.acquire(record.id, "w2")
    # ...until it expires; then w2 takes over and w1's late writes are refused
    clock.advance(31)
    taken = await store.acquire(record.id, "w2", lease_ttl=30)
    assert taken.lease_owner == "w2"
    assert taken.recoveries == 1
    with pytest.raises(LeaseLost, match="now held by w2"):
        await store.checkpoint(record.id, w1, attempts=[StepRecord(record.id, "b", "succeeded", output=2)])
    with pytest.raises(LeaseLost):
        await store.heartbeat(record.id, w1)
    assert set(await store.completed_steps(record.id)) == {"a"}
    assert [e.type for e in await store.events(record.id)] == ["StepFinished", "LeaseAcquired"]


async def test_finish_releases_and_succeeded_runs_cannot_be_resumed(store: RunStore) -> None:
    record, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner="w1"))
    await store.finish_run(record.id, "w1", status="succeeded", outputs={"r": 1}, cost=0.5)
    done = await store.get_run(record.id)
    assert done.status == "succeeded"
    assert done.outputs == {"r": 1}
    assert done.lease_owner is None
    with pytest.raises(StoreError, match="already succeeded"):
        await store.acquire(record.id, "w2")
    with pytest.raises(ValueError, match="not a terminal status"):
        await store.finish_run(record.id, "w1", status="running")


async def test_heartbeat_and_checkpoint_report_who_cancelled(store: RunStore, clock: FakeClock) -> None:
    record, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner="w1", lease_ttl=30))
    assert await store.heartbeat(record.id, "w1", lease_ttl=30) is None
    assert await store.checkpoint(record.id, "w1") is None
    requested = await store.request_cancel(record.id, by="ops@example")
    assert requested.status == "running"  # w1 is alive: it stops the run itself
    expected = CancelRequest("ops@example", clock.now)
    assert await store.heartbeat(record.id, "w1", lease_ttl=30) == expected
    assert await store.checkpoint(record.id, "w1") == expected  # read in the checkpoint's own transaction
    assert await store.cancel_request(record.id) == expected
    assert await store.wait_cancel(record.id) == expected
    # a run nobody executes is cancelled at once, and says by whom
    idle, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}))
    cancelled = await store.request_cancel(idle.id, by="ops@example")
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_by == "ops@example"
    assert cancelled.error is not None
    assert cancelled.error.startswith("cancelled by ops@example at ")
    with pytest.raises(StoreError, match="already cancelled"):
        await store.request_cancel(idle.id)
    # a cancelled run resumes only when forced; forcing clears the request
    with pytest.raises(RunNotResumable, match="is cancelled") as refused:
        await store.acquire(idle.id, "w2")
    assert refused.value.status == "cancelled"
    revived = await store.acquire(idle.id, "w2", force=True)
    assert (revived.status, revived.cancel_request) == ("running", None)


async def test_orphans_dead_letters_and_force(store: RunStore, clock: FakeClock) -> None:
    pipeline = name()
    live, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v", inputs={}, owner="w1", lease_ttl=30))
    stale, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v", inputs={}, owner="w2", lease_ttl=5))
    clock.advance(10)
    orphans = {r.id for r in await store.orphaned_runs()}
    assert stale.id in orphans
    assert live.id not in orphans
    dead = await store.dead_letter(stale.id, "poison")
    assert dead.status == "dead"
    assert [r.id for r in await store.list_runs(status="dead", pipeline=pipeline)] == [stale.id]
    with pytest.raises(StoreError, match="dead-lettered"):
        await store.acquire(stale.id, "w3")
    revived = await store.acquire(stale.id, "w3", force=True)
    assert revived.status == "running"
    assert revived.dead_reason is None


async def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(store: RunStore) -> None:
    import socket
    import subprocess
    import sys

    code = "from legato.store import new_owner_id; print(new_owner_id())"
    gone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert gone.startswith(f"{socket.gethostname()}:")
    record, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner=gone, lease_ttl=3600))
    assert record.id in {r.id for r in await store.orphaned_runs()}
    assert (await store.acquire(record.id, "me")).lease_owner == "me"
    # an owner id of an older format (host:pid:random) cannot be checked: its lease is honoured
    old, _ = await store.create_run(
        NewRun(
            pipeline=name(), version_hash="v", inputs={}, owner=f"{socket.gethostname()}:999999:abcd", lease_ttl=3600
        )
    )
    assert old.id not in {r.id for r in await store.orphaned_runs()}
    with pytest.raises(LeaseLost, match="cannot be checked from here"):
        await store.acquire(old.id, "me")


async def test_prune_deletes_old_finished_runs_only(store: RunStore, clock: FakeClock) -> None:
    pipeline = name()
    old, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v", inputs={}, owner="w"))
    await store.checkpoint(old.id, "w", attempts=[StepRecord(old.id, "a", "succeeded", output=1)])
    await store.finish_run(old.id, "w", status="failed", error="boom")
    clock.advance(31 * 86400)
    running, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v", inputs={}, owner="w"))
    recent, _ = await store.create_run(NewRun(pipeline=pipeline, version_hash="v", inputs={}, owner="w"))
    await store.finish_run(recent.id, "w", status="succeeded")
    assert await store.prune(older_than_s=30 * 86400) >= 1
    remaining = {r.id for r in await store.list_runs(pipeline=pipeline)}
    assert remaining == {running.id, recent.id}
    assert await store.steps(old.id) == []

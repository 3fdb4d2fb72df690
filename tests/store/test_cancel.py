"""Cancelling durable runs through the store (SQLite and PostgreSQL), how recovery
charges a worker's death, and who may take a lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.engine import Pipeline, RunStatus, current_step
from legato.store import (
    DurableRunner,
    NewRun,
    OwnerState,
    RecoveryAction,
    RunStore,
    new_owner_id,
    owner_state,
    pipeline_version,
    recover_expired_runs,
)
from legato.store._ids import OwnerId

from .conftest import FakeClock


def name() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


async def test_a_cancel_from_another_store_stops_the_run_long_before_its_heartbeat(database_url: str) -> None:
    p = Pipeline(name())
    started = anyio.Event()
    stopped: list[str] = []

    async def wait() -> int:
        ctx = current_step()
        assert ctx is not None
        if ctx.step == "c":
            started.set()
        try:
            await anyio.sleep(3600)
        finally:
            stopped.append(ctx.step)
        return 1

    for step in ("a", "b", "c"):
        p.add_step(wait, name=step)

    @p.step
    async def after(a: int, b: int, c: int) -> int:
        raise AssertionError("no step starts once the cancel is recorded")

    run_id = uuid.uuid4().hex
    outcome: dict[str, Any] = {}
    # The heartbeat (which also reports a cancel) is 20 minutes away: only the
    # notification (PostgreSQL) or the poll (SQLite) can stop this run.
    async with RunStore(database_url) as worker, RunStore(database_url) as other:

        async def execute() -> None:
            outcome["result"] = await DurableRunner(worker, lease_ttl=3600, reflect=None).run(p, {}, run_id=run_id)

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            await started.wait()
            await other.request_cancel(run_id, by="ops")
        record = await other.get_run(run_id)
        steps = {s.step: s.status for s in await other.steps(run_id)}
    assert outcome["result"].status is RunStatus.CANCELLED
    assert sorted(stopped) == ["a", "b", "c"]
    assert record.status == "cancelled"
    assert record.cancelled_by == "ops"
    assert record.error is not None
    assert record.error.startswith("cancelled by ops at ")
    assert steps == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}


async def test_a_step_finishing_after_the_cancel_starts_none_of_its_dependents(store: RunStore) -> None:
    p = Pipeline(name())
    started: list[str] = []

    @p.step
    async def first() -> int:
        ctx = current_step()
        assert ctx is not None
        started.append("first")
        await store.request_cancel(ctx.run_id, by="ops")  # recorded while this step runs
        return 1

    @p.step
    async def second(first: int) -> int:
        started.append("second")
        return first + 1

    result = await DurableRunner(store, lease_ttl=3600, reflect=None).run(p, {})
    assert result.status is RunStatus.CANCELLED
    assert started == ["first"]
    assert (await store.get_run(result.run_id)).cancelled_by == "ops"


def worker_id(pid: int, nonce: str = "abcd") -> str:
    """The owner id a worker process with this PID on this machine would have."""
    me = OwnerId.parse(new_owner_id())
    assert me is not None
    return str(OwnerId(me.host, pid, nonce, me.boot, me.pidns, "12345"))


async def test_a_death_is_charged_only_to_a_run_its_worker_executed_alone(store: RunStore, clock: FakeClock) -> None:
    pid = 4_000_000 + uuid.uuid4().int % 1_000_000  # PostgreSQL's database is shared by the session's tests
    busy, lonely = worker_id(pid), worker_id(pid + 1)
    shared = [
        (await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner=busy, lease_ttl=5)))[0]
        for _ in range(2)
    ]
    # a second runner in the busy worker's process (another nonce) is the same worker
    shared.append(
        (await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner=worker_id(pid, "ffff"))))[0]
    )
    alone, _ = await store.create_run(NewRun(pipeline=name(), version_hash="v", inputs={}, owner=lonely, lease_ttl=5))
    clock.advance(40)
    assert await store.sole_holders([*shared, alone]) == {alone.id}
    taken = await store.acquire(alone.id, "next-worker")
    assert taken.recoveries == 1
    assert (await store.acquire(shared[0].id, "next-worker-2")).recoveries == 0
    events = [e for e in await store.events(alone.id) if e.type == "LeaseAcquired"]
    assert events[-1].data["charged"] is True


async def test_recovery_resumes_suspects_one_at_a_time(tmp_path: Path) -> None:
    clock = FakeClock()
    async with RunStore(tmp_path / "r.db", clock=clock) as store:
        p = Pipeline(name())
        running = 0
        overlap: list[int] = []

        @p.step
        async def work(n: int) -> int:
            nonlocal running
            running += 1
            overlap.append(running)
            await anyio.sleep(0.05)
            running -= 1
            return n

        dead_worker = new_owner_id()
        for n in range(3):  # a worker died holding three runs: nobody knows which killed it
            await store.create_run(
                NewRun(
                    pipeline=p.name, version_hash=pipeline_version(p), inputs={"n": n}, owner=dead_worker, lease_ttl=5
                )
            )
        clock.advance(10)
        outcomes = await recover_expired_runs(store, {p.name: p}.get)
        assert [o.action for o in outcomes] == [RecoveryAction.RESUMED] * 3
        assert max(overlap) == 1  # one at a time
        assert {r.recoveries for r in await store.list_runs(pipeline=p.name)} == {0}  # none was charged


def test_owner_ids_name_the_process_precisely() -> None:
    mine = new_owner_id()
    parsed = OwnerId.parse(mine)
    assert parsed is not None
    assert (parsed.host, parsed.pid) == (socket.gethostname(), os.getpid())
    assert owner_state(mine) is OwnerState.ALIVE
    code = "from legato.store import new_owner_id; print(new_owner_id())"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert owner_state(finished) is OwnerState.GONE
    # this PID, but a process started at another time: the PID was reused
    reused = str(OwnerId(parsed.host, parsed.pid, "abcd", parsed.boot, parsed.pidns, "1"))
    assert owner_state(reused) is OwnerState.GONE
    for unknown in (
        str(OwnerId("another-host", 1, "abcd", parsed.boot, parsed.pidns, parsed.start)),
        str(OwnerId(parsed.host, parsed.pid, "abcd", parsed.boot, "4026530000", parsed.start)),  # another namespace
        str(OwnerId(parsed.host, parsed.pid, "abcd", "000000000000", parsed.pidns, parsed.start)),  # another boot
        f"{socket.gethostname()}:{os.getpid()}:abcd",  # written by an older legato
    ):
        assert owner_state(unknown) is OwnerState.UNKNOWN, unknown
    assert owner_state(None) is OwnerState.GONE


async def test_runs_waiting_in_one_store_are_cancelled_one_by_one(database_url: str) -> None:
    """On SQLite one waiting run polls for all; when it ends, another takes over."""
    release = anyio.Event()
    p = Pipeline(name())

    @p.step
    async def hold(n: int) -> int:
        with anyio.move_on_after(3600):
            await release.wait()
        return n

    ids = [uuid.uuid4().hex for _ in range(3)]
    results: dict[str, RunStatus] = {}
    async with RunStore(database_url) as worker, RunStore(database_url) as other:

        async def execute(i: int) -> None:
            runner = DurableRunner(worker, lease_ttl=3600, reflect=None)
            results[ids[i]] = (await runner.run(p, {"n": i}, run_id=ids[i])).status

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(execute, i)
            while len([r for r in await other.list_runs(pipeline=p.name) if r.status == "running"]) < 3:
                await anyio.sleep(0.01)
            for run_id in (ids[0], ids[2]):  # the first waiter (the SQLite poller) first
                await other.request_cancel(run_id, by="ops")
                while run_id not in results:
                    await anyio.sleep(0.01)
            release.set()
    assert results == {ids[0]: RunStatus.CANCELLED, ids[1]: RunStatus.SUCCEEDED, ids[2]: RunStatus.CANCELLED}


async def test_the_heartbeat_and_the_cancel_poll_sleep_on_the_injected_clock(sqlite_store: RunStore) -> None:
    from legato.resilience import SystemClock

    class Recording(SystemClock):
        def __init__(self) -> None:
            self.sleeps: list[float] = []

        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            await anyio.sleep(seconds if seconds < 1 else 3600)

    p = Pipeline(name())

    @p.step
    async def brief() -> int:
        await anyio.sleep(0.5)
        return 1

    clock = Recording()
    result = await DurableRunner(sqlite_store, lease_ttl=30, reflect=None, clock=clock).run(p, {})
    assert result.ok
    assert 10.0 in clock.sleeps  # the heartbeat, every lease_ttl / 3
    assert sqlite_store.cancel_poll_s in clock.sleeps  # the SQLite cancel poll


@pytest.mark.postgres
async def test_a_listener_whose_listen_fails_leaves_no_connection_open(postgres_url: str) -> None:
    """When LISTEN fails (or is cancelled: a run that ends while its cancel listener
    connects) after the connection opened, that connection is closed at once, not left
    to the garbage collector (a ResourceWarning blamed on some later test)."""
    import gc
    import sys

    from legato.store._listen import Listener, asyncpg_dsn

    dsn = asyncpg_dsn(postgres_url)
    assert dsn is not None
    ignore = lambda *_: None  # noqa: E731
    listener = Listener(dsn, "no\x00channel", ignore, ignore, ignore, what="a channel the server refuses")
    leaked: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = leaked.append
    try:
        assert not await listener.listening()  # the server refuses the channel name: the owner polls
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [str(u.exc_value) for u in leaked] == []

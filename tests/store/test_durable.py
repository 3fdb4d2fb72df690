"""DurableRunner: checkpoints before dependents, resume, takeover, cancellation, dead letters."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.engine import Pipeline, RunStatus, current_step
from legato.errors import LeaseLost, StoreError
from legato.store import DurableRunner, Journal, NewRun, RunStore, recover_expired_runs

from .conftest import FakeClock


def diamond(calls: list[str], *, fail: set[str] | None = None, name: str | None = None) -> Pipeline:
    """a -> (b, c) -> d; each step logs its call; steps in ``fail`` raise while listed there."""
    p = Pipeline(name or f"diamond-{uuid.uuid4().hex[:8]}")
    failing = fail if fail is not None else set()

    def record(step: str) -> None:
        calls.append(step)
        if step in failing:
            raise RuntimeError(f"{step} is broken")

    @p.step
    async def a(x: int) -> int:
        record("a")
        return x + 1

    @p.step
    async def b(a: int) -> int:
        record("b")
        return a * 2

    @p.step
    async def c(a: int) -> int:
        record("c")
        return a * 3

    @p.step
    async def d(b: int, c: int) -> dict[str, Any]:
        record("d")
        return {"sum": b + c, "pair": (b, c)}

    return p


async def test_each_step_is_committed_before_its_dependents_start(store: RunStore) -> None:
    p = Pipeline(f"ordered-{uuid.uuid4().hex[:8]}")
    seen: list[set[str]] = []

    @p.step
    async def first() -> int:
        return 1

    @p.step
    async def second(first: int) -> int:
        ctx = current_step()
        assert ctx is not None
        seen.append(set(await store.completed_steps(ctx.run_id)))
        return first + 1

    result = await DurableRunner(store).run(p, {})
    assert result.ok
    assert seen == [{"first"}]
    steps = await store.steps(result.run_id)
    assert [(s.step, s.status, s.output) for s in steps] == [("first", "succeeded", 1), ("second", "succeeded", 2)]
    types = [e.type for e in await store.events(result.run_id)]
    assert types[0] == "RunStarted"
    assert types[-1] == "RunFinished"
    assert types.count("StepFinished") == 2


async def test_resume_after_a_failure_reruns_only_what_did_not_finish(store: RunStore) -> None:
    calls: list[str] = []
    broken = {"c"}
    p = diamond(calls, fail=broken)
    runner = DurableRunner(store)
    failed = await runner.run(p, {"x": 1})
    assert failed.status is RunStatus.FAILED
    assert (await store.get_run(failed.run_id)).status == "failed"
    committed = set(await store.completed_steps(failed.run_id))
    assert committed == set(failed.outputs)  # every step that finished was recorded, even while cancelling
    broken.clear()  # "fix" the step
    calls.clear()
    resumed = await runner.resume(p, failed.run_id)
    assert resumed.ok
    assert resumed.run_id == failed.run_id
    assert "a" not in calls
    assert sorted(calls) == sorted({"a", "b", "c", "d"} - committed)
    assert resumed.result["d"] == {"sum": 10, "pair": (4, 6)}
    record = await store.get_run(failed.run_id)
    assert record.status == "succeeded"
    assert record.recoveries == 0  # the failed run released its lease: no worker died
    # attempt numbers continue across the resume: c failed as attempt 1 and succeeded as attempt 2
    assert [(s.attempt, s.status) for s in await store.steps(failed.run_id) if s.step == "c"] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    # the failure left an automatic reflection in the journal
    entries = await Journal(store).recent(5, pipeline=p.name)
    assert any(e.author == "auto" and "c" in e.tags and "RuntimeError" in e.body for e in entries)


async def test_the_step_idempotency_key_is_stable_across_resumes(sqlite_store: RunStore) -> None:
    keys: list[str] = []
    attempts = {"n": 0}
    p = Pipeline("keys")

    @p.step
    async def charge(amount: int) -> str:
        ctx = current_step()
        assert ctx is not None
        keys.append(ctx.idempotency_key)
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("provider went away")
        return "charged"

    runner = DurableRunner(sqlite_store)
    first = await runner.run(p, {"amount": 5})
    assert not first.ok
    second = await runner.resume(p, first.run_id)
    assert second.ok
    assert keys == [f"{first.run_id}/charge", f"{first.run_id}/charge"]


async def test_a_repeated_key_returns_the_finished_run_without_running(sqlite_store: RunStore) -> None:
    calls: list[str] = []
    p = diamond(calls)
    runner = DurableRunner(sqlite_store)
    first = await runner.run(p, {"x": 2}, idempotency_key="order-42")
    calls.clear()
    again = await runner.run(p, {"x": 2}, idempotency_key="order-42")
    assert calls == []
    assert again.run_id == first.run_id
    assert again.result == first.result
    assert again.outputs == first.outputs


async def test_resuming_a_changed_pipeline_is_refused(sqlite_store: RunStore) -> None:
    calls: list[str] = []
    name = "evolving"
    failed = await DurableRunner(sqlite_store).run(diamond(calls, fail={"d"}, name=name), {"x": 1})
    changed = Pipeline(name)

    @changed.step
    async def a(x: int) -> int:
        return x + 100

    with pytest.raises(StoreError, match=r"version .* which is now version"):
        await DurableRunner(sqlite_store).resume(changed, failed.run_id)
    result = await DurableRunner(sqlite_store).resume(changed, failed.run_id, allow_changed=True)
    assert result.ok
    assert result.outputs == {"a": 2}  # kept from the first attempt


async def test_cancel_from_the_store_stops_the_run(sqlite_store: RunStore) -> None:
    p = Pipeline("slow")
    started = anyio.Event()

    @p.step
    async def wait() -> None:
        started.set()
        await anyio.sleep(30)

    runner = DurableRunner(sqlite_store, lease_ttl=0.3)
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await runner.run(p, {}, run_id="cancel-me")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        await sqlite_store.request_cancel("cancel-me")
    assert outcome["result"].status is RunStatus.CANCELLED
    assert (await sqlite_store.get_run("cancel-me")).status == "cancelled"


async def test_a_worker_that_lost_its_lease_stops_writing(sqlite_store: RunStore) -> None:
    p = Pipeline("contested")

    @p.step
    async def one() -> int:
        return 1

    @p.step
    async def two(one: int) -> int:
        ctx = current_step()
        assert ctx is not None
        await sqlite_store.acquire(ctx.run_id, "intruder", force=True)
        return 2

    with pytest.raises(LeaseLost):
        await DurableRunner(sqlite_store, reflect=None).run(p, {}, run_id="contested-run")
    record = await sqlite_store.get_run("contested-run")
    assert record.lease_owner == "intruder"
    assert set(await sqlite_store.completed_steps("contested-run")) == {"one"}


async def test_recover_expired_runs_takes_over_and_dead_letters(tmp_path: Path) -> None:
    clock = FakeClock()
    async with RunStore(tmp_path / "r.db", clock=clock) as store:
        calls: list[str] = []
        p = diamond(calls, name="recoverable")
        # a worker on another host started a run, checkpointed `a`, and died
        crashed, _ = await store.create_run(
            NewRun(pipeline=p.name, version_hash=_version(p), inputs={"x": 1}, owner="elsewhere:1:x", lease_ttl=30)
        )
        from legato.store import StepRecord

        await store.checkpoint(
            crashed.id, "elsewhere:1:x", attempts=[StepRecord(crashed.id, "a", "succeeded", output=2)]
        )
        # a poison run that already killed its worker three times
        poison, _ = await store.create_run(
            NewRun(pipeline=p.name, version_hash=_version(p), inputs={"x": 9}, owner="elsewhere:2:y", lease_ttl=30)
        )
        for i in range(3):
            clock.advance(31)
            await store.acquire(poison.id, f"elsewhere:3:{i}", lease_ttl=30)
        clock.advance(31)

        seen: list[Any] = []
        outcomes = {o.run_id: o for o in await recover_expired_runs(store, {p.name: p}.get, subscribers=[seen.append])}
        assert outcomes[crashed.id].action == "resumed"
        finished = [e for e in seen if type(e).__name__ == "RunFinished"]
        assert [e.run_id for e in finished] == [crashed.id]  # the subscribers saw the resumed run
        result = outcomes[crashed.id].result
        assert result is not None
        assert result.ok
        assert "a" not in calls
        assert outcomes[poison.id].action == "dead_lettered"
        assert (await store.get_run(poison.id)).status == "dead"
        assert [r.id for r in await store.list_runs(status="dead")] == [poison.id]


def _version(p: Pipeline) -> str:
    from legato.store import pipeline_version

    return pipeline_version(p)


async def test_durable_runs_on_both_databases_resume_identically(store: RunStore) -> None:
    calls: list[str] = []
    broken = {"d"}
    p = diamond(calls, fail=broken)
    runner = DurableRunner(store)
    first = await runner.run(p, {"x": 4}, idempotency_key=uuid.uuid4().hex)
    broken.clear()
    calls.clear()
    resumed = await runner.resume(p, first.run_id)
    assert calls == ["d"]
    reference = await diamond([]).run({"x": 4})
    assert resumed.outputs == reference.outputs


async def test_successful_runs_with_retries_are_reflected_uneventful_ones_are_not(sqlite_store: RunStore) -> None:
    p = Pipeline("flaky")
    state = {"n": 0}

    @p.step(retries=2)
    async def fetch() -> str:
        state["n"] += 1
        if state["n"] == 1:
            raise TimeoutError("upstream slow")
        return "ok"

    quiet = Pipeline("quiet")

    @quiet.step
    async def hello() -> str:
        return "hi"

    runner = DurableRunner(sqlite_store)
    assert (await runner.run(p, {})).ok
    assert (await runner.run(quiet, {})).ok
    journal = Journal(sqlite_store)
    flaky_entries = await journal.recent(pipeline="flaky")
    assert len(flaky_entries) == 1
    assert "retries" in flaky_entries[0].tags
    assert "TimeoutError" in flaky_entries[0].body
    assert "Slowest step: 'fetch'" in flaky_entries[0].body
    assert await journal.recent(pipeline="quiet") == []


async def test_a_key_whose_run_is_executing_elsewhere_returns_it_running(sqlite_store: RunStore) -> None:
    calls: list[str] = []
    p = diamond(calls, name="busy")
    await sqlite_store.create_run(NewRun(
        pipeline=p.name, version_hash=_version(p), inputs={"x": 1}, idempotency_key="busy-1",
        owner="another-host:77:abcd", lease_ttl=600,
    ))  # fmt: skip
    result = await DurableRunner(sqlite_store).run(p, {"x": 1}, idempotency_key="busy-1")
    assert result.status is RunStatus.RUNNING
    assert result.error is not None
    assert "being executed by another-host:77:abcd" in result.error
    assert calls == []


async def test_an_in_memory_store_works(tmp_path: Path) -> None:
    async with RunStore("sqlite:///:memory:") as store:
        result = await DurableRunner(store).run(diamond([]), {"x": 1})
        assert result.ok
        assert len(await store.steps(result.run_id)) == 4


async def test_concurrent_durable_submissions_with_one_key_execute_once(store: RunStore) -> None:
    calls: list[str] = []
    p = diamond(calls)
    key = uuid.uuid4().hex
    results: list[Any] = []

    async def submit() -> None:
        results.append(await DurableRunner(store).run(p, {"x": 3}, idempotency_key=key))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(submit)
    assert len({r.run_id for r in results}) == 1
    assert sorted(calls) == ["a", "b", "c", "d"]  # every step ran exactly once
    assert {r.status for r in results} <= {RunStatus.SUCCEEDED, RunStatus.RUNNING}
    assert (await store.get_run(results[0].run_id)).status == "succeeded"

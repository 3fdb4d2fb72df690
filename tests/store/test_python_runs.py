"""``Pipeline(..., store=store)``: runs started from Python are recorded in the store
(history, steps, resume), with the options the store does not take still applied."""

from __future__ import annotations

from collections import Counter

from legato.engine import Pipeline
from legato.ledger import CallRecord, Ledger, current_ledger
from legato.store import DurableRunner, RunStore


def counted(calls: Counter[str], store: RunStore | None, fail: dict[str, bool]) -> Pipeline:
    p = Pipeline("py_recorded", store=store)

    @p.step
    async def first(n: int) -> int:
        calls["first"] += 1
        return n + 1

    @p.step
    async def second(first: int) -> int:
        calls["second"] += 1
        if fail["second"]:
            raise RuntimeError("flaky")
        return first * 10

    return p


async def test_a_python_run_is_recorded_and_resumable(store: RunStore) -> None:
    calls: Counter[str] = Counter()
    fail = {"second": True}
    p = counted(calls, store, fail)
    first = await p.run({"n": 1})
    assert first.failed_step == "second"
    record = await store.get_run(first.run_id)
    assert (record.pipeline, record.status) == ("py_recorded", "failed")
    assert [s.step for s in await store.steps(first.run_id) if s.status == "succeeded"] == ["first"]
    fail["second"] = False
    again = await DurableRunner(store).resume(p, first.run_id, force=True)
    assert again.ok, again.error
    assert again.outputs["second"] == 20
    assert calls == Counter(first=1, second=2)  # the checkpointed step did not run again
    assert (await store.get_run(first.run_id)).status == "succeeded"


async def test_options_the_store_does_not_take_still_apply(store: RunStore) -> None:
    parent = Ledger(name="budget")
    p = Pipeline("py_deadline", store=store)

    @p.step
    async def one() -> int:
        ledger = current_ledger()
        assert ledger is not None
        ledger.record(CallRecord(model="m", provider="p", input_tokens=1, output_tokens=1, cost=0.5))
        return 1

    result = await p.run(deadline=30.0, ledger=parent, run_id="0" * 31 + "7")
    assert result.ok, result.error
    assert result.run_id == "0" * 31 + "7"
    assert (await store.get_run(result.run_id)).status == "succeeded"
    assert parent.summary()["cost"] == 0.5  # the run's ledger hung under the one given


async def test_without_a_store_nothing_is_recorded(store: RunStore) -> None:
    before = len(await store.list_runs(pipeline="py_recorded", limit=500))
    p = counted(Counter(), None, {"second": False})
    result = await p.run({"n": 2})
    assert result.ok
    assert len(await store.list_runs(pipeline="py_recorded", limit=500)) == before


async def test_a_runner_given_a_pipeline_with_a_store_records_it_once(store: RunStore) -> None:
    p = counted(Counter(), store, {"second": False})
    before = len(await store.list_runs(pipeline="py_recorded", limit=500))
    result = await DurableRunner(store).run(p, {"n": 3})
    assert result.ok, result.error
    assert len(await store.list_runs(pipeline="py_recorded", limit=500)) == before + 1

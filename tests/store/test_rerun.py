"""Re-running a stored run from a step: a new linked run that keeps the outputs of
the steps the chosen one does not affect and runs it and its downstream again."""

from __future__ import annotations

from collections import Counter

import pytest

from legato.engine import Pipeline
from legato.errors import InputError
from legato.store import DurableRunner, RunStore, StoredStatus, downstream_of


def pipeline(calls: Counter[str]) -> Pipeline:
    p = Pipeline("report")

    @p.step
    async def fetch(topic: str) -> list[str]:
        calls["fetch"] += 1
        return [f"{topic} one", f"{topic} two"]

    @p.step
    async def count(fetch: list[str]) -> int:
        calls["count"] += 1
        return len(fetch)

    @p.step
    async def summarize(fetch: list[str], style: str) -> str:
        calls["summarize"] += 1
        return f"{style}: " + "; ".join(fetch)

    @p.step
    async def publish(summarize: str, count: int) -> str:
        calls["publish"] += 1
        return f"{summarize} ({count})"

    return p


def test_downstream_of_names_the_step_and_its_dependents() -> None:
    p = pipeline(Counter())
    assert downstream_of(p, "summarize") == {"summarize", "publish"}
    assert downstream_of(p, "fetch") == {"fetch", "count", "summarize", "publish"}
    with pytest.raises(InputError, match=r"no step 'sumarize' \(did you mean 'summarize'\?\)"):
        downstream_of(p, "sumarize")


async def test_rerun_from_a_step_reuses_upstream_and_runs_downstream(store: RunStore) -> None:
    calls: Counter[str] = Counter()
    first = await DurableRunner(store).run(pipeline(calls), {"topic": "tea", "style": "short"}, tenant="t1")
    assert first.ok
    assert calls == Counter(fetch=1, count=1, summarize=1, publish=1)

    again = await DurableRunner(store).rerun(pipeline(calls), first.run_id, "summarize", inputs={"style": "long"})
    assert again.ok, again.error
    assert again.run_id != first.run_id
    assert again.outputs["publish"] == "long: tea one; tea two (2)"
    assert calls == Counter(fetch=1, count=1, summarize=2, publish=2)  # fetch and count were reused
    record = await store.get_run(again.run_id)
    assert (record.rerun_of, record.rerun_from, record.tenant) == (first.run_id, "summarize", "t1")
    assert record.inputs == {"topic": "tea", "style": "long"}
    steps = {s.step: s for s in await store.steps(again.run_id)}
    assert steps["fetch"].meta["reused_from"] == first.run_id
    assert "reused_from" not in steps["summarize"].meta
    original = await store.get_run(first.run_id)
    assert original.status is StoredStatus.SUCCEEDED
    assert original.rerun_of is None

    with pytest.raises(InputError, match="unknown input 'stlye'"):
        await DurableRunner(store).rerun(pipeline(calls), first.run_id, "summarize", inputs={"stlye": "x"})
    with pytest.raises(InputError, match="has no step 'nope'"):
        await DurableRunner(store).rerun(pipeline(calls), first.run_id, "nope")

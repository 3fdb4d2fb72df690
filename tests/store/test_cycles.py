"""A cycle stopped in the middle of an iteration resumes at that iteration and step.

The run is stopped by a subscriber that fails after the N-th journal entry of the
cycle step (the store's checkpointer, subscribed first, has committed it); the
resume through the store must call no inner step that had finished.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from legato.engine import Event, Pipeline, StepProgress
from legato.store import DurableRunner, RunStore


class Crash(Exception):
    """Stands in for the process dying after an inner step was committed."""


def crash_after(n: int) -> Any:
    seen: list[Any] = []

    def subscriber(event: Event) -> None:
        if isinstance(event, StepProgress) and event.step == "refine":
            seen.append(event.entry)
            if len(seen) == n:
                raise Crash(f"stopped after {n} inner steps")

    return subscriber


def essay(calls: Counter[str]) -> Pipeline:
    body = Pipeline("refine")

    @body.step
    async def draft(topic: str, previous: dict[str, Any] | None, iteration: int) -> str:
        calls[f"draft{iteration}"] += 1
        return topic if previous is None else previous["revise"] + "!"

    @body.step
    async def critique(draft: str, iteration: int) -> dict[str, Any]:
        calls[f"critique{iteration}"] += 1
        return {"good": len(draft) >= 8, "n": iteration}

    @body.step
    async def revise(draft: str, critique: dict[str, Any]) -> str:
        calls[f"revise{critique['n']}"] += 1
        return draft + "+"

    p = Pipeline("essay")
    p.cycle("refine", body, max_iterations=6, until="critique['good']")

    @p.step
    async def publish(refine: dict[str, Any]) -> str:
        return str(refine["revise"])

    return p


async def test_resume_continues_in_the_iteration_it_was_in(store: RunStore) -> None:
    calls: Counter[str] = Counter()
    runner = DurableRunner(store, reflect=None)
    p = essay(calls)
    first = await runner.run(p, {"topic": "tea"}, subscribers=[crash_after(7)])  # iteration 3's draft committed
    assert first.status == "failed"
    assert "Crash" in (first.error or "")
    assert calls["critique3"] == 0
    assert calls["draft3"] == 1
    result = await runner.resume(p, first.run_id)
    assert result.ok, result.error
    uninterrupted = await essay(Counter()).run({"topic": "tea"})
    assert result.outputs == uninterrupted.outputs
    assert result.outputs["publish"] == "tea+!+!+!+"
    assert all(n == 1 for n in calls.values()), f"an inner step ran twice: {calls}"
    assert set(calls) == {f"{s}{i}" for s in ("draft", "critique", "revise") for i in (1, 2, 3, 4)}

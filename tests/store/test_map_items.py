"""Per-item checkpoints of map steps: a resume runs only the items not yet committed.

A run is stopped in the middle of a map by a subscriber that fails after the
N-th finished item (the store's checkpointer, subscribed first, has committed it).
The resume must call only the remaining items — counted per item by the step
itself, by the fake provider's requests for ``llm:`` steps and by the resumed
run's item events for ``task:`` steps — and produce the outputs of an
uninterrupted run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from legato.config import LegatoConfig
from legato.engine import Event, MapItemFinished, Pipeline
from legato.spec import load_pipeline
from legato.store import DurableRunner, RunStore
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

N = 40
CONCURRENCY = 4


class Crash(Exception):
    """Stands in for the process dying after an item was committed."""


def crash_after(n: int) -> Any:
    seen: list[int] = []

    def subscriber(event: Event) -> None:
        if isinstance(event, MapItemFinished):
            seen.append(event.index)
            if len(seen) == n:
                raise Crash(f"stopped after {n} items")

    return subscriber


class ItemLog:
    """Subscriber recording which items finished in a run."""

    def __init__(self) -> None:
        self.items: list[int] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, MapItemFinished):
            self.items.append(event.index)


def plain(calls: Counter[int]) -> Pipeline:
    p = Pipeline("squares")

    @p.step
    async def numbers(n: int) -> list[int]:
        return list(range(n))

    @p.step(map="numbers", max_concurrency=CONCURRENCY, retries=1)
    def square(numbers: int) -> dict[str, int]:  # sync, with a retry policy: the general path
        calls[numbers] += 1
        return {"n": numbers, "square": numbers * numbers}

    @p.step(map="numbers", max_concurrency=CONCURRENCY, depends_on=["square"])
    async def cube(numbers: int) -> int:  # async, no options: the fast path
        calls[1000 + numbers] += 1
        return numbers**3

    @p.step
    async def total(square: list[dict[str, int]], cube: list[int]) -> int:
        return sum(s["square"] for s in square) + sum(cube)

    return p


async def interrupted(runner: DurableRunner, pipeline: Pipeline, inputs: dict[str, Any], after: int) -> str:
    first = await runner.run(pipeline, inputs, subscribers=[crash_after(after)])
    assert first.status == "failed"
    assert "Crash" in (first.error or "")
    return first.run_id


async def test_resume_runs_only_the_items_not_committed(store: RunStore) -> None:
    calls: Counter[int] = Counter()
    runner = DurableRunner(store, reflect=None)
    p = plain(calls)
    run_id = await interrupted(runner, p, {"n": N}, after=N + N // 2)  # square done, cube half-way
    stored = await store.map_items(run_id)
    assert "square" not in stored  # finished: its item rows went with its checkpoint
    committed = set(stored["cube"])
    assert len(committed) >= N // 2 - CONCURRENCY
    result = await runner.resume(p, run_id)
    assert result.ok, result.error
    assert result.outputs["total"] == sum(i * i + i**3 for i in range(N))
    assert all(calls[i] == 1 for i in range(N))  # square was checkpointed as a whole step
    cube = [calls[1000 + i] for i in range(N)]
    assert all(cube[i] == 1 for i in committed), "a committed item ran again"
    assert all(n >= 1 for n in cube)
    assert sum(n - 1 for n in cube) <= CONCURRENCY  # only items in flight at the stop ran twice
    assert await store.map_items(run_id) == {}


async def test_items_committed_before_a_failing_item_are_kept(sqlite_store: RunStore) -> None:
    calls: Counter[int] = Counter()
    broken = {"item": 7}
    p = Pipeline("flaky")

    @p.step(map="items", max_concurrency=1)
    async def work(items: int) -> int:
        calls[items] += 1
        if items == broken["item"]:
            raise RuntimeError("provider outage")
        return items + 100

    runner = DurableRunner(sqlite_store, reflect=None)
    first = await runner.run(p, {"items": list(range(12))})
    assert first.failed_step == "work"
    assert sorted((await sqlite_store.map_items(first.run_id))["work"]) == list(range(7))
    broken["item"] = -1
    again = await runner.resume(p, first.run_id)
    assert again.ok
    assert again.outputs["work"] == [i + 100 for i in range(12)]
    assert [calls[i] for i in range(12)] == [1] * 7 + [2] + [1] * 4


def llm_config(tmp_path: Path, base: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}\n")
    return LegatoConfig.load(path)


LLM_MAP = """\
name: llm_map
inputs:
  prompts: {type: list}
steps:
  blurb:
    llm: fast
    prompt: ${inputs.prompts}
    map: prompt
    max_concurrency: 2
outputs:
  texts: ${steps.blurb}
"""


async def test_llm_map_resume_calls_the_model_only_for_uncommitted_items(
    store: RunStore, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    fake_provider.script(*[Reply(text="ok") for _ in range(200)])
    pipeline = load_pipeline(LLM_MAP, config=llm_config(tmp_path, fake_provider.base_url))
    prompts = [f"Write about topic-{i}" for i in range(10)]
    runner = DurableRunner(store, reflect=None)
    run_id = await interrupted(runner, pipeline, {"prompts": prompts}, after=5)
    committed = set((await store.map_items(run_id))["blurb"])
    before = len(fake_provider.requests)
    result = await runner.resume(pipeline, run_id)
    assert result.ok, result.error
    assert len(result.result["texts"]) == 10
    asked = Counter(r.body["messages"][-1]["content"] for r in fake_provider.requests[before:])
    assert not {f"Write about topic-{i}" for i in committed} & set(asked), "a committed item called the model again"
    assert set(asked) == {f"Write about topic-{i}" for i in range(10) if i not in committed}
    assert len(committed) >= 5


TASK_MAP = """\
name: task_map
inputs:
  texts: {type: list}
steps:
  mood:
    task: sentiment
    map: text
    max_concurrency: 3
    with: {text: "${inputs.texts}"}
outputs:
  labels: ${steps.mood}
"""


@pytest.mark.local_models
async def test_task_map_resume_runs_only_the_remaining_items(store: RunStore, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TASK_MAP)
    pipeline = load_pipeline(tmp_path / "p.yaml", config=LegatoConfig())
    texts = [("I love it" if i % 2 else "I hate it") + f" #{i}" for i in range(24)]
    runner = DurableRunner(store, reflect=None)
    run_id = await interrupted(runner, pipeline, {"texts": texts}, after=12)
    committed = set((await store.map_items(run_id))["mood"])
    log = ItemLog()
    result = await runner.resume(pipeline, run_id, subscribers=[log])
    assert result.ok, result.error
    assert not committed & set(log.items)
    assert sorted(log.items) == sorted(set(range(24)) - committed)
    reference = await pipeline.run({"texts": texts})
    assert result.result == reference.result

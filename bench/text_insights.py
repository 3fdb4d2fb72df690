"""Text insights: the naive sequential script against the pipeline, over 200 texts.

Same models, same texts, models loaded before any timing:

* ``sequential``: ``examples/text_insights_sequential.py``: per text, sentiment,
  then classification, then entities, each a separate blocking call (timed on the
  first 50 texts and scaled to 200, to keep the benchmark short);
* ``only <task>``: each task alone over the 200 texts, as the pipeline runs it
  (concurrent single-item calls, micro-batched): the floor the pipeline is held to;
* ``pipeline``: ``examples/text_insights.yaml`` run 200 times concurrently (at most
  64 runs at once), as a service would for 200 requests; the three analyses of a
  text run in parallel and the micro-batcher coalesces the calls of different runs.

Each parallel variant is timed 3 times and the best kept (the machine is shared).
Target: pipeline wall <= 1.1 x the slowest single task (not their sum).
Writes ``bench/results/text_insights.json``. Run: ``python bench/text_insights.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import anyio

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT.parent / "examples"
RESULTS = ROOT / "results" / "text_insights.json"
sys.path.insert(0, str(EXAMPLES))

from text_insights_sequential import ENTITY_LABELS, LABELS, analyse  # noqa: E402

from legato import tasks  # noqa: E402
from legato.spec import load_pipeline  # noqa: E402

N = 200
SEQUENTIAL_SAMPLE = 50
REPEAT = 3
CONCURRENT_RUNS = 64

PEOPLE = ["Maria Lopez", "John Smith", "Aiko Tanaka", "Pierre Martin", "Grace Okoye"]
COMPANIES = ["Speedy Couriers", "Acme Corp", "Northwind", "Blue River Bank", "Orbit Mobile"]
PLACES = ["Chicago", "Berlin", "Toronto", "Madrid", "Sydney"]
TEMPLATES = [
    "I was charged twice for my subscription and {person} from {company} promised a refund that never came.",
    "The package from {company} arrived in {place} three days late and the box was crushed.",
    "Great product! The battery of my new {company} phone lasts all day and the screen is gorgeous.",
    "{person} on the support line was friendly and fixed my login problem in five minutes.",
    "My invoice from {company} shows the wrong price, please correct it before the next payment.",
    "The app keeps crashing since the last update and {company} support in {place} does not answer.",
    "Delivery to {place} was fast and tracking worked perfectly, thank you {company}.",
    "I love the new camera, but the charger from {company} stopped working after a week.",
]


def texts(n: int = N) -> list[str]:
    out = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        out.append(
            template.format(
                person=PEOPLE[i % len(PEOPLE)], company=COMPANIES[(i // 3) % len(COMPANIES)], place=PLACES[i % 5]
            )
            + f" Order {1000 + i}."
        )
    return out


async def only(task: tasks.Task[Any, Any], items: list[str]) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for text in items:
            tg.start_soon(task, text)
    return time.perf_counter() - started


async def pipeline_runs(items: list[str]) -> tuple[float, int]:
    pipeline = load_pipeline(EXAMPLES / "text_insights.yaml")
    limiter = anyio.CapacityLimiter(CONCURRENT_RUNS)
    failed = 0

    async def one(text: str) -> None:
        nonlocal failed
        async with limiter:
            result = await pipeline.run({"text": text, "labels": LABELS})
            failed += not result.ok

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for text in items:
            tg.start_soon(one, text)
    return time.perf_counter() - started, failed


def main() -> None:
    items = texts()
    sentiment = tasks.get("sentiment")
    classify = tasks.get("classify", labels=LABELS)
    ner = tasks.get("ner", labels=ENTITY_LABELS)
    started = time.perf_counter()
    for task in (sentiment, classify, ner):
        task.warm_up()
    analyse(items[0])
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    for text in items[:SEQUENTIAL_SAMPLE]:
        analyse(text)
    sequential = (time.perf_counter() - started) * N / SEQUENTIAL_SAMPLE

    singles = {
        task.name: min(anyio.run(only, task, items) for _ in range(REPEAT)) for task in (sentiment, classify, ner)
    }
    anyio.run(pipeline_runs, items[:8])  # warm the pipeline path (imports, first compile)
    walls = []
    for _ in range(REPEAT):
        before = {task.name: task.batches for task in (sentiment, classify, ner)}
        seconds, failed = anyio.run(pipeline_runs, items)
        if failed:
            raise SystemExit(f"{failed} pipeline runs failed")
        walls.append(seconds)
        batches = {task.name: task.batches - before[task.name] for task in (sentiment, classify, ner)}
    wall = min(walls)
    slowest = max(singles, key=lambda k: singles[k])

    rows = [
        (f"sequential script (3 calls per text; {SEQUENTIAL_SAMPLE} timed)", sequential),
        *[(f"only {name} (batched, best of {REPEAT})", seconds) for name, seconds in singles.items()],
        (f"pipeline, {N} runs ({CONCURRENT_RUNS} at once, best of {REPEAT})", wall),
    ]
    print(f"text insights over {N} texts ({os.cpu_count()} CPUs; models loaded in {load_s:.1f} s, not timed)")
    print(f"{'variant':<44} {'wall s':>8} {'per text ms':>12}")
    for label, seconds in rows:
        print(f"{label:<44} {seconds:>8.2f} {seconds / N * 1000:>12.2f}")
    print(f"speed-up vs sequential: {sequential / wall:.1f}x")
    print("model calls in the pipeline run: " + ", ".join(f"{k} {N} items in {v} batches" for k, v in batches.items()))
    print(f"pipeline / slowest single task ({slowest}): {wall / singles[slowest]:.2f}x (target <= 1.10)")
    print(f"pipeline / sum of single tasks: {wall / sum(singles.values()):.2f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "texts": N,
                "cpus": os.cpu_count(),
                "sequential_s": round(sequential, 3),
                "sequential_sample": SEQUENTIAL_SAMPLE,
                "pipeline_batches": batches,
                "single_task_s": {k: round(v, 3) for k, v in singles.items()},
                "pipeline_s": round(wall, 3),
                "pipeline_runs_s": [round(w, 3) for w in walls],
                "concurrent_runs": CONCURRENT_RUNS,
                "speedup_vs_sequential": round(sequential / wall, 2),
                "pipeline_over_slowest_task": round(wall / singles[slowest], 3),
                "pipeline_over_sum_of_tasks": round(wall / sum(singles.values()), 3),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

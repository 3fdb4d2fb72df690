"""What an ``llm:`` step pays for its model: a run of many model calls, per call.

The fake provider (in a thread of its own, on loopback) answers at once. One run of
a pipeline whose ``llm:`` map step makes ``ITEMS`` calls (``CONCURRENCY`` at a time)
followed by one more ``llm:`` step, repeated ``RUNS`` times; the table gives the wall
and CPU time per model call and the calls per second. Run it once on a tree where
each call builds (and closes) its own model and connection pool, and once where the
run owns one model per name (``legato.engine.run_resources``): the ratio is what
the model cache saves. The load average is printed with the figures.

Writes ``bench/results/llm_models.json``. Run: ``python bench/llm_models.py [LABEL]``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from legato.config import LegatoConfig
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply

RESULTS = Path(__file__).resolve().parent / "results" / "llm_models.json"
ITEMS = 40
CONCURRENCY = 8
RUNS = 15
PIPELINE = f"""\
name: many_calls
steps:
  each:
    llm: fast
    map: prompt
    max_concurrency: {CONCURRENCY}
    prompt: {json.dumps([f"item {i}" for i in range(ITEMS)])}
  summary:
    llm: fast
    prompt: "sum of ${{steps.each}}"
"""


async def main(label: str) -> None:
    calls = ITEMS + 1
    with FakeProvider(seed=0).in_thread() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.script(*[Reply(text="ok")] * (calls * (RUNS + 1)))
        path = Path(tmp) / "legato.yaml"
        base = fake.openai_base_url
        path.write_text(f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}'}}\n")
        pipeline = load_pipeline(PIPELINE, config=LegatoConfig.load(path))
        (await pipeline.run()).raise_for_status()  # warm-up: imports, first connection
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(RUNS):
            w, c = time.perf_counter(), time.process_time()
            (await pipeline.run()).raise_for_status()
            wall.append((time.perf_counter() - w) / calls)
            cpu.append((time.process_time() - c) / calls)
    load = os.getloadavg()
    row = {
        "label": label,
        "calls_per_run": calls,
        "runs": RUNS,
        "wall_ms_per_call_median": statistics.median(wall) * 1000,
        "cpu_ms_per_call_median": statistics.median(cpu) * 1000,
        "calls_per_s": 1 / statistics.median(wall),
        "load_average": [round(x, 2) for x in load],
    }
    print(f"{'label':<12} {'wall ms/call':>13} {'CPU ms/call':>12} {'calls/s':>9}  load average")
    print(
        f"{label:<12} {row['wall_ms_per_call_median']:>13.2f} {row['cpu_ms_per_call_median']:>12.2f} "
        f"{row['calls_per_s']:>9.0f}  {' '.join(f'{x:.2f}' for x in load)}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous[label] = row
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "current")

"""Checkpoint overhead of durable runs, on SQLite and PostgreSQL, against no store.

Measures, for the same pipelines run in-process:

* a chain of N trivial steps (every step is its own commit: the worst case),
* a wide pipeline (20 parallel branches x 5 levels: group commit shares transactions),
* resume time of a 1,000-step run whose last step failed (load 999 checkpoints, run 1),
* a map step of 1,000 trivial items, ``max_concurrency`` 4, 16 and 64: the added cost of each
  committed item (every item is checkpointed; items finishing together share a
  commit), measured as the marginal cost of 999 more items over a 1-item map, with
  and without a store,
* a map of 1,000 items stopped once half of them finished (a subscriber fails the
  run, as a crash would), then resumed: how many items ran twice.

The floor is the same pipeline run by the engine without a store, in the same process.
Each figure is the best of ``--repeats`` runs: on a shared machine the best run is the
one least disturbed by other work.
Prints a table and writes bench/results/store.json.

    python bench/store.py [--steps 300] [--repeats 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from _postgres import pg_database
from legato.engine import Event, MapItemFinished, Pipeline
from legato.store import DurableRunner, RunStore

RESULTS = Path(__file__).parent / "results" / "store.json"


def chain(n: int, name: str, fail_last: dict[str, bool] | None = None) -> Pipeline:
    p = Pipeline(name)
    for i in range(n):
        params = "x" if i == 0 else f"s{i - 1}"
        check = "    if state['fail'] and is_last: raise RuntimeError('last step fails once')\n" if fail_last else ""
        source = f"async def s{i}({params}):\n{check}    return {params} + 1\n"
        ns: dict[str, Any] = {"state": fail_last or {}, "is_last": i == n - 1}
        exec(source, ns)
        p.add_step(ns[f"s{i}"], name=f"s{i}")
    return p


def wide(width: int, depth: int, name: str) -> Pipeline:
    p = Pipeline(name)
    for level in range(depth):
        for b in range(width):
            params = "x" if level == 0 else f"l{level - 1}b{b}"
            ns: dict[str, Any] = {}
            exec(f"async def l{level}b{b}({params}):\n    return {params} + 1\n", ns)
            p.add_step(ns[f"l{level}b{b}"], name=f"l{level}b{b}")
    return p


MAP_ITEMS = 1000
MAP_CONCURRENCY = 16  # of the stop-at-50% run
MAP_CONCURRENCIES = (4, 16, 64)  # of the per-item cost runs


def mapped(name: str, calls: dict[int, int] | None = None, concurrency: int = MAP_CONCURRENCY) -> Pipeline:
    p = Pipeline(name)
    counts = calls if calls is not None else {}

    @p.step(map="x", max_concurrency=concurrency)
    async def bump(x: int) -> int:
        counts[x] = counts.get(x, 0) + 1
        return x + 1

    return p


async def map_item_cost(url: str | None, repeats: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds per map item: (1,000-item map - 1-item map) / 999."""
    p = mapped(f"map{concurrency}", concurrency=concurrency)

    async def once(n: int) -> Any:
        if runner is None:
            return await p.run({"x": list(range(n))})
        return await runner.run(p, {"x": list(range(n))})

    async def both() -> tuple[float, float]:
        await once(MAP_ITEMS)  # warm-up
        big = await timed(lambda: once(MAP_ITEMS), repeats)
        big_cpu = CPU[0].pop()
        small = await timed(lambda: once(1), repeats)
        small_cpu = CPU[0].pop()
        return (big - small) / (MAP_ITEMS - 1), (big_cpu - small_cpu) / (MAP_ITEMS - 1)

    runner: DurableRunner | None = None
    if url is None:
        return await both()
    async with RunStore(url) as store:
        runner = DurableRunner(store, reflect=None)
        return await both()


class _Crash(Exception):
    pass


async def map_crash_reruns(url: str) -> int:
    """Items executed twice after a stop at 50% of a 1,000-item map and a resume."""
    calls: dict[int, int] = {}
    p = mapped(f"mapcrash-{uuid.uuid4().hex[:6]}", calls)
    seen = [0]

    def crash(event: Event) -> None:
        if isinstance(event, MapItemFinished):
            seen[0] += 1
            if seen[0] == MAP_ITEMS // 2:
                raise _Crash("stopped at 50%")

    async with RunStore(url) as store:
        runner = DurableRunner(store, reflect=None)
        first = await runner.run(p, {"x": list(range(MAP_ITEMS))}, subscribers=[crash])
        assert not first.ok
        result = await runner.resume(p, first.run_id)
        assert result.ok
        assert result.outputs["bump"] == [x + 1 for x in range(MAP_ITEMS)]
    assert set(calls) == set(range(MAP_ITEMS))
    return sum(n - 1 for n in calls.values())


CPU: dict[int, list[float]] = {}


async def timed(fn: Any, repeats: int) -> float:
    """Best wall time of ``repeats`` runs (the least disturbed by other load on a shared
    machine); the best process CPU time (all threads) goes to ``CPU[0]``."""
    samples, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        await fn()
        samples.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU.setdefault(0, []).append(min(cpu))
    return min(samples)


async def measure(url: str | None, pipeline: Pipeline, repeats: int) -> float:
    if url is None:
        await pipeline.run({"x": 0})  # warm-up
        return await timed(lambda: pipeline.run({"x": 0}), repeats)
    async with RunStore(url) as store:
        runner = DurableRunner(store, reflect=None)
        await runner.run(pipeline, {"x": 0})  # warm-up (statement cache, connections)
        return await timed(lambda: runner.run(pipeline, {"x": 0}), repeats)


async def resume_time(url: str, n: int) -> float:
    state = {"fail": True}
    p = chain(n, f"resume{n}-{uuid.uuid4().hex[:6]}", fail_last=state)
    async with RunStore(url) as store:
        runner = DurableRunner(store, reflect=None)
        first = await runner.run(p, {"x": 0})
        assert not first.ok
        state["fail"] = False
        t = time.perf_counter()
        result = await runner.resume(p, first.run_id)
        elapsed = time.perf_counter() - t
        assert result.ok
        assert result.outputs[f"s{n - 1}"] == n
        return elapsed


async def main(steps: int, repeats: int, postgres: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    backends: dict[str, str | None] = {"no store": None, "sqlite": f"sqlite:///{tmp / 'bench.db'}"}
    pg_name = f"legato_bench_{uuid.uuid4().hex[:8]}"
    if postgres:
        await pg_database("create", pg_name)
        backends["postgresql"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    try:
        rows: dict[str, Any] = {}
        seq, par = chain(steps, "chain"), wide(20, 5, "wide")
        for label, url in backends.items():
            t_seq = await measure(url, seq, repeats)
            cpu_seq = CPU[0].pop()
            t_par = await measure(url, par, repeats)
            rows[label] = {"chain_s": t_seq, "wide_s": t_par, "chain_cpu_s": cpu_seq}
            for c in MAP_CONCURRENCIES:
                rows[label][f"map{c}_item_s"], rows[label][f"map{c}_item_cpu_s"] = await map_item_cost(url, repeats, c)
            if url is not None:
                rows[label]["resume_1000_s"] = await resume_time(url, 1000)
                rows[label]["map_crash_reruns"] = await map_crash_reruns(url)
        base = rows["no store"]
        for row in rows.values():
            row["chain_ms_per_step"] = row["chain_s"] / steps * 1000
            row["chain_steps_per_s"] = steps / row["chain_s"]
            row["wide_ms_per_step"] = row["wide_s"] / 100 * 1000
            row["wide_steps_per_s"] = 100 / row["wide_s"]
            row["chain_overhead_ms_per_step"] = (row["chain_s"] - base["chain_s"]) / steps * 1000
            row["wide_overhead_ms_per_step"] = (row["wide_s"] - base["wide_s"]) / 100 * 1000
            row["chain_cpu_overhead_ms_per_step"] = (row["chain_cpu_s"] - base["chain_cpu_s"]) / steps * 1000
            for c in MAP_CONCURRENCIES:
                row[f"map{c}_item_overhead_ms"] = (row[f"map{c}_item_s"] - base[f"map{c}_item_s"]) * 1000
                row[f"map{c}_item_cpu_overhead_ms"] = (row[f"map{c}_item_cpu_s"] - base[f"map{c}_item_cpu_s"]) * 1000
        return {
            "steps": steps,
            "repeats": repeats,
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "map_items": MAP_ITEMS,
            "map_concurrency": MAP_CONCURRENCY,
            "map_concurrencies": list(MAP_CONCURRENCIES),
            "results": rows,
        }
    finally:
        if postgres:
            await pg_database("drop", pg_name)


def report(doc: dict[str, Any]) -> None:
    rows = doc["results"]
    print(
        f"chain of {doc['steps']} steps and wide 20x5 pipeline, best of {doc['repeats']} runs "
        f"({doc['cpus']} CPUs, load average {doc['load_average_1m']:.1f})"
    )
    head = f"{'backend':<12}{'chain ms/step':>15}{'overhead':>11}{'CPU ovh':>9}{'steps/s':>10}"
    head += f"{'wide ms/step':>14}{'overhead':>11}{'steps/s':>10}{'resume 1000':>13}"
    print(head)
    for label, r in rows.items():
        resume = f"{r['resume_1000_s'] * 1000:.0f} ms" if "resume_1000_s" in r else "-"
        print(
            f"{label:<12}{r['chain_ms_per_step']:>15.3f}{r['chain_overhead_ms_per_step']:>11.3f}"
            f"{r['chain_cpu_overhead_ms_per_step']:>9.3f}{r['chain_steps_per_s']:>10.0f}{r['wide_ms_per_step']:>14.3f}{r['wide_overhead_ms_per_step']:>11.3f}"
            f"{r['wide_steps_per_s']:>10.0f}{resume:>13}"
        )
    print(
        f"\nmap of {doc['map_items']} trivial items: added wall / CPU ms per committed item by max_concurrency, "
        f"and items run twice after a stop at 50% and a resume (max_concurrency {doc['map_concurrency']})"
    )
    print(f"{'backend':<12}" + "".join(f"{f'c={c}':>16}" for c in doc["map_concurrencies"]) + f"{'run twice':>11}")
    for label, r in rows.items():
        cells = "".join(
            f"{r[f'map{c}_item_overhead_ms']:>9.3f} /{r[f'map{c}_item_cpu_overhead_ms']:>5.3f}"
            for c in doc["map_concurrencies"]
        )
        reruns = str(r["map_crash_reruns"]) if "map_crash_reruns" in r else "-"
        print(f"{label:<12}{cells}{reruns:>11}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result = anyio.run(main, args.steps, args.repeats, not args.no_postgres)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

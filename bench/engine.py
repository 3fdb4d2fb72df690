"""Engine benchmarks: scheduler overhead and parallelism against hand-written asyncio.

Each figure is compared with a floor measured in the same run:

* diamond A->(B|C|D)->E with zero-work steps: per-run time vs ``asyncio.gather``;
* the same diamond with 50 ms steps: wall time vs the 150 ms critical path;
* map over 10,000 items awaiting 10 ms each, max_concurrency 1,000: wall vs 100 ms;
* 10,000 concurrent diamond runs in one process: runs/s and peak RSS (each variant in
  its own process so the peaks do not mix);
* ``import legato`` (``-X importtime``) and ``legato --help`` start-up vs a bare
  ``python -c pass``.

Writes ``bench/results/engine.json``. Run: ``python bench/engine.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from legato.engine import Pipeline

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "engine.json"


# -- graphs ------------------------------------------------------------------------------
def diamond(delay: float = 0.0) -> Pipeline:
    p = Pipeline(f"diamond-{delay}")

    async def work(value: int) -> int:
        if delay:
            await asyncio.sleep(delay)
        return value

    @p.step
    async def a(x: int) -> int:
        return await work(x)

    @p.step
    async def b(a: int) -> int:
        return await work(a)

    @p.step
    async def c(a: int) -> int:
        return await work(a)

    @p.step
    async def d(a: int) -> int:
        return await work(a)

    @p.step
    async def e(b: int, c: int, d: int) -> int:
        return await work(b + c + d)

    return p


def hand_diamond(delay: float = 0.0) -> Callable[[int], Awaitable[int]]:
    async def work(value: int) -> int:
        if delay:
            await asyncio.sleep(delay)
        return value

    async def run(x: int) -> int:
        a = await work(x)
        b, c, d = await asyncio.gather(work(a), work(a), work(a))
        return await work(b + c + d)

    return run


def hand_anyio_diamond() -> Callable[[int], Awaitable[int]]:
    """The same graph by hand with an anyio task group (the engine's concurrency primitive)."""
    import anyio

    async def work(value: int) -> int:
        return value

    async def run(x: int) -> int:
        a = await work(x)
        out: list[int] = [0, 0, 0]

        async def branch(i: int) -> None:
            out[i] = await work(a)

        async with anyio.create_task_group() as tg:
            tg.start_soon(branch, 1)
            tg.start_soon(branch, 2)
            await branch(0)
        return await work(sum(out))

    return run


# -- measurements ------------------------------------------------------------------------
async def per_run_us(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """CPU microseconds per run. The loop is CPU-bound in one thread, so process time
    measures the work itself and is not inflated when other processes share the CPU."""
    for _ in range(min(n, 300)):
        await fn()
    t = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t) / n * 1e6


async def bench_diamond_overhead(n: int = 3000, rounds: int = 5) -> dict[str, Any]:
    p = diamond()
    hand = hand_diamond()
    hand_anyio = hand_anyio_diamond()
    engine_us, hand_us, anyio_us = [], [], []
    for _ in range(rounds):  # interleaved; best of rounds resists noisy neighbours
        hand_us.append(await per_run_us(lambda: hand(1), n))
        anyio_us.append(await per_run_us(lambda: hand_anyio(1), n))
        engine_us.append(await per_run_us(lambda: p.run(x=1), n))
    best_engine, best_hand, best_anyio = min(engine_us), min(hand_us), min(anyio_us)
    return {
        "engine_us_per_run": round(best_engine, 1),
        "asyncio_gather_us_per_run": round(best_hand, 1),
        "anyio_task_group_us_per_run": round(best_anyio, 1),
        "ratio": round(best_engine / best_hand, 2),
        "ratio_to_anyio_task_group": round(best_engine / best_anyio, 2),
        "target_ratio": 3.0,
    }


async def bench_diamond_50ms(rounds: int = 5) -> dict[str, Any]:
    p = diamond(0.05)
    hand = hand_diamond(0.05)
    engine_s, hand_s = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        await hand(1)
        hand_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = await p.run(x=1)
        engine_s.append(time.perf_counter() - t)
        assert result.ok
    critical = 0.150
    return {
        "engine_ms": round(min(engine_s) * 1000, 2),
        "asyncio_gather_ms": round(min(hand_s) * 1000, 2),
        "critical_path_ms": critical * 1000,
        "ratio_to_critical_path": round(min(engine_s) / critical, 3),
        "target_ratio": 1.05,
    }


async def bench_map(items: int = 10_000, concurrency: int = 1000, rounds: int = 5) -> dict[str, Any]:
    p = Pipeline("map")

    @p.step(map="item", max_concurrency=concurrency)
    async def wait(item: int) -> int:
        await asyncio.sleep(0.01)
        return item

    async def hand() -> list[int]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with sem:
                await asyncio.sleep(0.01)
                return i

        return await asyncio.gather(*(one(i) for i in range(items)))

    async def pool() -> list[int]:
        # the fastest hand-written shape: max_concurrency workers pulling from one iterator
        results = [0] * items
        it = iter(enumerate(range(items)))

        async def worker() -> None:
            for index, item in it:
                await asyncio.sleep(0.01)
                results[index] = item

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results

    data = list(range(items))
    engine_s, hand_s, engine_cpu, hand_cpu, pool_s, pool_cpu = [], [], [], [], [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        await hand()
        hand_s.append(time.perf_counter() - t)
        hand_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        await pool()
        pool_s.append(time.perf_counter() - t)
        pool_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        result = await p.run(item=data)
        engine_s.append(time.perf_counter() - t)
        engine_cpu.append(time.process_time() - c)
        assert result.ok
        assert len(result.outputs["wait"]) == items
    ideal = items / concurrency * 0.01
    return {
        "items": items,
        "max_concurrency": concurrency,
        "engine_ms": round(min(engine_s) * 1000, 1),
        "asyncio_semaphore_ms": round(min(hand_s) * 1000, 1),
        "asyncio_worker_pool_ms": round(min(pool_s) * 1000, 1),
        "engine_cpu_us_per_item": round(min(engine_cpu) / items * 1e6, 1),
        "asyncio_semaphore_cpu_us_per_item": round(min(hand_cpu) / items * 1e6, 1),
        "asyncio_worker_pool_cpu_us_per_item": round(min(pool_cpu) / items * 1e6, 1),
        "ideal_ms": round(ideal * 1000, 1),
        "ratio_to_ideal": round(min(engine_s) / ideal, 3),
        "worker_pool_ratio_to_ideal": round(min(pool_s) / ideal, 3),
        "ratio_to_worker_pool": round(min(engine_s) / min(pool_s), 3),
        "target_ratio": 1.3,
    }


async def _concurrent(kind: str, runs: int) -> dict[str, Any]:
    """Child process: start ``runs`` diamonds at once, report runs/s and peak RSS."""
    if kind == "engine":
        p = diamond()

        async def one(i: int) -> None:
            result = await p.run(x=i)
            assert result.ok

    else:
        hand = hand_diamond()

        async def one(i: int) -> None:
            await hand(i)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(runs):
            tg.create_task(one(i))
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"runs_per_s": runs / elapsed, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - before) / 1024}


def bench_concurrent_runs(runs: int = 10_000) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for kind in ("asyncio", "engine"):
        proc = subprocess.run(
            [sys.executable, __file__, "--concurrent", kind, str(runs)], capture_output=True, text=True, check=True
        )
        out[kind] = {k: round(v, 1) for k, v in json.loads(proc.stdout).items()}
    out["runs_per_s_ratio"] = round(out["asyncio"]["runs_per_s"] / out["engine"]["runs_per_s"], 2)
    return out


def _best_wall(cmd: list[str], rounds: int = 5) -> tuple[float, float]:
    """Best wall time and best CPU time (user+sys of the child) in ms. CPU time is
    what the command costs; wall time also counts waiting for a busy CPU."""
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        best_wall = min(best_wall, time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_cpu = min(best_cpu, cpu)
    return best_wall * 1000, best_cpu * 1000


def bench_startup() -> dict[str, Any]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import legato"], capture_output=True, text=True, check=True, env=env
    )
    import_us = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*legato$", line)
        if m:
            import_us = int(m.group(1))
    bare, bare_cpu = _best_wall([sys.executable, "-c", "pass"])
    imp, imp_cpu = _best_wall([sys.executable, "-c", "import legato"])
    cli = shutil.which("legato", path=str(Path(sys.executable).parent)) or "legato"
    helpw, help_cpu = _best_wall([cli, "--help"])
    return {
        "import_legato_cumulative_ms": round(import_us / 1000, 1),
        "import_target_ms": 150,
        "python_bare_ms": round(bare, 1),
        "python_bare_cpu_ms": round(bare_cpu, 1),
        "python_import_legato_ms": round(imp, 1),
        "python_import_legato_cpu_ms": round(imp_cpu, 1),
        "legato_help_ms": round(helpw, 1),
        "legato_help_cpu_ms": round(help_cpu, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    results: dict[str, Any] = {}
    results["diamond_overhead"] = asyncio.run(bench_diamond_overhead())
    results["diamond_50ms"] = asyncio.run(bench_diamond_50ms())
    results["map_10k"] = asyncio.run(bench_map())
    results["concurrent_runs"] = bench_concurrent_runs()
    results["startup"] = bench_startup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    d, f, m, c, s = (results[k] for k in ("diamond_overhead", "diamond_50ms", "map_10k", "concurrent_runs", "startup"))
    rows = [
        ("diamond, zero-work steps (CPU per run)", f"{d['engine_us_per_run']} us",
         f"{d['asyncio_gather_us_per_run']} us", f"{d['ratio']}x", "<= 3x"),
        ("diamond, zero-work: vs anyio by hand (CPU)", f"{d['engine_us_per_run']} us",
         f"{d['anyio_task_group_us_per_run']} us", f"{d['ratio_to_anyio_task_group']}x", ""),
        ("diamond, 50 ms steps (wall)", f"{f['engine_ms']} ms", f"{f['critical_path_ms']} ms critical path",
         f"{f['ratio_to_critical_path']}x", "<= 1.05x"),
        ("map 10k x 10 ms, concurrency 1000", f"{m['engine_ms']} ms", f"{m['ideal_ms']} ms ideal",
         f"{m['ratio_to_ideal']}x", "<= 1.3x"),
        ("map 10k: floor, asyncio worker pool by hand", f"{m['asyncio_worker_pool_ms']} ms",
         f"{m['ideal_ms']} ms ideal",
         f"{m['worker_pool_ratio_to_ideal']}x", ""),
        ("map 10k: vs asyncio worker pool by hand", f"{m['engine_ms']} ms", f"{m['asyncio_worker_pool_ms']} ms",
         f"{m['ratio_to_worker_pool']}x", ""),
        ("map 10k: vs asyncio.Semaphore by hand", f"{m['engine_ms']} ms", f"{m['asyncio_semaphore_ms']} ms",
         f"{round(m['engine_ms'] / m['asyncio_semaphore_ms'], 2)}x", ""),
        ("map 10k: CPU per item vs worker pool", f"{m['engine_cpu_us_per_item']} us",
         f"{m['asyncio_worker_pool_cpu_us_per_item']} us",
         f"{round(m['engine_cpu_us_per_item'] / m['asyncio_worker_pool_cpu_us_per_item'], 2)}x", ""),
        ("10k concurrent diamonds: runs/s", f"{c['engine']['runs_per_s']:.0f}", f"{c['asyncio']['runs_per_s']:.0f}",
         f"{c['runs_per_s_ratio']}x slower", ""),
        ("10k concurrent diamonds: peak RSS", f"{c['engine']['peak_rss_mb']} MB", f"{c['asyncio']['peak_rss_mb']} MB",
         "", ""),
        ("import legato (-X importtime)", f"{s['import_legato_cumulative_ms']} ms", "", "", "<= 150 ms"),
        ("legato --help (wall / CPU)", f"{s['legato_help_ms']} / {s['legato_help_cpu_ms']} ms",
         f"{s['python_bare_ms']} / {s['python_bare_cpu_ms']} ms bare python", "", ""),
    ]  # fmt: skip
    widths = [
        max(len(str(r[i])) for r in [("benchmark", "legato", "floor", "ratio", "target"), *rows]) for i in range(5)
    ]
    for row in [("benchmark", "legato", "floor", "ratio", "target"), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"\nload average {s['load_average_1m']} on {os.cpu_count()} CPUs; wrote {RESULTS.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--concurrent":
        print(json.dumps(asyncio.run(_concurrent(sys.argv[2], int(sys.argv[3])))))
    else:
        main()

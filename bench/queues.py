"""Queued runs: enqueue-to-start latency and claimed runs per second, on SQLite and
PostgreSQL, with 1, 2 and 4 workers.

Each worker is a :class:`legato.store.Worker` with its own ``RunStore`` (its own
connections and, on PostgreSQL, its own ``LISTEN`` connection), all in this one
process: the figures include the store round trips and the wake-up path, not
process start-up. The pipeline is one no-op step, so what is measured is the queue.

* **latency**: runs enqueued one at a time, ``--interval`` apart, into idle workers;
  ``started_at - created_at`` of each run as stored (claim + wake-up).
* **throughput**: ``--burst`` runs enqueued at once, then the workers start;
  runs claimed per second from the first claim to the last run's end.

The workers share this process (and its one core at a time): more workers shorten
the wait for a claim but do not add CPU, so throughput is bounded by one core here;
separate worker processes on separate cores add their CPU.

Prints a table and writes bench/results/queues.json. (Not named queue.py: run as a script,
that name would shadow the standard library module asyncio imports.)

    python bench/queues.py [--burst 300] [--paced 60] [--interval 0.05] [--workers 1 2 4] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import anyio

from _postgres import pg_database
from legato.engine import Pipeline
from legato.store import NewRun, RunStore, StoredStatus, Worker, pipeline_version, queue_stats

RESULTS = Path(__file__).parent / "results" / "queues.json"


def pipeline() -> Pipeline:
    p = Pipeline("queue-bench")

    @p.step
    async def noop() -> int:
        return 1

    return p


async def enqueue(store: RunStore, queue: str, p: Pipeline, n: int, interval: float) -> list[str]:
    ids = []
    for _ in range(n):
        record, _ = await store.create_run(
            NewRun(pipeline=p.name, version_hash=pipeline_version(p), inputs={}, queue=queue)
        )
        ids.append(record.id)
        if interval:
            await anyio.sleep(interval)
    return ids


async def finished(store: RunStore, queue: str, ids: list[str]) -> list[Any]:
    """The runs once the queue is empty (one cheap query per poll, not one per run)."""
    while any(s.queue == queue for s in await queue_stats(store)):
        await anyio.sleep(0.1)
    records = [await store.get_run(i) for i in ids]
    assert {r.status for r in records} == {StoredStatus.SUCCEEDED}
    return records


async def phase(url: str, workers: int, n: int, interval: float) -> list[Any]:
    p = pipeline()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with RunStore(url) as submitter:
        stores = [await RunStore(url).open() for _ in range(workers)]
        fleet = [Worker(s, {queue: None}, lambda _r: p, concurrency=8) for s in stores]
        try:
            async with anyio.create_task_group() as tg:
                if interval:  # idle workers first, then runs trickle in
                    for w in fleet:
                        await tg.start(w.serve)
                    await anyio.sleep(0.5)
                    ids = await enqueue(submitter, queue, p, n, interval)
                else:  # a burst waiting, then the workers
                    ids = await enqueue(submitter, queue, p, n, 0)
                    for w in fleet:
                        await tg.start(w.serve)
                records = await finished(submitter, queue, ids)
                for w in fleet:
                    w.drain()
        finally:
            for s in stores:
                await s.aclose()
    return records


def latency(records: list[Any]) -> dict[str, float]:
    waits = sorted(r.started_at - r.created_at for r in records)
    p99 = waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))]
    return {"p50_ms": statistics.median(waits) * 1000, "p99_ms": p99 * 1000, "max_ms": waits[-1] * 1000}


def throughput(records: list[Any]) -> float:
    first = min(r.started_at for r in records)
    last = max(r.finished_at for r in records)
    return len(records) / (last - first)


async def main(burst: int, paced: int, interval: float, workers: list[int], postgres: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    backends = {"sqlite": f"sqlite:///{tmp / 'queue.db'}"}
    pg_name = f"legato_bench_{uuid.uuid4().hex[:8]}"
    if postgres:
        await pg_database("create", pg_name)
        backends["postgresql"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    rows: dict[str, Any] = {}
    try:
        for label, url in backends.items():
            for n in workers:
                paced_records = await phase(url, n, paced, interval)
                burst_records = await phase(url, n, burst, 0)
                rows[f"{label} x{n}"] = {
                    "enqueue_to_start": latency(paced_records),
                    "claimed_runs_per_s": throughput(burst_records),
                    "load_average_1m": os.getloadavg()[0],
                }
    finally:
        if postgres:
            await pg_database("drop", pg_name)
    return {
        "burst": burst,
        "paced": paced,
        "interval_s": interval,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "results": rows,
    }


def report(doc: dict[str, Any]) -> None:
    print(
        f"queued runs: {doc['paced']} paced every {doc['interval_s'] * 1000:g} ms, bursts of {doc['burst']} "
        f"({doc['cpus']} CPUs, load average {doc['load_average_1m']:.1f})"
    )
    print(f"{'backend x workers':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'runs/s':>9}{'load':>7}")
    for label, row in doc["results"].items():
        lat = row["enqueue_to_start"]
        print(
            f"{label:<20}{lat['p50_ms']:>9.1f}{lat['p99_ms']:>9.1f}{lat['max_ms']:>9.1f}"
            f"{row['claimed_runs_per_s']:>9.1f}{row['load_average_1m']:>7.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--paced", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result = anyio.run(main, args.burst, args.paced, args.interval, args.workers, not args.no_postgres)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

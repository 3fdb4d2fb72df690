"""How fast a recorded cancel stops a durable run, on SQLite and PostgreSQL.

Each trial starts a run of three parallel steps that would sleep for a minute (and
a fourth step after them) under one ``RunStore``; 0-250 ms after all three run, a second
``RunStore`` on the same database (its own connections, as ``legato runs cancel``
or another gateway replica would have) records the cancel. Measured from the moment
the cancel is committed:

* **last step stopped**: the last of the three steps has been cancelled;
* **run finished**: the worker has stored the run as ``cancelled`` (its steps'
  events included) and returned.

The heartbeat is 10 s away throughout (``lease_ttl`` 30 s): what is measured is the
PostgreSQL ``LISTEN``/``NOTIFY`` path and the SQLite poll (every 200 ms). Prints
p50/p99/max per backend and writes bench/results/cancel.json.

    python bench/cancel.py [--trials 40] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from _postgres import pg_database, summary
from legato.engine import Pipeline, RunStatus
from legato.store import DurableRunner, RunStore

RESULTS = Path(__file__).parent / "results" / "cancel.json"


class Trial:
    def __init__(self) -> None:
        self.started = 0
        self.all_started = anyio.Event()
        self.stopped: list[float] = []
        self.after_ran = False

    def pipeline(self) -> Pipeline:
        p = Pipeline("cancel-bench")

        async def sleeper() -> int:
            self.started += 1
            if self.started == 3:
                self.all_started.set()
            try:
                await anyio.sleep(60)
            finally:
                self.stopped.append(time.perf_counter())
            return 1

        for name in ("a", "b", "c"):
            p.add_step(sleeper, name=name)

        @p.step
        async def after(a: int, b: int, c: int) -> int:
            self.after_ran = True
            return a + b + c

        return p


async def trial(worker: RunStore, canceller: RunStore) -> tuple[float, float]:
    t = Trial()
    run_id = uuid.uuid4().hex
    outcome: dict[str, Any] = {}

    async def execute() -> None:
        outcome["result"] = await DurableRunner(worker, reflect=None).run(t.pipeline(), {}, run_id=run_id)
        outcome["finished"] = time.perf_counter()

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await t.all_started.wait()
        await anyio.sleep(random.uniform(0, 0.25))  # at any phase of the SQLite poll
        await canceller.request_cancel(run_id, by="bench")
        committed = time.perf_counter()
    assert outcome["result"].status is RunStatus.CANCELLED, outcome["result"].error
    assert not t.after_ran
    assert len(t.stopped) == 3
    return max(t.stopped) - committed, outcome["finished"] - committed


async def measure(url: str, trials: int) -> dict[str, Any]:
    async with RunStore(url) as worker, RunStore(url) as canceller:
        await trial(worker, canceller)  # warm-up: connections, the LISTEN connection, imports
        stopped, finished = [], []
        for _ in range(trials):
            s, f = await trial(worker, canceller)
            stopped.append(s)
            finished.append(f)
    return {"last_step_stopped": summary(stopped), "run_finished": summary(finished)}


async def main(trials: int, postgres: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    backends = {"sqlite": f"sqlite:///{tmp / 'cancel.db'}"}
    pg_name = f"legato_bench_{uuid.uuid4().hex[:8]}"
    if postgres:
        await pg_database("create", pg_name)
        backends["postgresql"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    try:
        rows = {label: await measure(url, trials) for label, url in backends.items()}
    finally:
        if postgres:
            await pg_database("drop", pg_name)
    return {"trials": trials, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "results": rows}


def report(doc: dict[str, Any]) -> None:
    print(
        f"cancel recorded -> steps stopped, {doc['trials']} trials "
        f"({doc['cpus']} CPUs, load average {doc['load_average_1m']:.1f})"
    )
    print(f"{'backend':<12}{'measure':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, row in doc["results"].items():
        for what, s in row.items():
            print(f"{label:<12}{what:<20}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['max_ms']:>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result = anyio.run(main, args.trials, not args.no_postgres)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

"""kill -9 / resume trials of a 20-step pipeline (the crash test at scale).

Each trial runs the pipeline in a forked child, SIGKILLs it at a random moment,
then retries the request with the same idempotency key (which resumes the run)
and checks: no checkpointed step ran again, every step ran, outputs equal an
uninterrupted run, one run per key. Reports how often steps in flight ran twice
(at-least-once), resume latency, and totals; writes bench/results/crash.json.

    python bench/crash.py --trials 1000 [--step-ms 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from _postgres import pg_database
from legato.engine import Pipeline
from legato.store import DurableRunner, RunStore

RESULTS = Path(__file__).parent / "results" / "crash.json"
N_STEPS = 20


def deps_of(i: int) -> list[int]:
    if i == 0:
        return []
    if i == 1:
        return [0]
    if i == N_STEPS - 1:
        return [i - 2, i - 1]
    return [i - 2]


def build(counter: str | None, step_s: float) -> Pipeline:
    p = Pipeline("crash20", inputs={"seed": int})

    async def work(name: str, i: int, seed: int, parents: list[int]) -> int:
        await anyio.sleep(step_s)
        value = (seed * 31 + i * 7 + sum(parents) * 13) % 1_000_003
        if counter is not None:
            fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name}\n".encode())
            finally:
                os.close(fd)
        return value

    for i in range(N_STEPS):
        params = ["seed", *(f"s{d}" for d in deps_of(i))]
        parents = "[" + ", ".join(f"s{d}" for d in deps_of(i)) + "]"
        ns: dict[str, Any] = {"work": work}
        exec(f"async def s{i}({', '.join(params)}):\n    return await work('s{i}', {i}, seed, {parents})\n", ns)
        p.add_step(ns[f"s{i}"], name=f"s{i}")
    return p


async def child(trial: dict[str, Any]) -> None:
    async with RunStore(trial["db"]) as store:
        print(json.dumps({"ready": os.getpid()}), flush=True)
        p = build(trial["counter"], trial["step_s"])
        await DurableRunner(store, reflect=None).run(p, {"seed": trial["seed"]}, idempotency_key=trial["key"])
    print(json.dumps({"done": os.getpid()}), flush=True)


def serve() -> None:
    import sqlalchemy.dialects.postgresql.asyncpg
    import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401

    for line in sys.stdin:
        trial = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                anyio.run(child, trial)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exited": pid, "status": status}), flush=True)


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    async def until(self, key: str, pid: int | None = None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await anyio.to_thread.run_sync(self.proc.stdout.readline)
            if not line:
                raise RuntimeError("fork server exited")
            msg = json.loads(line)
            if key in msg and (pid is None or msg[key] == pid):
                return dict(msg)

    def send(self, trial: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(trial) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


async def main(trials: int, step_ms: float, seed: int, postgres: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="legato-crash-"))
    db = str(tmp / "crash.db")
    pg_name = f"legato_crash_{os.getpid()}"
    if postgres:
        await pg_database("create", pg_name)
        db = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    try:
        doc = await trials_on(db, tmp, trials, step_ms, seed)
    finally:
        if postgres:
            await pg_database("drop", pg_name)
    return {"database": "postgresql" if postgres else "sqlite", **doc}


async def trials_on(db: str, tmp: Path, trials: int, step_ms: float, seed: int) -> dict[str, Any]:
    step_s = step_ms / 1000
    rng = random.Random(seed)
    server = Server()
    stats: Counter[str] = Counter()
    resume_s: list[float] = []
    started = time.perf_counter()
    try:
        async with RunStore(db) as store:
            server.send({"db": db, "counter": str(tmp / "warm.txt"), "key": "warm", "seed": 0, "step_s": step_s})
            pid = (await server.until("pid"))["pid"]
            await server.until("ready", pid)
            t0 = anyio.current_time()
            await server.until("done", pid)
            window = anyio.current_time() - t0
            await server.until("exited", pid)
            for t in range(trials):
                key, counter, s = f"t{t}", tmp / f"c{t}.txt", 1000 + t
                server.send({"db": db, "counter": str(counter), "key": key, "seed": s, "step_s": step_s})
                pid = (await server.until("pid"))["pid"]
                if rng.random() >= 0.1:
                    await server.until("ready", pid)
                    await anyio.sleep(rng.uniform(0, window * 1.1))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await server.until("exited", pid)
                record = await store.find_by_idempotency_key(key)
                finished = set(await store.completed_steps(record.id)) if record else set()
                stats["killed_" + ("before_run" if record is None else record.status)] += 1
                p = build(str(counter), step_s)
                t1 = time.perf_counter()
                result = await DurableRunner(store, reflect=None).run(p, {"seed": s}, idempotency_key=key)
                resume_s.append(time.perf_counter() - t1)
                counts = Counter(counter.read_text().split()) if counter.exists() else Counter()
                reference = await build(None, 0).run({"seed": s})
                stats["ok"] += result.ok and result.outputs == reference.outputs
                stats["finished_steps_rerun"] += sum(1 for st in finished if counts[st] != 1)
                stats["steps_missing"] += N_STEPS - len(counts)
                stats["inflight_steps_rerun"] += sum(1 for n in counts.values() if n > 1)
                stats["finished_before_kill"] += len(finished)
            runs = await store.list_runs(limit=trials + 10)
            stats["runs"] = len(runs) - 1
            stats["runs_succeeded"] = sum(r.status == "succeeded" for r in runs) - 1
    finally:
        server.close()
    return {
        "trials": trials,
        "step_ms": step_ms,
        "run_window_s": window,
        "total_s": time.perf_counter() - started,
        "resume_ms_median": statistics.median(resume_s) * 1000,
        "resume_ms_p95": sorted(resume_s)[int(len(resume_s) * 0.95) - 1] * 1000,
        **stats,
    }


def report(doc: dict[str, Any]) -> None:
    print(
        f"{doc['trials']} kill -9 / resume trials of a 20-step pipeline "
        f"({doc['step_ms']:g} ms steps, {doc['database']})"
    )
    rows = [
        ("outputs identical, run succeeded", f"{doc['ok']} / {doc['trials']}"),
        ("runs (one per key) / succeeded", f"{doc['runs']} / {doc['runs_succeeded']}"),
        ("kills before the run existed", doc.get("killed_before_run", 0)),
        ("kills mid-run", doc.get("killed_running", 0)),
        ("kills after the run finished", doc.get("killed_succeeded", 0)),
        ("finished steps re-executed", doc["finished_steps_rerun"]),
        ("in-flight steps re-executed (at-least-once)", doc["inflight_steps_rerun"]),
        ("steps never executed", doc["steps_missing"]),
        ("resume median / p95", f"{doc['resume_ms_median']:.1f} / {doc['resume_ms_p95']:.1f} ms"),
        ("total time", f"{doc['total_s']:.1f} s"),
    ]
    for label, value in rows:
        print(f"  {label:<46}{value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="Use a fresh PostgreSQL database instead of SQLite.")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        sys.exit(0)
    doc = anyio.run(main, args.trials, args.step_ms, args.seed, args.postgres)
    report(doc)
    out = RESULTS.with_name("crash_postgres.json") if args.postgres else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    failed = doc["ok"] != doc["trials"] or doc["finished_steps_rerun"] or doc["steps_missing"]
    sys.exit(1 if failed else 0)

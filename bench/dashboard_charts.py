"""What the dashboard's charts and call view cost: SQL aggregates over recorded model calls.

Seeds ``model_calls`` with N gateway calls spread over 30 days (8 models, 20 keys, 5%
failures, log-normal latencies) and 2,000 finished runs of 10 pipelines, on SQLite
(a file) and PostgreSQL (a throw-away database), then times each query the charts
page makes for the last 7 and 30 days as an admin (every key) and as one key, the
newest page of gateway calls, and the whole ``/ui/charts`` and ``/ui/calls`` pages
(rendered in process through ASGI; bytes sent). Also the cost of recording: one
``Recorded`` wrapper around an in-process model, per call. Prints a table and writes
bench/results/dashboard_charts.json.

    python bench/dashboard_charts.py [--calls 20000 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from _postgres import pg_database, summary

RESULTS = Path(__file__).parent / "results" / "dashboard_charts.json"
ADMIN = "bench-dashboard-admin-key-0123456789"
DAY = 86400


async def seed(store: Any, n_calls: int, now: float) -> None:
    from legato.store import call_values, record_calls
    from legato.store._schema import runs

    rng = random.Random(7)
    models = [f"model-{i}" for i in range(8)]
    keys = [f"key-{i:02d}" for i in range(20)]
    batch: list[dict[str, Any]] = []
    for i in range(n_calls):
        call = {
            "model": rng.choice(models),
            "at": now - rng.random() * 30 * DAY,
            "latency_s": rng.lognormvariate(-1.0, 0.8),
            "status": "ServerError" if rng.random() < 0.05 else "ok",
            "cost": rng.random() / 1000,
            "input_tokens": rng.randint(10, 2000),
            "output_tokens": rng.randint(10, 500),
            "prompt": "user: a question of about this length",
            "answer": "an answer of about this length",
        }
        batch.append(call_values(call, store, source="gateway", tenant=rng.choice(keys), request_id=f"req-{i}"))
        if len(batch) == 2000:
            await record_calls(store, batch)
            batch = []
    await record_calls(store, batch)
    rows = []
    for i in range(2000):
        start = now - rng.random() * 30 * DAY
        rows.append({"id": f"bench-run-{i:05d}", "pipeline": f"pipeline-{i % 10}", "version_hash": "v",
                     "inputs": "{}", "request_hash": uuid.uuid4().hex, "status": "succeeded", "tenant": keys[i % 20],
                     "created_at": start, "updated_at": start, "started_at": start,
                     "finished_at": start + rng.lognormvariate(1.0, 0.7)})  # fmt: skip
    await store.run_sync(lambda conn: conn.execute(runs.insert(), rows))


async def timed(fn: Any, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return summary(samples)


async def measure(url: str, n_calls: int, repeat: int) -> dict[str, Any]:
    from fastapi import FastAPI

    from legato.server.ui import DashboardSources, mount_dashboard
    from legato.store import Principal, RunStore, gateway_calls, model_stats, run_durations, spend_by_day

    now = time.time()
    out: dict[str, Any] = {}
    async with RunStore(url) as store:
        started = time.perf_counter()
        await seed(store, n_calls, now)
        out["seed_s"] = time.perf_counter() - started
        admin, one = Principal("admin", sees_all=True), Principal("key-03")
        for days in (7, 30):
            since = now - days * DAY
            for who_name, who in (("admin", admin), ("one key", one)):
                queries = {
                    "spend by model": lambda who=who, since=since: spend_by_day(store, who, since=since),
                    "spend by key": lambda who=who, since=since: spend_by_day(store, who, since=since, by="tenant"),
                    "errors+latency": lambda who=who, since=since: model_stats(store, who, since=since),
                    "run durations": lambda who=who, since=since: run_durations(store, who, since=since),
                }
                for name, fn in queries.items():
                    out[f"{name} ({days} d, {who_name})"] = await timed(fn, repeat)
        out["newest 50 gateway calls (admin)"] = await timed(lambda: gateway_calls(store, admin), repeat)
        out["newest 50 gateway calls (one key)"] = await timed(lambda: gateway_calls(store, one), repeat)
        app = FastAPI()
        mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://dash",
                                     headers={"authorization": f"Bearer {ADMIN}"}) as client:  # fmt: skip
            for path in ("/ui/charts?days=7", "/ui/charts?days=30", "/ui/calls"):
                size = len((await client.get(path)).content)
                out[f"page {path}"] = {**await timed(lambda path=path: client.get(path), repeat), "bytes": size}
    return out


async def recording_overhead(n: int) -> dict[str, float]:
    """Microseconds per chat call with and without ``Recorded`` around an in-process model."""
    from legato.observe import ModelCall, Recorded
    from legato.providers import ChatRequest, Message, PythonModel

    model = PythonModel(lambda request: "ok", name="echo")
    kept: list[ModelCall] = []
    recorded = Recorded(model, kept.append)
    request = ChatRequest(messages=[Message(role="user", content="hello")])
    result = {}
    for name, m in (("plain", model), ("recorded", recorded)):
        started = time.process_time()
        for _ in range(n):
            await m.chat(request)
        result[f"{name}_us_per_call_cpu"] = (time.process_time() - started) / n * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    results: dict[str, Any] = {"load_average": load, "backends": {}}
    for n in args.calls:
        with tempfile.TemporaryDirectory() as tmp:
            results["backends"][f"sqlite {n}"] = asyncio.run(measure(f"sqlite:///{tmp}/bench.db", n, args.repeat))
        name = f"bench_charts_{uuid.uuid4().hex[:8]}"
        asyncio.run(pg_database("create", name))
        try:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            results["backends"][f"postgresql {n}"] = asyncio.run(measure(url, n, args.repeat))
        finally:
            asyncio.run(pg_database("drop", name))
    results["recording"] = asyncio.run(recording_overhead(20_000))
    results["load_average_after"] = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores)")
    backends = list(results["backends"])
    print(f"{'query':48}" + "".join(f"{b:>20}" for b in backends) + "   (p50 ms)")
    for row in results["backends"][backends[0]]:
        if row == "seed_s":
            continue
        cells = "".join(f"{results['backends'][b][row]['p50_ms']:>20.1f}" for b in backends)
        size = results["backends"][backends[0]][row].get("bytes")
        print(f"{row:48}{cells}" + (f"   {size / 1024:.1f} KB" if size else ""))
    rec = results["recording"]
    print(
        f"Recorded wrapper: {rec['plain_us_per_call_cpu']:.1f} -> {rec['recorded_us_per_call_cpu']:.1f} µs CPU per call"
    )
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Gateway overhead on loopback: load generator -> gateway -> fake provider, against
load generator -> fake provider directly, in the same run.

Three processes: the fake provider (``legato fake-provider``), the gateway
(``legato serve``, one worker, SQLite store, in-memory limits) and this load
generator. Measures:

- added latency p50/p99 at a fixed open-loop rate (200 and 500 requests/s);
- streaming time-to-first-chunk added (sequential streams);
- the highest rate one gateway worker sustains (closed loop, no errors), next to the
  fake provider's own maximum, which bounds it from above;
- gateway RSS over many requests (after warm-up, and at the end).

Bounded loopback load only. ``--quick`` shortens every phase. Writes
``bench/results/gateway.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

MASTER = "mk-bench-gateway"
BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def open_loop(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], rps: int, seconds: float
) -> dict[str, Any]:
    """Send ``rps`` requests per second on a fixed schedule (not waiting for answers)."""
    latencies: list[float] = []
    errors = 0
    total = int(rps * seconds)

    async def one() -> None:
        nonlocal errors
        start = time.perf_counter()
        try:
            r = await client.post(url, json=BODY, headers=headers)
        except httpx.HTTPError:
            errors += 1
            return
        if r.status_code != 200:
            errors += 1
            return
        latencies.append(time.perf_counter() - start)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(total):
            delay = t0 + i / rps - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            tg.start_soon(one)
    achieved = total / (time.perf_counter() - t0)
    return {
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
        "errors": errors,
        "achieved_rps": achieved,
    }


async def closed_loop(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], concurrency: int, requests: int
) -> dict[str, Any]:
    done = errors = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal done, errors
        while done + errors < requests:
            try:
                r = await client.post(url, json=BODY, headers=headers)
            except httpx.HTTPError:
                errors += 1
                continue
            if r.status_code == 200:
                done += 1
            else:
                errors += 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return {"rps": done / (time.perf_counter() - t0), "errors": errors}


async def ttfc(client: httpx.AsyncClient, url: str, headers: dict[str, str], n: int) -> float:
    samples = []
    body = {**BODY, "stream": True}
    for _ in range(n):
        start = time.perf_counter()
        first = None
        async with client.stream("POST", url, json=body, headers=headers) as r:
            async for line in r.aiter_lines():
                if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    first = time.perf_counter() - start
        if first is not None:
            samples.append(first)
    return statistics.median(samples) * 1e3


async def measure(args: argparse.Namespace, fake_url: str, gw_url: str, key: str, gw: psutil.Process) -> dict[str, Any]:
    direct = (fake_url + "/v1/chat/completions", {"Authorization": "Bearer sk-fake"})
    via = (gw_url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"})
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    out: dict[str, Any] = {"rates": {}}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(20, pool=20)) as client:
        for target in (direct, via):  # warm both paths (connections, caches, JIT-free but lazy imports)
            await closed_loop(client, *target, concurrency=8, requests=400)
        for rps in (200, 500):
            d = await open_loop(client, *direct, rps=rps, seconds=args.seconds)
            g = await open_loop(client, *via, rps=rps, seconds=args.seconds)
            out["rates"][rps] = {"direct": d, "gateway": g}
            progress(f"{rps} req/s: direct {d}, gateway {g}")
        out["ttfc_direct_ms"] = await ttfc(client, *direct, n=args.streams)
        out["ttfc_gateway_ms"] = await ttfc(client, *via, n=args.streams)
        progress(f"ttfc direct {out['ttfc_direct_ms']:.2f} ms, gateway {out['ttfc_gateway_ms']:.2f} ms")
        out["max_direct"] = await closed_loop(client, *direct, concurrency=64, requests=args.max_requests)
        out["max_gateway"] = await closed_loop(client, *via, concurrency=64, requests=args.max_requests)
        progress(f"max direct {out['max_direct']}, gateway {out['max_gateway']}")
        cpu0 = sum(gw.cpu_times()[:2])
        warm = await closed_loop(client, *via, concurrency=32, requests=args.rss_warmup)
        rss_warm = gw.memory_info().rss
        cpu1 = sum(gw.cpu_times()[:2])
        rest = await closed_loop(client, *via, concurrency=32, requests=args.rss_requests - args.rss_warmup)
        rss_end = gw.memory_info().rss
        out["gateway_cpu_ms_per_request"] = (cpu1 - cpu0) / max(1, args.rss_warmup) * 1e3
        out["rss"] = {
            "requests": args.rss_requests,
            "after_warmup_mb": rss_warm / 2**20,
            "end_mb": rss_end / 2**20,
            "growth_pct": (rss_end - rss_warm) / rss_warm * 100,
            "errors": warm["errors"] + rest["errors"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per open-loop rate")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--max-requests", type=int, default=6000)
    parser.add_argument("--rss-requests", type=int, default=40_000)
    parser.add_argument("--rss-warmup", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams, args.max_requests, args.rss_requests, args.rss_warmup = 2, 30, 1000, 3000, 1000

    legato = str(Path(sys.executable).parent / "legato")
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-gateway-"))
    fake_port, gw_port = free_port(), free_port()
    fake_url, gw_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{gw_port}"
    (tmp / "legato.yaml").write_text(
        "models:\n  gpt-fake:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
        "server:\n  master_key: env:BENCH_MASTER_KEY\n  max_in_flight: 4096\n"
    )
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "BENCH_MASTER_KEY": MASTER}
    procs = [
        subprocess.Popen(
            [legato, "fake-provider", "--port", str(fake_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
        subprocess.Popen(
            [legato, "serve", "--config", str(tmp / "legato.yaml"), "--port", str(gw_port), "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    try:
        wait_http(fake_url + "/health")
        wait_http(gw_url + "/healthz")
        created = httpx.post(
            gw_url + "/v1/admin/keys",
            json={"name": "bench", "scopes": ["chat"], "rpm": 10_000_000, "budget_usd": 1e6},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        key = created.json()["key"]
        gw = psutil.Process(procs[1].pid)
        started = time.perf_counter()
        result = anyio.run(measure, args, fake_url, gw_url, key, gw, backend_options={"use_uvloop": True})
        result["wall_s"] = time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    report(result, args)


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print("\ngateway overhead on loopback (one gateway worker; fake provider as the floor; same run)")
    head = ("direct p50", "gateway p50", "added p50", "direct p99", "gateway p99", "added p99")
    print(f"{'load':<22}" + "".join(f"{h:>13}" for h in head))
    for rps, v in r["rates"].items():
        d, g = v["direct"], v["gateway"]
        v["added_p50_ms"], v["added_p99_ms"] = g["p50_ms"] - d["p50_ms"], g["p99_ms"] - d["p99_ms"]
        label = f"{rps} req/s (got {g['achieved_rps']:.0f})"
        print(
            f"{label:<22}"
            + "".join(
                f"{x:>11.2f}ms"
                for x in (d["p50_ms"], g["p50_ms"], v["added_p50_ms"], d["p99_ms"], g["p99_ms"], v["added_p99_ms"])
            )
            + (f"  errors {g['errors']}" if g["errors"] else "")
        )
    r["ttfc_added_ms"] = r["ttfc_gateway_ms"] - r["ttfc_direct_ms"]
    print(
        f"streaming time to first chunk: direct {r['ttfc_direct_ms']:.2f} ms, "
        f"gateway {r['ttfc_gateway_ms']:.2f} ms, added {r['ttfc_added_ms']:.2f} ms"
    )
    print(
        f"max sustained (closed loop, 64 concurrent): fake provider alone {r['max_direct']['rps']:.0f} req/s, "
        f"through one gateway worker {r['max_gateway']['rps']:.0f} req/s (errors {r['max_gateway']['errors']})"
    )
    print(
        f"gateway CPU per request: {r['gateway_cpu_ms_per_request']:.3f} ms (=> {1000 / r['gateway_cpu_ms_per_request']:.0f} req/s per core)"
    )
    m = r["rss"]
    print(
        f"gateway RSS over {m['requests']:,} requests: {m['after_warmup_mb']:.1f} MB after warm-up, "
        f"{m['end_mb']:.1f} MB at the end ({m['growth_pct']:+.1f}%), errors {m['errors']}"
    )
    print(f"wall time {r['wall_s']:.0f} s")
    out = Path(__file__).parent / "results" / "gateway.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **r}, indent=2, default=str))


if __name__ == "__main__":
    main()

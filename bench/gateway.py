"""Gateway overhead on loopback: load generator -> gateway -> fake provider, against
load generator -> fake provider directly, in the same run.

Three processes: the fake provider (``legato fake-provider``), the gateway
(``legato serve``, one worker, SQLite store, in-memory limits) and this load
generator. Measures:

- added latency p50 one request at a time (one connection, ``--sequential`` calls),
  and p50/p99 at a fixed open-loop rate (200 and 500 requests/s);
- streaming time-to-first-chunk added (sequential streams);
- the highest rate one gateway worker sustains (closed loop, no errors), next to the
  fake provider's own maximum, which bounds it from above;
- gateway RSS over many requests (after warm-up, and at the end);
- overload (``--phases overload`` runs only this): a model whose upstream answers in
  50 ms (a second fake provider), its sustainable rate through one worker (closed
  loop), its unloaded latency (open loop at a third of that), then an open loop at
  twice that rate: admitted p50/p99, how fast refusals (429) are answered, goodput
  against the sustainable rate, and 5xx (there must be none).

``--phases latency`` runs only the added latency at 200 and 500 req/s and to the first
chunk. ``--redis-url URL`` keeps the gateway's limits and budgets in that Redis (as
replicas do) and gives the key a TPM limit too, so that admitting and settling a call
wait on Redis.

Bounded loopback load only. ``--quick`` shortens every phase. Writes
``bench/results/gateway.json`` (``gateway-overload.json`` for the overload phase alone).
"""

from __future__ import annotations

import argparse
import asyncio
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
from urllib.parse import urlsplit

import anyio
import httpx
import psutil

MASTER = "mk-bench-gateway"
BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}


# An in-process model: the gateway's own cost with no upstream hop at all.
# The overload phase's sustainable rate: a closed loop with this many calls in flight. With
# 64, the 50 ms upstream itself capped the loop at 64 / 0.05 = 1,280 req/s, below what one
# worker serves, and "twice the sustainable rate" was not an overload.
SUSTAIN_IN_FLIGHT = 256
ECHO = "async def echo(request):\n    return 'Something short.'\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class Target:
    """A minimal keep-alive HTTP/1.1 client for one endpoint.

    The load generator must cost far less than what it measures; httpx's async pool
    costs more per request than the gateway does, so requests are written as
    pre-built bytes on a fixed pool of connections and responses parsed just enough
    (Content-Length or chunked)."""

    def __init__(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        payload = json.dumps(body).encode()
        head = [f"POST {parts.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(payload)}"]
        self.raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def open(self, connections: int) -> None:
        for _ in range(connections):
            self.pool.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        while not self.pool.empty():
            _, writer = self.pool.get_nowait()
            writer.close()

    async def call(self, first_content: bool = False) -> tuple[int, float | None]:
        """Send one request; returns the status and (if asked) seconds to the first content chunk.

        A pooled connection the server closed while idle (keep-alive timeout) is
        reopened and the request sent again."""
        reader, writer = await self.pool.get()
        try:
            try:
                return await self._exchange(reader, writer, first_content)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
                return await self._exchange(reader, writer, first_content)
        finally:
            self.pool.put_nowait((reader, writer))

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_content: bool
    ) -> tuple[int, float | None]:
        start = time.perf_counter()
        first: float | None = None
        writer.write(self.raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readline()).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if first_content and first is None and b'"content":"' in chunk and b'"content":""' not in chunk:
                    first = time.perf_counter() - start
                if size == 0:
                    break
        else:
            length = int(lower.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
        return status, first


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def open_loop(target: Target, rps: int, seconds: float) -> dict[str, Any]:
    """Send ``rps`` requests per second on a fixed schedule (not waiting for answers)."""
    latencies: list[float] = []
    errors = 0
    total = int(rps * seconds)

    async def one(scheduled: float) -> None:
        nonlocal errors
        status, _ = await target.call()
        if status != 200:
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)  # from the planned send time: queueing counts

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(total):
            at = t0 + i / rps
            delay = at - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            tg.start_soon(one, at)
        sent = time.perf_counter() - t0
    return {
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
        "errors": errors,
        "achieved_rps": total / sent,
    }


async def open_loop_statuses(target: Target, rps: float, seconds: float) -> dict[str, Any]:
    """Like :func:`open_loop`, keeping every answer: latency by status class."""
    by_status: dict[int, list[float]] = {}
    failures = 0
    total = int(rps * seconds)

    async def one(scheduled: float) -> None:
        nonlocal failures
        try:
            status, _ = await target.call()
        except (OSError, asyncio.IncompleteReadError):
            failures += 1
            return
        by_status.setdefault(status, []).append(time.perf_counter() - scheduled)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(total):
            at = t0 + i / rps
            delay = at - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            tg.start_soon(one, at)
        sent = time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    ok, refused = by_status.get(200, []), by_status.get(429, [])
    return {
        "offered_rps": rps,
        "achieved_rps": total / sent,
        "requests": total,
        "ok": len(ok),
        "refused_429": len(refused),
        "status_5xx": sum(len(v) for k, v in by_status.items() if k >= 500),
        "other": {str(k): len(v) for k, v in by_status.items() if k not in (200, 429) and k < 500},
        "transport_failures": failures,
        "ok_p50_ms": pct(ok, 50) * 1e3 if ok else None,
        "ok_p99_ms": pct(ok, 99) * 1e3 if ok else None,
        "refused_p50_ms": pct(refused, 50) * 1e3 if refused else None,
        "refused_p99_ms": pct(refused, 99) * 1e3 if refused else None,
        "goodput_rps": len(ok) / elapsed,
    }


async def overload(gw_url: str, key: str, args: argparse.Namespace, gw: psutil.Process) -> dict[str, Any]:
    """Sustainable rate, unloaded latency, then twice the sustainable rate, on ``gpt-slow``."""
    target = Target(gw_url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, {**BODY, "model": "gpt-slow"})
    await target.open(512)
    try:
        await closed_loop(target, concurrency=32, requests=500)  # warm-up
        sustained = await closed_loop(
            target, concurrency=SUSTAIN_IN_FLIGHT, requests=2 * args.max_requests, refusal_pause=0.05
        )
        rate = sustained["rps"]
        progress(f"overload: sustainable {rate:.0f} req/s (closed loop, {SUSTAIN_IN_FLIGHT} in flight)")
        cpu0 = sum(gw.cpu_times()[:2])
        unloaded = await open_loop_statuses(target, rps=rate / 3, seconds=args.seconds)
        unloaded["cpu_ms_per_call"] = (sum(gw.cpu_times()[:2]) - cpu0) / max(1, unloaded["requests"]) * 1e3
        progress(f"overload: unloaded p99 {unloaded['ok_p99_ms']:.1f} ms at {rate / 3:.0f} req/s")
        await anyio.sleep(2)
        cpu0, me0 = sum(gw.cpu_times()[:2]), sum(psutil.Process().cpu_times()[:2])
        profiler = profile(gw.pid, args)
        loaded = await open_loop_statuses(target, rps=2 * rate, seconds=args.overload_seconds)
        if profiler is not None:
            profiler.wait(60)
        loaded["gateway_cpu_pct"] = (sum(gw.cpu_times()[:2]) - cpu0) / args.overload_seconds * 100
        loaded["generator_cpu_pct"] = (sum(psutil.Process().cpu_times()[:2]) - me0) / args.overload_seconds * 100
        async with httpx.AsyncClient() as c:  # the gateway's own view: its admission limit and latency baseline
            loaded["admission"] = (await c.get(gw_url + "/readyz")).json()["checks"].get("admission")
        progress(f"overload: {loaded}")
        refusal = await refusal_cost(gw_url, key, gw, target)
        progress(f"refusal cost: {refusal}")
    finally:
        await target.close()
    return {"sustainable": sustained, "unloaded": unloaded, "overload": loaded, "refusal": refusal}


async def refusal_only(gw_url: str, key: str, gw: psutil.Process) -> dict[str, Any]:
    """The refusal phase alone (``--phases refusal``): CPU time, so it holds on a busy machine."""
    target = Target(gw_url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, {**BODY, "model": "gpt-slow"})
    await target.open(64)
    try:
        return await refusal_cost(gw_url, key, gw, target)
    finally:
        await target.close()


async def refusal_cost(
    gw_url: str, key: str, gw: psutil.Process, target: Target, requests: int = 5000
) -> dict[str, Any]:
    """The gateway CPU time of one refusal: every admission slot is held by a call to a
    model that answers in 20 s, then keyed calls are sent back to back; all are refused."""
    async with httpx.AsyncClient() as c:
        limit = int((await c.get(gw_url + "/readyz")).json()["checks"]["admission"]["limit"])
    stuck = Target(gw_url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, {**BODY, "model": "gpt-stuck"})
    await stuck.open(limit)
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(limit):
                tg.start_soon(stuck.call)
            async with httpx.AsyncClient() as c:
                while (await c.get(gw_url + "/readyz")).json()["checks"]["admission"]["in_flight"] < limit:
                    await anyio.sleep(0.05)
            await closed_loop(target, concurrency=32, requests=500)  # the queue fills and times out: saturated
            cpu0 = sum(gw.cpu_times()[:2])
            flood = await closed_loop(target, concurrency=32, requests=requests)
            cpu = sum(gw.cpu_times()[:2]) - cpu0
            tg.cancel_scope.cancel()
    finally:
        await stuck.close()
    per_refusal = cpu / requests * 1e3
    return {"limit": limit, "requests": requests, "refused": flood["errors"], "cpu_ms_per_refusal": per_refusal}


def profile(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the gateway for the overload phase, when asked (a dev tool)."""
    if not args.profile:
        return None
    spy = str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(args.overload_seconds))]
    command += ["--rate", "200", "--format", "raw", "--output", args.profile]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def closed_loop(target: Target, concurrency: int, requests: int, refusal_pause: float = 0.0) -> dict[str, Any]:
    """``concurrency`` workers sending back to back; a worker refused with 429 waits
    ``refusal_pause`` first (as a client honouring a short back-off would)."""
    done = errors = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal done, errors
        while done + errors < requests:
            status, _ = await target.call()
            if status == 200:
                done += 1
            else:
                errors += 1
                if status == 429 and refusal_pause:
                    await anyio.sleep(refusal_pause)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return {"rps": done / (time.perf_counter() - t0), "errors": errors}


async def ttfc(target: Target, n: int) -> float:
    samples = []
    for _ in range(n):
        _, first = await target.call(first_content=True)
        if first is not None:
            samples.append(first)
    return statistics.median(samples) * 1e3


async def one_at_a_time(target: Target, n: int) -> dict[str, float]:
    """p50 and p90 of ``n`` calls sent strictly one after another on one connection."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        status, _ = await target.call()
        if status == 200:
            samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    return {"p50_ms": pct(samples, 50), "p90_ms": pct(samples, 90), "errors": n - len(samples)}


async def measure(args: argparse.Namespace, fake_url: str, gw_url: str, key: str, gw: psutil.Process) -> dict[str, Any]:
    path = "/v1/chat/completions"
    direct = Target(fake_url + path, {"Authorization": "Bearer sk-fake"}, BODY)
    via = Target(gw_url + path, {"Authorization": f"Bearer {key}"}, BODY)
    echo = Target(gw_url + path, {"Authorization": f"Bearer {key}"}, {**BODY, "model": "echo"})
    direct_stream = Target(fake_url + path, {"Authorization": "Bearer sk-fake"}, {**BODY, "stream": True})
    via_stream = Target(gw_url + path, {"Authorization": f"Bearer {key}"}, {**BODY, "stream": True})
    for t in (direct, via, echo):
        await t.open(128)
    for t in (direct_stream, via_stream):
        await t.open(1)
    out: dict[str, Any] = {"rates": {}}
    try:
        for t in (direct, via, echo):  # warm every path (connections, lazy imports, caches)
            await closed_loop(t, concurrency=8, requests=1000)
        out["one_at_a_time"] = {
            "direct": await one_at_a_time(direct, args.sequential),
            "gateway": await one_at_a_time(via, args.sequential),
        }
        progress(f"one at a time: {out['one_at_a_time']}")
        for rps in (200, 500):
            d = await open_loop(direct, rps=rps, seconds=args.seconds)
            g = await open_loop(via, rps=rps, seconds=args.seconds)
            e = await open_loop(echo, rps=rps, seconds=args.seconds)
            out["rates"][rps] = {"direct": d, "gateway": g, "gateway_inprocess": e}
            progress(f"{rps} req/s: direct {d}, gateway {g}")
        out["ttfc_direct_ms"] = await ttfc(direct_stream, n=args.streams)
        out["ttfc_gateway_ms"] = await ttfc(via_stream, n=args.streams)
        progress(f"ttfc direct {out['ttfc_direct_ms']:.2f} ms, gateway {out['ttfc_gateway_ms']:.2f} ms")
        if args.phases == "latency":
            return out
        out["max_direct"] = await closed_loop(direct, concurrency=64, requests=args.max_requests)
        out["max_gateway"] = await closed_loop(via, concurrency=64, requests=args.max_requests)
        c0 = sum(gw.cpu_times()[:2])
        out["max_gateway_inprocess"] = await closed_loop(echo, concurrency=64, requests=args.max_requests)
        out["gateway_inprocess_cpu_ms_per_request"] = (sum(gw.cpu_times()[:2]) - c0) / args.max_requests * 1e3
        progress(f"max direct {out['max_direct']}, gateway {out['max_gateway']}")
        cpu0 = sum(gw.cpu_times()[:2])
        await closed_loop(via, concurrency=32, requests=args.max_requests // 2)
        cpu1 = sum(gw.cpu_times()[:2])
        # Memory over many requests: mostly the in-process model (fast enough to send tens of
        # thousands of requests in the time budget), every 10th through the fake provider.
        warm = await closed_loop(echo, concurrency=32, requests=args.rss_warmup)
        rss_warm = gw.memory_info().rss
        rest = {"errors": 0}
        remaining = args.rss_requests - args.rss_warmup
        samples = [rss_warm]
        for _ in range(10):
            part = await closed_loop(echo, concurrency=32, requests=remaining // 10 * 9 // 10)
            part2 = await closed_loop(via, concurrency=32, requests=remaining // 10 // 10)
            rest["errors"] += part["errors"] + part2["errors"]
            samples.append(gw.memory_info().rss)
        rss_end = samples[-1]
    finally:
        for t in (direct, via, echo, direct_stream, via_stream):
            await t.close()
    out["gateway_cpu_ms_per_request"] = (cpu1 - cpu0) / max(1, args.max_requests // 2) * 1e3
    out["rss"] = {
        "requests": args.rss_requests,
        "after_warmup_mb": rss_warm / 2**20,
        "end_mb": rss_end / 2**20,
        "growth_pct": (rss_end - rss_warm) / rss_warm * 100,
        "samples_mb": [round(x / 2**20, 1) for x in samples],
        "errors": warm["errors"] + rest["errors"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per open-loop rate")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=2000, help="calls sent one at a time, direct and through")
    parser.add_argument("--max-requests", type=int, default=3000)
    parser.add_argument("--rss-requests", type=int, default=100_000, help="the issue asks 200,000; scaled to ~1 min")
    parser.add_argument("--rss-warmup", type=int, default=10_000)
    parser.add_argument("--overload-seconds", type=float, default=15.0, help="seconds at twice the sustainable rate")
    parser.add_argument(
        "--phases",
        choices=["all", "latency", "overload", "refusal"],
        default="all",
        help="latency: only the added latency at 200 and 500 req/s and to the first chunk; "
        "refusal: only the CPU cost of a 429",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--redis-url",
        help="limits and budgets in this Redis (the key gets a TPM limit too): settling a call waits on it",
    )
    parser.add_argument("--pin", action="store_true", help="gateway on CPU 0; fake providers and this process on CPU 1")
    parser.add_argument("--profile", help="write a py-spy profile (collapsed stacks) of the overload phase here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams, args.max_requests, args.rss_requests, args.rss_warmup = 2, 30, 1000, 3000, 1000
        args.overload_seconds, args.sequential = 5, 300

    legato = str(Path(sys.executable).parent / "legato")
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-gateway-"))
    fake_port, gw_port, slow_port, stuck_port = free_port(), free_port(), free_port(), free_port()
    fake_url, gw_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{gw_port}"
    slow_url, stuck_url = f"http://127.0.0.1:{slow_port}", f"http://127.0.0.1:{stuck_port}"
    (tmp / "legato.yaml").write_text(
        "models:\n  gpt-fake:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
        "  echo:\n    provider: python\n    model: bench_gateway_echo:echo\n"
        "  gpt-slow:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {slow_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
        "  gpt-stuck:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {stuck_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
        # One load generator stands for many clients: no per-client connection cap.
        "server:\n  master_key: env:BENCH_MASTER_KEY\n  max_in_flight: 4096\n  max_connections_per_client: 0\n"
        + (f"  redis_url: {args.redis_url}\n" if args.redis_url else "")
    )
    (tmp / "slow.yaml").write_text("latency: {distribution: fixed, value: 0.05}\n")
    (tmp / "stuck.yaml").write_text("latency: {distribution: fixed, value: 20}\n")
    (tmp / "bench_gateway_echo.py").write_text(ECHO)
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)  # keep a checkout's src first
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "BENCH_MASTER_KEY": MASTER, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [legato, "fake-provider", "--port", str(fake_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
        subprocess.Popen(
            [legato, "fake-provider", "--port", str(slow_port), "--script", str(tmp / "slow.yaml")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [legato, "fake-provider", "--port", str(stuck_port), "--script", str(tmp / "stuck.yaml")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]  # fmt: skip

    def start_gateway() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [legato, "serve", "--config", str(tmp / "legato.yaml"), "--port", str(gw_port), "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if args.pin:
            os.sched_setaffinity(proc.pid, {0})
        return proc

    procs.append(start_gateway())
    if args.pin:
        os.sched_setaffinity(0, {1})
        for proc in procs[:-1]:
            os.sched_setaffinity(proc.pid, {1})
    try:
        wait_http(fake_url + "/health")
        wait_http(slow_url + "/health")
        wait_http(stuck_url + "/health")
        wait_http(gw_url + "/healthz")
        created = httpx.post(
            gw_url + "/v1/admin/keys",
            # With Redis, a TPM limit too: each call's settle then goes to Redis twice (tokens, budget).
            json={"name": "bench", "scopes": ["chat"], "rpm": 10_000_000, "budget_usd": 1e6}
            | ({"tpm": 1_000_000_000} if args.redis_url else {}),
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        key = created.json()["key"]
        gw = psutil.Process(procs[-1].pid)
        started = time.perf_counter()
        result: dict[str, Any] = {"load_average_before": os.getloadavg()}
        if args.phases in ("all", "latency"):
            result.update(anyio.run(measure, args, fake_url, gw_url, key, gw, backend_options={"use_uvloop": True}))
        if args.phases == "all":
            # The overload phase on a fresh worker (same store, same key): the RSS phase's
            # closed loop saturates the worker, and the admission limit it leaves behind
            # takes seconds to grow back under a refusal storm, which is not what the
            # overload phase measures.
            procs[-1].terminate()
            procs[-1].wait(30)
            procs[-1] = start_gateway()
            wait_http(gw_url + "/healthz")
            gw = psutil.Process(procs[-1].pid)
        if args.phases == "refusal":
            result["refusal"] = anyio.run(refusal_only, gw_url, key, gw, backend_options={"use_uvloop": True})
        elif args.phases != "latency":
            result["overload"] = anyio.run(overload, gw_url, key, args, gw, backend_options={"use_uvloop": True})
        result["wall_s"] = time.perf_counter() - started
        result["load_average_after"] = os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    report(result, args)


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    if args.phases in ("all", "latency"):
        report_overhead(r)
    if args.phases == "refusal":
        refusal = r["refusal"]
        print(
            f"gateway CPU per refusal {refusal['cpu_ms_per_refusal']:.3f} ms "
            f"({refusal['refused']} of {refusal['requests']} refused, admission limit {refusal['limit']})"
        )
    elif "overload" in r:
        report_overload(r["overload"])
    before, after = (" ".join(f"{x:.2f}" for x in r[k]) for k in ("load_average_before", "load_average_after"))
    print(f"wall time {r['wall_s']:.0f} s; load average before {before}, after {after}")
    name = {
        "all": "gateway",
        "latency": "gateway-latency",
        "overload": "gateway-overload",
        "refusal": "gateway-refusal",
    }
    name = name[args.phases] + ("-redis" if args.redis_url else "") + ".json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **r}, indent=2, default=str))


def report_overload(o: dict[str, Any]) -> None:
    rate, base, load = o["sustainable"]["rps"], o["unloaded"], o["overload"]
    o["targets"] = {
        "admitted_p99_within_2x_unloaded": load["ok_p99_ms"] is not None and load["ok_p99_ms"] <= 2 * base["ok_p99_ms"],
        "refusals_p99_within_50ms": load["refused_p99_ms"] is None or load["refused_p99_ms"] <= 50,
        "goodput_at_least_90pct": load["goodput_rps"] >= 0.9 * rate,
        "no_5xx": load["status_5xx"] == 0,
    }
    print("\noverload (model with a 50 ms upstream; one gateway worker; open loop at twice the sustainable rate)")
    print(
        f"  sustainable (closed loop, {SUSTAIN_IN_FLIGHT} in flight, 50 ms pause after a 429): {rate:.0f} req/s, "
        f"429s {o['sustainable']['errors']}"
    )
    print(
        f"  unloaded ({base['offered_rps']:.0f} req/s): p50 {base['ok_p50_ms']:.1f} ms, p99 {base['ok_p99_ms']:.1f} ms"
    )
    refused = (
        f"{load['refused_429']} refused (429) p50 {load['refused_p50_ms']:.1f} ms p99 {load['refused_p99_ms']:.1f} ms"
        if load["refused_429"]
        else "0 refused"
    )
    print(
        f"  overload ({load['offered_rps']:.0f} req/s offered, {load['achieved_rps']:.0f} sent): "
        f"{load['ok']} admitted p50 {load['ok_p50_ms']:.1f} ms p99 {load['ok_p99_ms']:.1f} ms; {refused}; "
        f"goodput {load['goodput_rps']:.0f} req/s ({load['goodput_rps'] / rate:.0%} of sustainable); "
        f"5xx {load['status_5xx']}, other {load['other']}, transport failures {load['transport_failures']}"
    )
    print(
        f"  gateway CPU {load['gateway_cpu_pct']:.0f}%, load generator CPU {load['generator_cpu_pct']:.0f}%; "
        f"admission at the end: {load['admission']}"
    )
    refusal = o["refusal"]
    print(
        f"  gateway CPU per call {base['cpu_ms_per_call']:.3f} ms (unloaded phase); per refusal "
        f"{refusal['cpu_ms_per_refusal']:.3f} ms ({refusal['refused']} of {refusal['requests']} refused "
        f"with every slot held)"
    )
    print("  targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in o["targets"].items()))


def report_overhead(r: dict[str, Any]) -> None:
    print("\ngateway overhead on loopback (one gateway worker; fake provider as the floor; same run)")
    head = ("direct p50", "gateway p50", "added p50", "direct p99", "gateway p99", "added p99")
    print(f"{'load':<22}" + "".join(f"{h:>13}" for h in head))
    if "one_at_a_time" in r:
        d, g = r["one_at_a_time"]["direct"], r["one_at_a_time"]["gateway"]
        r["one_at_a_time"]["added_p50_ms"] = g["p50_ms"] - d["p50_ms"]
        print(
            f"{'one at a time':<22}"
            + "".join(f"{x:>11.2f}ms" for x in (d["p50_ms"], g["p50_ms"], g["p50_ms"] - d["p50_ms"]))
            + f"  (p90 {d['p90_ms']:.2f} / {g['p90_ms']:.2f} ms)"
        )
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
    print("the gateway's own cost (an in-process model: no upstream hop), against the fake provider's one hop:")
    for rps, v in r["rates"].items():
        d, e = v["direct"], v["gateway_inprocess"]
        v["inprocess_added_p50_ms"], v["inprocess_added_p99_ms"] = e["p50_ms"] - d["p50_ms"], e["p99_ms"] - d["p99_ms"]
        print(
            f"  {rps} req/s: p50 {e['p50_ms']:.2f} ms ({v['inprocess_added_p50_ms']:+.2f}), "
            f"p99 {e['p99_ms']:.2f} ms ({v['inprocess_added_p99_ms']:+.2f})"
        )
    if "max_gateway_inprocess" in r:
        ecpu = r["gateway_inprocess_cpu_ms_per_request"]
        print(
            f"  max {r['max_gateway_inprocess']['rps']:.0f} req/s on one worker; CPU {ecpu:.3f} ms per request "
            f"(=> {1000 / ecpu:.0f} req/s per core)"
        )
    r["ttfc_added_ms"] = r["ttfc_gateway_ms"] - r["ttfc_direct_ms"]
    print(
        f"streaming time to first chunk: direct {r['ttfc_direct_ms']:.2f} ms, "
        f"gateway {r['ttfc_gateway_ms']:.2f} ms, added {r['ttfc_added_ms']:.2f} ms"
    )
    if "max_direct" not in r:  # --phases latency
        return
    print(
        f"max sustained (closed loop, 64 concurrent): fake provider alone {r['max_direct']['rps']:.0f} req/s, "
        f"through one gateway worker {r['max_gateway']['rps']:.0f} req/s (errors {r['max_gateway']['errors']})"
    )
    cpu = r["gateway_cpu_ms_per_request"]
    print(f"gateway CPU per request (via the fake): {cpu:.3f} ms (=> {1000 / cpu:.0f} req/s per core)")
    m = r["rss"]
    print(
        f"gateway RSS over {m['requests']:,} requests: {m['after_warmup_mb']:.1f} MB after warm-up, "
        f"{m['end_mb']:.1f} MB at the end ({m['growth_pct']:+.1f}%), errors {m['errors']}"
    )


if __name__ == "__main__":
    main()

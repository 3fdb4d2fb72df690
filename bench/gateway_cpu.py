"""Gateway CPU time per request on the non-streaming model routes, and where it goes.

Wall-clock throughput on a shared machine says more about the neighbours than about
the gateway; the CPU time the gateway process spends per request does not. This
starts the fake provider and ``legato serve`` (one worker, SQLite store, in-memory
limits, a key with RPM and a budget so both are checked on every call, access log on
at INFO), sends ``--requests`` calls closed-loop per case and reads the gateway's
CPU seconds (user + system, psutil) before and after:

- ``echo``: ``POST /v1/chat/completions`` to an in-process Python model (the gateway's
  own stack, no upstream hop);
- ``fake``: the same call through the OpenAI adapter to the fake provider (aiohttp);
- ``messages``: ``POST /v1/messages`` to the echo model (the Anthropic wire);
- ``embed``: ``POST /v1/embeddings`` through the adapter to the fake provider;
- ``stream``: the ``echo`` call streamed (server-sent events: the fixed cost of a stream);
- ``fake-stream``: the ``fake`` call streamed, through the adapter's SSE reader.

Each case runs at 1 and at ``--concurrency`` calls in flight. ``--profile DIR`` also
records the gateway with py-spy (a dev tool: ``pip install py-spy``) during the
``echo`` and ``fake`` cases at the higher concurrency and prints the heaviest frames
(inclusive and own time, % of samples). Writes ``bench/results/gateway_cpu.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from gateway import ECHO, MASTER, Target, free_port, wait_http

BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
CASES: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "echo": ("/v1/chat/completions", {**BODY, "model": "echo"}, {}),
    "fake": ("/v1/chat/completions", {**BODY, "model": "gpt-fake"}, {}),
    "messages": ("/v1/messages", {**BODY, "model": "echo"}, {"anthropic-version": "2023-06-01"}),
    "embed": ("/v1/embeddings", {"model": "emb-fake", "input": "Say something short."}, {}),
    "stream": ("/v1/chat/completions", {**BODY, "model": "echo", "stream": True}, {}),
    "fake-stream": ("/v1/chat/completions", {**BODY, "model": "gpt-fake", "stream": True}, {}),
}


def cpu_seconds(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds (user + system) of the whole process and of its main thread (the event loop)."""
    times = proc.cpu_times()
    main = next((t for t in proc.threads() if t.id == proc.pid), None)
    return float(times.user + times.system), float(main.user_time + main.system_time) if main else 0.0


async def idle_rate(proc: psutil.Process, seconds: float = 3.0) -> float:
    """CPU seconds per second the gateway spends with no request (its timers and background tasks)."""
    before = cpu_seconds(proc)[0]
    await asyncio.sleep(seconds)
    return (cpu_seconds(proc)[0] - before) / seconds


async def closed_loop(target: Target, concurrency: int, requests: int) -> Counter[int]:
    """``requests`` calls with ``concurrency`` in flight; returns the count of each status."""
    sent = 0
    statuses: Counter[int] = Counter()

    async def worker() -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            status, _ = await target.call()
            statuses[status] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def measure(
    gw_url: str, key: str, gw: psutil.Process, args: argparse.Namespace, profiles: Path | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    idle = await idle_rate(gw)
    _progress(f"idle gateway: {idle * 1e3:.1f} ms of CPU per second")
    for case in args.cases:
        path, body, extra = CASES[case]
        target = Target(gw_url + path, {"Authorization": f"Bearer {key}", **extra}, body)
        await target.open(max(args.concurrency, 1))
        try:
            statuses = await closed_loop(target, 8, args.warmup)
            if set(statuses) != {200}:
                raise RuntimeError(f"{case}: warm-up calls answered {dict(statuses)}")
            for concurrency in (1, args.concurrency):
                spy = None
                if profiles is not None and concurrency > 1 and case in ("echo", "fake"):
                    spy = _spy(gw.pid, profiles / f"{case}.txt")
                (before, before_loop), started = cpu_seconds(gw), time.perf_counter()
                statuses = await closed_loop(target, concurrency, args.requests)
                (after, after_loop), wall = cpu_seconds(gw), time.perf_counter() - started
                cpu, loop_cpu = after - before, after_loop - before_loop
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(60)
                out[f"{case}@{concurrency}"] = {
                    "cpu_us_per_request": cpu / args.requests * 1e6,
                    "net_cpu_us_per_request": (cpu - idle * wall) / args.requests * 1e6,
                    "loop_cpu_us_per_request": loop_cpu / args.requests * 1e6,
                    "wall_rps": args.requests / wall,
                    "errors": args.requests - statuses[200],
                    "statuses": {str(k): v for k, v in statuses.items()},
                }
                _progress(f"{case} @{concurrency}: {out[f'{case}@{concurrency}']}")
        finally:
            await target.close()
    return {"idle_cpu_ms_per_s": idle * 1e3, **out}


async def in_process(args: argparse.Namespace, tmp: Path, fake_url: str) -> dict[str, Any]:
    """The same cases with the ASGI app called directly in this process (no server, no
    sockets): CPU time of the app alone, stable enough to compare one change with the
    next; ``--cprofile`` prints where it goes."""
    import cProfile
    import pstats

    from legato.config import LegatoConfig
    from legato.server import create_app
    from legato.server._settings import load_settings

    os.environ.update(BENCH_FAKE_KEY="sk-fake", BENCH_MASTER_KEY=MASTER)
    sys.path.insert(0, str(tmp))
    os.chdir(tmp)
    config = LegatoConfig.load(tmp / "legato.yaml")
    from legato.observe import ObserveConfig, setup

    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115 - the log handler's stream, as under serve
    setup(ObserveConfig.from_config(config))  # JSON logs at INFO: the access log is written, as under serve
    sys.stderr = stderr
    app = create_app(load_settings(config), config=config)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app) as state:
        call = _asgi_caller(app, dict(state or {}))
        master = {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}
        status, body = await call(
            "/v1/admin/keys",
            master,
            json.dumps({"name": "bench", "scopes": ["chat", "embed"], "rpm": 10_000_000, "budget_usd": 1e6}).encode(),
        )
        if status != 201:
            raise RuntimeError(f"creating the key: {status} {body[:300]!r}")
        key = json.loads(body)["key"]
        for case in args.cases:
            path, payload, extra = CASES[case]
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json", **extra}
            raw = json.dumps(payload).encode()
            for _ in range(args.warmup):
                status, body = await call(path, headers, raw)
                if status != 200:
                    raise RuntimeError(f"{case}: {status} {body[:300]!r}")
            profiler = cProfile.Profile() if args.cprofile else None
            batches = []
            for _ in range(args.batches):  # the least disturbed batch is the figure; the median says how noisy
                before = time.process_time()
                if profiler is not None:
                    profiler.enable()
                for _ in range(args.requests // args.batches):
                    await call(path, headers, raw)
                if profiler is not None:
                    profiler.disable()
                batches.append((time.process_time() - before) / (args.requests // args.batches) * 1e6)
            out[case] = {"cpu_us_per_request": min(batches), "median_us": statistics.median(batches)}
            _progress(f"in-process {case}: {min(batches):.0f} µs per request (median {statistics.median(batches):.0f})")
            if profiler is not None:
                print(f"\ncProfile of {case} ({args.requests} requests): top by own time")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    return out


def _asgi_caller(app: Any, state: dict[str, Any]) -> Any:
    """An ``await call(path, headers, body) -> (status, body)`` straight into ``app``."""

    async def call(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": dict(state),
        }  # fmt: skip
        sent = False
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, b"".join(chunks)

    return call


def _spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    spy = str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--rate", "500", "--gil", "--format", "raw", "--output", str(output)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the load starts
    return proc


def summarize(collapsed: Path, top: int) -> list[dict[str, Any]]:
    """The heaviest frames of a py-spy raw (collapsed stacks) profile: inclusive % and own %."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    rows = [
        {"frame": f, "inclusive_pct": 100 * c / total, "own_pct": 100 * own[f] / total}
        for f, c in inclusive.most_common()
    ]
    return [r for r in rows if r["inclusive_pct"] < 99.5][:top]


def _frame(raw: str) -> str:
    """``func (path/to/module.py:123)`` as ``module.py:func``."""
    name, _, where = raw.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{Path(file).name}:{name}"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _config(tmp: Path, fake_url: str) -> None:
    (tmp / "legato.yaml").write_text(
        "models:\n  gpt-fake:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
        "  emb-fake:\n    provider: openai\n    model: text-embedding-fake\n"
        f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.02, output: 0}}\n"
        "  echo:\n    provider: python\n    model: bench_gateway_echo:echo\n"
        "server:\n  master_key: env:BENCH_MASTER_KEY\n  max_in_flight: 4096\n  max_connections_per_client: 0\n"
        # Admission runs (slots, samples) but never sheds these bounded loops, whatever the machine's load.
        "  admission: {min_limit: 128}\n"
    )
    (tmp / "bench_gateway_echo.py").write_text(ECHO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per case and concurrency")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--profile", help="directory for py-spy profiles of the echo and fake cases")
    parser.add_argument("--top", type=int, default=40, help="frames listed per profile")
    parser.add_argument("--in-process", action="store_true", help="call the ASGI app directly (no server)")
    parser.add_argument("--batches", type=int, default=10, help="with --in-process: batches per case (min is kept)")
    parser.add_argument("--cprofile", action="store_true", help="with --in-process: cProfile each case")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "gateway_cpu.json"))
    args = parser.parse_args()

    legato = str(Path(sys.executable).parent / "legato")
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-gateway-cpu-"))
    fake_port, gw_port = free_port(), free_port()
    fake_url, gw_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{gw_port}"
    _config(tmp, fake_url)
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "BENCH_MASTER_KEY": MASTER, "PYTHONPATH": path}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if args.in_process:
        fake = subprocess.Popen([legato, "fake-provider", "--port", str(fake_port)], **quiet)  # type: ignore[call-overload]
        try:
            wait_http(fake_url + "/health")
            result = {"load_average_before": os.getloadavg()}
            result["in_process"] = asyncio.run(in_process(args, tmp, fake_url))
            result["load_average_after"] = os.getloadavg()
        finally:
            fake.terminate()
            fake.wait(30)
        print(json.dumps(result, indent=2))
        return
    procs = [
        subprocess.Popen([legato, "fake-provider", "--port", str(fake_port)], **quiet),  # type: ignore[call-overload]
        subprocess.Popen(
            [legato, "serve", "--config", str(tmp / "legato.yaml"), "--port", str(gw_port)], cwd=tmp, env=env, **quiet
        ),  # type: ignore[call-overload]
    ]
    profiles = Path(args.profile) if args.profile else None
    if profiles is not None:
        profiles.mkdir(parents=True, exist_ok=True)
    try:
        wait_http(fake_url + "/health")
        wait_http(gw_url + "/healthz")
        created = httpx.post(
            gw_url + "/v1/admin/keys",
            json={"name": "bench", "scopes": ["chat", "embed"], "rpm": 10_000_000, "budget_usd": 1e6},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        key = created.json()["key"]
        gw = psutil.Process(procs[-1].pid)
        result: dict[str, Any] = {"load_average_before": os.getloadavg()}
        result["cases"] = asyncio.run(measure(gw_url, key, gw, args, profiles))
        result["load_average_after"] = os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    if profiles is not None:
        result["profiles"] = {
            f.stem: summarize(f, args.top) for f in sorted(profiles.glob("*.txt")) if f.stat().st_size
        }
    report(result)
    out = Path(args.output)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **result}, indent=2))


def report(result: dict[str, Any]) -> None:
    print("\ngateway CPU per request (one worker; closed loop; CPU time of the gateway process)")
    cases = dict(result["cases"])
    print(f"idle gateway: {cases.pop('idle_cpu_ms_per_s'):.1f} ms of CPU per second (subtracted in 'net')")
    head = ("CPU µs/req", "net µs/req", "event loop", "=> req/s/core", "errors")
    print(f"{'case':<14}" + "".join(f"{h:>15}" for h in head))
    for name, row in cases.items():
        cpu, net, loop = row["cpu_us_per_request"], row["net_cpu_us_per_request"], row["loop_cpu_us_per_request"]
        print(f"{name:<14}{cpu:>15.0f}{net:>15.0f}{loop:>15.0f}{1e6 / net:>15.0f}{row['errors']:>15}")
    for name, rows in result.get("profiles", {}).items():
        print(f"\nprofile {name}: inclusive % / own % of samples")
        for r in rows:
            print(f"  {r['inclusive_pct']:5.1f} {r['own_pct']:5.1f}  {r['frame']}")
    before, after = (" ".join(f"{x:.2f}" for x in result[k]) for k in ("load_average_before", "load_average_after"))
    print(f"\nload average before {before}, after {after}")


if __name__ == "__main__":
    main()

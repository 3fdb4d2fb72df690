"""Which HTTP server for the gateway: uvicorn (uvloop, httptools, legato's guarded
protocols) against granian (a Rust HTTP server; ASGI, and RSGI for a bare app), on
the same app, measured as gateway CPU time per request.

Wall-clock rates are printed too, but on a shared machine they are noise; the figure
that decides is the CPU time (user + system, psutil) of the serving process tree
divided by the requests it answered, closed loop, 16 connections. Five rounds alternate
between the servers (all of them are up at once) so that a change in the machine's
load hits each alike; the median round is reported.

Phases:

- ``servers``: for each server, ``GET /healthz``; ``POST /v1/chat/completions`` on an
  in-process echo model (the gateway's own cost); the same through the fake upstream
  (``legato fake-provider``, whose CPU is not counted); and a bare app that answers
  ``{}`` (the server's own floor: ASGI on both, RSGI on granian). Idle RSS of each
  gateway (10 models configured) after start-up.
- ``idle``: the idle RSS of each gateway alone (10 models configured), started on a
  new store (created and migrated, by a child process) and restarted on it, and the
  CPU seconds its start-up took (the child's included). Part of ``all``.
- ``workers``: closed-loop throughput and CPU per request on the echo model with 1 and
  2 worker processes (``legato serve --workers N``; granian ``--workers N``).

granian comes with the ``dev`` extra. Writes ``bench/results/servers.json`` (a phase
run alone replaces its own entry and keeps the others). ``--quick`` shortens every
phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from gateway import BODY, ECHO, Target, closed_loop, free_port, progress, wait_http

MASTER = "mk-bench-servers"
BIN = Path(sys.executable).parent

BARE = '''\
async def asgi(scope, receive, send):
    """The smallest ASGI app: reads the body, answers {}."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = message["type"] == "lifespan.shutdown"
            await send({"type": message["type"] + ".complete"})
            if done:
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


async def rsgi(scope, protocol):
    """The same on granian's RSGI interface."""
    await protocol()
    protocol.response_bytes(200, [("content-type", "application/json")], b"{}")
'''


@dataclass
class Server:
    """One served app: its command, port and process; ``key`` once it is up."""

    name: str
    command: list[str]
    port: int
    gateway: bool
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """CPU seconds of the whole process tree (a supervisor, its workers, their threads)."""
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def worker_cpu(self) -> list[float]:
        """CPU seconds of each process of the tree that serves (not the supervisor, not
        multiprocessing's resource tracker)."""
        assert self.proc is not None
        out = []
        for p in [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]:
            if "resource_tracker" in " ".join(p.cmdline()):
                continue
            t = p.cpu_times()
            out.append(t.user + t.system)
        return out

    def start_cpu_s(self) -> dict[str, float]:
        """CPU seconds the process tree has used so far: its processes' own, and that of
        the children they waited for (a store's migration child)."""
        assert self.proc is not None
        own = children = 0.0
        for p in [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]:
            t = p.cpu_times()
            own += t.user + t.system
            children += t.children_user + t.children_system
        return {"own": own, "children": children}

    def rss_mb(self) -> dict[str, float]:
        """RSS of each process of the tree, in MB, keyed ``main`` / ``worker-N``."""
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        out = {"main": root.memory_info().rss / 2**20}
        for i, child in enumerate(root.children(recursive=True)):
            out[f"worker-{i + 1}"] = child.memory_info().rss / 2**20
        return out


def write_config(tmp: Path, fake_url: str) -> Path:
    """legato.yaml with ten models: the echo model, the fake upstream and eight more
    OpenAI-compatible ones (configured, never called)."""
    models = (
        "  echo:\n    provider: python\n    model: bench_servers_echo:echo\n"
        "  gpt-fake:\n    provider: openai\n    model: gpt-fake\n"
        f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
    )
    for i in range(8):
        models += (
            f"  spare-{i}:\n    provider: openai\n    model: gpt-fake-{i}\n"
            f"    base_url: {fake_url}/v1\n    api_key: env:BENCH_FAKE_KEY\n"
        )
    (tmp / "legato.yaml").write_text(
        "models:\n" + models + "server:\n  master_key: env:BENCH_MASTER_KEY\n  max_in_flight: 4096\n"
        "  max_connections_per_client: 0\n"
    )
    (tmp / "bench_servers_echo.py").write_text(ECHO)
    (tmp / "bench_servers_bare.py").write_text(BARE)
    return tmp / "legato.yaml"


def gateway_servers(config: Path, workers: int, names: list[str]) -> list[Server]:
    out = []
    if "uvicorn" in names:
        port = free_port()
        cmd = [str(BIN / "legato"), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
        out.append(Server("uvicorn", [*cmd, "--workers", str(workers)], port, gateway=True))
    for name, extra in GRANIAN.items():
        if name in names:
            port = free_port()
            args = json.dumps({"config": str(config), "port": port, "workers": workers})
            cmd = granian("asgi", "legato.server._serve:app_from_env", port, workers, [*extra, "--factory"])
            out.append(Server(name, cmd, port, gateway=True, env={"LEGATO_SERVE_ARGS": args}))
    return out


# granian's default Rust runtime and its single-threaded one (``--runtime-mode st``); in
# both, the Rust I/O runs beside the Python event loop and hands each request over to it.
GRANIAN = {"granian": [], "granian-st": ["--runtime-mode", "st"]}


def granian(interface: str, target: str, port: int, workers: int, extra: list[str] | None = None) -> list[str]:
    return [
        str(BIN / "granian"), "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
        "--backlog", "2048", *(extra or []), target,
    ]  # fmt: skip


def bare_servers(names: list[str]) -> list[Server]:
    p1, p2, p3 = free_port(), free_port(), free_port()
    uvi = [str(BIN / "uvicorn"), "bench_servers_bare:asgi", "--port", str(p1), "--loop", "uvloop"]
    uvi += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
    out = [Server("uvicorn bare ASGI", uvi, p1, gateway=False)]
    if any(name in GRANIAN for name in names):
        out.append(Server("granian bare ASGI", granian("asgi", "bench_servers_bare:asgi", p2, 1), p2, gateway=False))
        out.append(Server("granian bare RSGI", granian("rsgi", "bench_servers_bare:rsgi", p3, 1), p3, gateway=False))
    return out


def start(server: Server, tmp: Path, env: dict[str, str], *, create_key: bool = True) -> None:
    server.proc = subprocess.Popen(
        server.command, cwd=tmp, env={**env, **server.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_http(server.url + ("/healthz" if server.gateway else "/"))
    if server.gateway and create_key:
        created = httpx.post(
            server.url + "/v1/admin/keys",
            json={"name": f"bench-{server.name}", "scopes": ["chat"], "rpm": 10_000_000, "budget_usd": 1e6},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        created.raise_for_status()
        server.key = created.json()["key"]


def stop(servers: list[Server]) -> None:
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.terminate()
            try:
                s.proc.wait(15)  # the drain window is 5 s
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()


def targets(server: Server) -> dict[str, Target]:
    """The scenarios served by ``server``: name -> a keep-alive load target."""
    path = "/v1/chat/completions"
    if not server.gateway:
        return {"bare": Target(server.url + "/", {}, BODY)}
    auth = {"Authorization": f"Bearer {server.key}"}
    health = Target(server.url + "/healthz", {}, {})
    health.raw = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    return {
        "healthz": health,
        "echo": Target(server.url + path, auth, {**BODY, "model": "echo"}),
        "upstream": Target(server.url + path, auth, BODY),
    }


async def cpu_per_request(server: Server, target: Target, requests: int, concurrency: int) -> dict[str, float]:
    await closed_loop(target, concurrency=concurrency, requests=max(200, requests // 10))  # warm
    cpu0, t0 = server.cpu(), time.perf_counter()
    done = await closed_loop(target, concurrency=concurrency, requests=requests)
    cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
    return {"cpu_us": cpu / requests * 1e6, "rps": done["rps"], "errors": done["errors"], "wall_s": wall}


async def compare(servers: list[Server], args: argparse.Namespace) -> dict[str, Any]:
    """Rounds alternating between servers; every (server, scenario) measured once per round."""
    plan = [(s, name, t) for s in servers for name, t in targets(s).items()]
    for _, _, t in plan:
        await t.open(args.concurrency)
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        for r in range(args.rounds):
            for server, name, target in plan:
                m = await cpu_per_request(server, target, args.requests, args.concurrency)
                rounds.setdefault(server.name, {}).setdefault(name, []).append(m)
                progress(f"round {r + 1} {server.name} {name}: {m['cpu_us']:.0f} us CPU/request, {m['rps']:.0f} req/s")
    finally:
        for _, _, t in plan:
            await t.close()
    return {srv: {name: median_round(ms) for name, ms in by.items()} | {"rounds": by} for srv, by in rounds.items()}


def median_round(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(m[k] for m in ms) for k in ("cpu_us", "rps", "errors")}


async def throughput(server: Server, seconds: float, concurrency: int) -> dict[str, float]:
    """Closed loop on the echo model for about ``seconds``."""
    target = targets(server)["echo"]
    await target.open(concurrency)
    try:
        await closed_loop(target, concurrency=concurrency, requests=1000)  # warm every worker
        probe = await closed_loop(target, concurrency=concurrency, requests=1000)
        requests = max(1000, int(probe["rps"] * seconds))
        cpu0, me0, each0 = server.cpu(), sum(psutil.Process().cpu_times()[:2]), server.worker_cpu()
        done = await closed_loop(target, concurrency=concurrency, requests=requests)
        cpu, me = server.cpu() - cpu0, sum(psutil.Process().cpu_times()[:2]) - me0
        each = [round(b - a, 2) for a, b in zip(each0, server.worker_cpu(), strict=True)]
    finally:
        await target.close()
    return {"rps": done["rps"], "errors": done["errors"], "requests": requests, "cpu_us": cpu / requests * 1e6,
            "generator_cpu_us": me / requests * 1e6, "cpu_s_per_process": each}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", choices=["all", "servers", "idle", "workers"], default="all")
    parser.add_argument("--servers", default="uvicorn,granian,granian-st", help="uvicorn, granian, granian-st")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of closed loop per worker count")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.seconds = 600, 1, 3.0
    names = args.servers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-servers-"))
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    config = write_config(tmp, fake_url)
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "BENCH_MASTER_KEY": MASTER, "PYTHONPATH": path}
    fake = subprocess.Popen([str(BIN / "legato"), "fake-provider", "--port", str(fake_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    result: dict[str, Any] = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
    try:
        wait_http(fake_url + "/health")
        if args.phases in ("all", "servers"):
            result["servers"] = run_servers(tmp, config, env, names, args)
        if args.phases in ("all", "idle"):
            result["idle_rss_mb"], result["start_cpu_s"] = idle_rss(tmp, config, env, names)
        if args.phases in ("all", "workers"):
            result["workers"] = run_workers(tmp, config, env, names, args)
    finally:
        fake.terminate()
        fake.wait(15)
    result["load_average_after"] = os.getloadavg()
    report(result, args)


def run_servers(tmp: Path, config: Path, env: dict[str, str], names: list[str], args: argparse.Namespace) -> Any:
    servers = gateway_servers(config, 1, names) + bare_servers(names)
    try:
        for s in servers:
            start(s, tmp, env)
        time.sleep(2)  # settle after start-up and key creation
        idle = {s.name: s.rss_mb() for s in servers if s.gateway}
        progress(f"idle RSS (MB): {idle}")
        out = anyio.run(compare, servers, args, backend_options={"use_uvloop": True})
        out["idle_rss_mb"] = idle
        out["after_rss_mb"] = {s.name: s.rss_mb() for s in servers if s.gateway}
        return out
    finally:
        stop(servers)


def idle_rss(tmp: Path, config: Path, env: dict[str, str], names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each gateway alone: started on a new store (which a child process creates and
    migrates), then restarted on that store, as a deployment restarts; RSS 2 s after it
    is ready, and the CPU seconds used by then (with the migration child's)."""
    rss: dict[str, dict[str, Any]] = {}
    cpu: dict[str, dict[str, Any]] = {}
    for name in names:
        shutil.rmtree(tmp / ".legato", ignore_errors=True)
        for when in ("new_store", "existing_store"):
            (server,) = gateway_servers(config, 1, [name])
            try:
                start(server, tmp, env, create_key=False)
                time.sleep(2)
                rss.setdefault(name, {})[when] = server.rss_mb()
                cpu.setdefault(name, {})[when] = server.start_cpu_s()
            finally:
                stop([server])
    return rss, cpu


def run_workers(tmp: Path, config: Path, env: dict[str, str], names: list[str], args: argparse.Namespace) -> Any:
    out: dict[str, Any] = {}
    for workers in (1, 2):
        for server in gateway_servers(config, workers, names):
            try:
                start(server, tmp, env)
                m = anyio.run(throughput, server, args.seconds, 64, backend_options={"use_uvloop": True})
            finally:
                stop([server])
            m["load_average"] = os.getloadavg()[0]
            out.setdefault(server.name, {})[str(workers)] = m
            progress(f"{server.name} workers={workers}: {m}")
    return out


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    if "servers" in r:
        print("\ngateway CPU per request (process tree, user+system; closed loop, 16 connections; median round)")
        head = ("healthz", "chat echo", "chat upstream", "bare app")
        print(f"{'server':<20}" + "".join(f"{h:>16}" for h in head))
        for name, by in r["servers"].items():
            if name in ("idle_rss_mb", "after_rss_mb"):
                continue
            cells = [by.get(k) for k in ("healthz", "echo", "upstream", "bare")]
            print(f"{name:<20}" + "".join(f"{c['cpu_us']:>10.0f} us/rq" if c else f"{'-':>16}" for c in cells))
        print("wall-clock rates (noise on a shared machine):")
        for name, by in r["servers"].items():
            if name not in ("idle_rss_mb", "after_rss_mb"):
                rates = ", ".join(f"{k} {v['rps']:.0f}/s" for k, v in by.items() if k != "rounds")
                print(f"  {name}: {rates}")
        for when in ("idle_rss_mb", "after_rss_mb"):
            if when not in r["servers"]:
                continue
            rss = ", ".join(
                f"{n}: " + " + ".join(f"{k} {v:.0f}" for k, v in m.items()) for n, m in r["servers"][when].items()
            )
            print(f"RSS MB ({when.split('_')[0]}, 10 models configured): {rss}")
    if "idle_rss_mb" in r:
        print("\nidle RSS (MB), 10 models configured, 2 s after ready:")
        for name, by in r["idle_rss_mb"].items():
            for when, m in by.items():
                print(f"  {name}, {when.replace('_', ' ')}: " + " + ".join(f"{k} {v:.0f}" for k, v in m.items()))
    if "start_cpu_s" in r:
        print("CPU seconds used by then (the process tree; children: the store's migration child):")
        for name, by in r["start_cpu_s"].items():
            for when, m in by.items():
                print(f"  {name}, {when.replace('_', ' ')}: own {m['own']:.2f}, children {m['children']:.2f}")
    if "workers" in r:
        print("\nworkers: closed loop on the echo model, 64 connections")
        for name, by in r["workers"].items():
            for n, m in by.items():
                print(
                    f"  {name} --workers {n}: {m['rps']:.0f} req/s, gateway CPU {m['cpu_us']:.0f} us/request, "
                    f"load generator {m['generator_cpu_us']:.0f} us/request, errors {m['errors']}, "
                    f"CPU s per process {m['cpu_s_per_process']}, "
                    f"load average {m['load_average']:.2f}"
                )
    before, after = (" ".join(f"{x:.2f}" for x in r[k]) for k in ("load_average_before", "load_average_after"))
    print(f"load average before {before}, after {after}; {r['cpus']} CPUs")
    out = Path(__file__).parent / "results" / "servers.json"
    kept = json.loads(out.read_text()) if out.exists() else {}
    kept.setdefault("runs", {})[args.phases] = {"args": vars(args), **r}
    out.write_text(json.dumps(kept, indent=2, default=str))


if __name__ == "__main__":
    main()

"""What a stream through the gateway costs: CPU per stream and per chunk, and the time
to the first chunk added over the fake provider alone.

Processes: three fake providers (``legato fake-provider``), each answering every
call with the same text in 4-character pieces, 1, 16 and 256 of them; the gateway
(``legato serve``, one worker, SQLite store, in-memory limits) with an OpenAI and an
Anthropic model on each fake; and this load generator (pre-built requests on kept-alive
connections, see ``gateway.Target``).

- **CPU per stream**: the gateway process's CPU time (user + system, psutil) over a
  batch of streams, divided by the streams, in rounds that alternate the nine
  (client, chunks) pairs (an OpenAI and an Anthropic client on a model of their own
  protocol; an OpenAI client on a routing group of one deployment, ``group``), so
  that other load on the machine hits all alike; the median round is reported. CPU
  time rather than wall time: on a shared machine the wall clock mostly measures
  waiting for a core. The cost of a chunk is the slope between 16 and 256 chunks;
  the fixed cost of a stream is what is left at one.
  A non-streamed call of the same model is measured alongside, for the fixed part.
- **Time to the first chunk** (wall clock, secondary): sequential streams of 16
  chunks, straight to the fake provider and through the gateway, interleaved; the
  first content event is timed from the request's first byte.
- ``--profile FILE``: a py-spy profile (collapsed stacks) of the gateway while it
  serves OpenAI streams of ``--profile-chunks`` chunks (256 by default).

Writes ``bench/results/gateway_streaming.json``. Run: ``python bench/gateway_streaming.py``
(about 1 min; ``--quick`` for a smoke run).
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
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from gateway import MASTER, Target, free_port, progress, wait_http

CHUNKS = (1, 16, 256)
PIECE = "tea "  # 4 characters: one token-sized piece per chunk
RESULTS = Path(__file__).resolve().parent / "results" / "gateway_streaming.json"
MARKERS = {"openai": b'"content":"', "anthropic": b'"text_delta"'}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
# What is measured per stream: OpenAI and Anthropic clients on a model of the same
# protocol, and OpenAI clients on a routing group of one deployment (the router's cost).
KINDS = {"openai": "openai", "anthropic": "anthropic", "group": "openai"}


class StreamTarget(Target):
    """A :class:`gateway.Target` that times the first frame holding ``marker``."""

    def __init__(self, url: str, headers: dict[str, str], body: dict[str, Any], marker: bytes) -> None:
        super().__init__(url, headers, body)
        self.marker = marker

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_content: bool
    ) -> tuple[int, float | None]:
        start = time.perf_counter()
        first: float | None = None
        writer.write(self.raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"not a stream: {head!r}")
        while True:
            size = int((await reader.readline()).strip(), 16)
            frame = await reader.readexactly(size + 2)
            if first is None and self.marker in frame.replace(b'"content":""', b""):
                first = time.perf_counter() - start
            if size == 0:
                return status, first


def body(api: str, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Write about tea."}],
        "max_tokens": 1024,
        "stream": True,
    }


async def batch(target: Target, streams: int, concurrency: int) -> None:
    left = streams

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status, _ = await target.call()
            if status != 200:
                raise RuntimeError(f"status {status}")

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def measure(
    args: argparse.Namespace, fakes: dict[int, str], gw_url: str, key: str, gw: psutil.Process
) -> dict[str, Any]:
    targets = {
        (kind, n): StreamTarget(
            gw_url + PATHS[KINDS[kind]], {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
            body(KINDS[kind], f"{kind}-{n}"), MARKERS[KINDS[kind]],
        )
        for kind in KINDS for n in CHUNKS
    }  # fmt: skip
    direct = {
        api: StreamTarget(
            fakes[16] + PATHS[api], {"Authorization": "Bearer sk-fake", "x-api-key": "sk-fake",
                                     "anthropic-version": "2023-06-01"},
            body(api, "fake"), MARKERS[api],
        )
        for api in PATHS
    }  # fmt: skip
    plain = Target(
        gw_url + PATHS["openai"], {"Authorization": f"Bearer {key}"}, {**body("openai", "openai-16"), "stream": False}
    )
    for t in (*targets.values(), plain):
        await t.open(args.concurrency)
    for t in direct.values():
        await t.open(1)
    per_round: dict[str, list[float]] = {f"{api}/{n}": [] for api, n in targets}
    per_round["openai/plain"] = []
    ttfc: dict[str, list[float]] = {f"{k}/{where}": [] for k in PATHS for where in ("direct", "gateway")}
    try:
        for t in (*targets.values(), plain):  # warm every path: connections, lazy imports, caches
            await batch(t, 30, args.concurrency)
        for r in range(args.rounds):
            c0 = cpu(gw)
            await batch(plain, args.streams, args.concurrency)
            per_round["openai/plain"].append((cpu(gw) - c0) / args.streams * 1e3)
            for (api, n), t in targets.items():
                streams = args.streams if n <= 16 else args.streams // 5  # about 1 s of CPU each
                c0 = cpu(gw)
                await batch(t, streams, args.concurrency)
                per_round[f"{api}/{n}"].append((cpu(gw) - c0) / streams * 1e3)
            progress(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} ms" for k, v in per_round.items()))
        for _ in range(args.ttfc_samples):
            for api in PATHS:
                _, first = await direct[api].call(first_content=True)
                ttfc[f"{api}/direct"].append((first or 0.0) * 1e3)
                _, first = await targets[(api, 16)].call(first_content=True)
                ttfc[f"{api}/gateway"].append((first or 0.0) * 1e3)
        if args.profile:
            spy = str(Path(sys.executable).parent / "py-spy")
            command = [spy, "record", "--pid", str(gw.pid), "--duration", str(args.profile_seconds)]
            command += ["--rate", "500", "--format", "raw", "--output", args.profile]
            profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + args.profile_seconds
            while time.monotonic() < deadline:
                await batch(targets[("openai", args.profile_chunks)], 10, args.concurrency)
            profiler.wait(60)
    finally:
        for t in (*targets.values(), *direct.values(), plain):
            await t.close()
    out: dict[str, Any] = {"cpu_ms_per_stream": {}, "ttfc_ms": {}}
    for k, values in per_round.items():
        out["cpu_ms_per_stream"][k] = {"median": statistics.median(values), "min": min(values), "rounds": values}
    for kind in KINDS:
        m = {n: out["cpu_ms_per_stream"][f"{kind}/{n}"]["median"] for n in CHUNKS}
        per_chunk = (m[256] - m[16]) / (256 - 16)
        out[f"{kind}_cpu_us_per_chunk"] = per_chunk * 1e3
        out[f"{kind}_cpu_ms_fixed"] = m[1] - per_chunk
    for api in PATHS:
        d, g = statistics.median(ttfc[f"{api}/direct"]), statistics.median(ttfc[f"{api}/gateway"])
        out["ttfc_ms"][api] = {"direct_p50": d, "gateway_p50": g, "added_p50": g - d}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=300, help="streams per batch of 16 chunks or fewer")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ttfc-samples", type=int, default=200)
    parser.add_argument("--profile", help="write a py-spy profile (collapsed stacks) here")
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--profile-chunks", type=int, choices=CHUNKS, default=256, help="the streams profiled")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.streams, args.ttfc_samples = 2, 40, 30

    legato = str(Path(sys.executable).parent / "legato")
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-streaming-"))
    ports = {n: free_port() for n in CHUNKS}
    fakes = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    gw_port = free_port()
    gw_url = f"http://127.0.0.1:{gw_port}"
    models = ""
    for n in CHUNKS:
        (tmp / f"fake-{n}.yaml").write_text(f"default: {{text: {json.dumps(PIECE * n)}, chunk_chars: {len(PIECE)}}}\n")
        models += (
            f"  openai-{n}:\n    provider: openai\n    model: gpt-fake\n    base_url: {fakes[n]}/v1\n"
            f"    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.15, output: 0.6}}\n"
            f"  anthropic-{n}:\n    provider: anthropic\n    model: claude-fake\n    base_url: {fakes[n]}\n"
            f"    api_key: env:BENCH_FAKE_KEY\n    price: {{input: 0.8, output: 4.0}}\n"
        )
    groups = "".join(f"  group-{n}:\n    deployments: [{{model: openai-{n}}}]\n" for n in CHUNKS)
    (tmp / "legato.yaml").write_text(
        "models:\n"
        + models
        + "groups:\n"
        + groups
        + "server:\n  master_key: env:BENCH_MASTER_KEY\n  max_connections_per_client: 0\n"
    )
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "BENCH_MASTER_KEY": MASTER, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [legato, "fake-provider", "--port", str(ports[n]), "--script", str(tmp / f"fake-{n}.yaml")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for n in CHUNKS
    ]  # fmt: skip
    procs.append(
        subprocess.Popen(
            [legato, "serve", "--config", str(tmp / "legato.yaml"), "--port", str(gw_port), "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    )  # fmt: skip
    try:
        for url in (*fakes.values(), gw_url):
            wait_http(url + ("/healthz" if url == gw_url else "/health"))
        created = httpx.post(
            gw_url + "/v1/admin/keys",
            json={"name": "bench", "scopes": ["chat"], "rpm": 10_000_000, "budget_usd": 1e6},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        key = created.json()["key"]
        gw = psutil.Process(procs[-1].pid)
        load_before = os.getloadavg()
        result = anyio.run(measure, args, fakes, gw_url, key, gw, backend_options={"use_uvloop": True})
        result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    report(result)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), **result}, indent=2))


def report(r: dict[str, Any]) -> None:
    print("\ngateway CPU per stream (one worker; median of rounds; user + system CPU time)")
    print(f"{'client':<10}" + "".join(f"{f'{n} chunks':>12}" for n in CHUNKS) + f"{'per chunk':>12}{'fixed':>10}")
    for kind in KINDS:
        row = "".join(f"{r['cpu_ms_per_stream'][f'{kind}/{n}']['median']:>10.3f}ms" for n in CHUNKS)
        print(f"{kind:<10}{row}{r[f'{kind}_cpu_us_per_chunk']:>10.1f}µs{r[f'{kind}_cpu_ms_fixed']:>8.3f}ms")
    print(f"a non-streamed call of the same model: {r['cpu_ms_per_stream']['openai/plain']['median']:.3f} ms")
    print("time to the first content chunk, 16-chunk streams, sequential (wall clock)")
    for api, t in r["ttfc_ms"].items():
        print(
            f"  {api:<10} direct {t['direct_p50']:.3f} ms, through the gateway {t['gateway_p50']:.3f} ms, "
            f"added {t['added_p50']:.3f} ms (p50)"
        )
    before, after = (" ".join(f"{x:.2f}" for x in r[k]) for k in ("load_average_before", "load_average_after"))
    print(f"load average before {before}, after {after}")


if __name__ == "__main__":
    main()

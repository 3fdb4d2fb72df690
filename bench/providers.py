"""Model-layer overhead on loopback: legato adapter vs raw httpx vs the official openai SDK.

The fake provider runs in its own process (``legato fake-provider``), so client and
server do not share an event loop. Each client sends the same Chat Completions
request; the floor is raw ``httpx`` (POST + ``json.loads``), measured in the same
run, interleaved in rounds so that machine noise hits every contender alike.

    python bench/providers.py [--requests 1500] [--streams 300]

Prints a table and writes ``bench/results/providers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results" / "providers.json"
MESSAGES = [{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}]
REPLY_SCRIPT = "default: {text: 'Prince Hamlet avenges his father and nearly everyone dies.', chunk_chars: 8}\n"


def start_fake(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    script = tmp / "bench-fake.yaml"
    script.write_text(REPLY_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from legato.cli import main; main()", "fake-provider", "--port", "0",
         "--script", str(script)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    match = re.search(r"listening on (http://\S+)", proc.stderr.readline())
    if not match:
        proc.kill()
        raise SystemExit("the fake provider did not start")
    return proc, match.group(1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


CPU: dict[str, float] = {}  # "section/contender" -> client CPU seconds spent


async def timed(fn: Callable[[], Awaitable[Any]], n: int, out: list[float], cpu_key: str) -> None:
    cpu = time.process_time()
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    CPU[cpu_key] = CPU.get(cpu_key, 0.0) + time.process_time() - cpu


async def bench_chat(base: str, requests: int, rounds: int = 10) -> dict[str, list[float]]:
    import openai

    from legato.providers import ChatRequest, Message, OpenAIModel

    raw = httpx.AsyncClient(base_url=base + "/v1", headers={"authorization": "Bearer sk-bench"})
    model = OpenAIModel("gpt-4o-mini", base_url=base + "/v1", api_key="sk-bench")
    sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-bench", max_retries=0)
    request = ChatRequest(messages=[Message(role="user", content=MESSAGES[0]["content"])])

    async def raw_call() -> Any:
        response = await raw.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
        return json.loads(response.content)["choices"][0]["message"]["content"]

    async def legato_call() -> Any:
        return (await model.chat(request)).text

    async def sdk_call() -> Any:
        result = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        return result.choices[0].message.content

    calls = {"raw httpx": raw_call, "legato": legato_call, "openai SDK": sdk_call}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():  # warm up pools and caches
        for _ in range(50):
            await fn()
    per_round = max(1, requests // rounds)
    for _ in range(rounds):
        for name, fn in calls.items():
            await timed(fn, per_round, samples[name], f"chat/{name}")
    await raw.aclose()
    await model.aclose()
    await sdk.close()
    return samples


async def bench_ttfc(base: str, streams: int, rounds: int = 10) -> dict[str, list[float]]:
    import openai

    from legato.providers import ChatRequest, Message, OpenAIModel

    raw = httpx.AsyncClient(base_url=base + "/v1")
    model = OpenAIModel("gpt-4o-mini", base_url=base + "/v1", api_key="sk-bench")
    sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-bench", max_retries=0)
    request = ChatRequest(messages=[Message(role="user", content=MESSAGES[0]["content"])])
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    async def raw_first() -> None:
        async with raw.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    break

    async def legato_first() -> None:
        stream = model.stream(request)
        async for chunk in stream:
            if chunk.text:
                break
        await stream.aclose()  # type: ignore[attr-defined]

    async def sdk_first() -> None:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()

    calls = {"raw httpx": raw_first, "legato": legato_first, "openai SDK": sdk_first}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        for _ in range(20):
            await fn()
    per_round = max(1, streams // rounds)
    for _ in range(rounds):
        for name, fn in calls.items():
            await timed(fn, per_round, samples[name], f"ttfc/{name}")
    await raw.aclose()
    await model.aclose()
    await sdk.close()
    return samples


async def bench_in_process(calls: int = 2000, repeat: int = 5) -> dict[str, float]:
    """Client CPU per call with no network at all (``httpx.MockTransport`` answers):
    exactly what the adapter adds to building the request and reading the answer."""
    from legato.providers import ChatRequest, Message, OpenAIModel, Usage
    from legato.testing import _wire as wire

    answer = wire.Answer("chatcmpl-1", "gpt-4o-mini", "Prince Hamlet avenges his father.", (), "stop",
                         Usage(input_tokens=12, output_tokens=8), 8, 0)  # fmt: skip
    body = wire.openai_completion(answer)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json", "x-request-id": "r"})

    transport = httpx.MockTransport(handler)
    raw = httpx.AsyncClient(base_url="http://fake/v1", transport=transport)
    model = OpenAIModel("gpt-4o-mini", base_url="http://fake/v1", api_key="sk", transport=transport)
    request = ChatRequest(messages=[Message(role="user", content=MESSAGES[0]["content"])])

    async def raw_call() -> Any:
        response = await raw.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
        return json.loads(response.content)["choices"][0]["message"]["content"]

    async def legato_call() -> Any:
        return (await model.chat(request)).text

    result: dict[str, float] = {}
    for name, fn in (("raw httpx", raw_call), ("legato", legato_call)):
        for _ in range(200):
            await fn()
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            for _ in range(calls):
                await fn()
            best = min(best, (time.process_time() - start) / calls)
        result[name] = best * 1e6
    await raw.aclose()
    await model.aclose()
    return result


def import_time(statement: str, repeat: int = 5) -> float:
    """Median wall time of ``python -c statement`` minus that of an empty interpreter."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    base = statistics.median(run("pass") for _ in range(repeat))
    return statistics.median(run(statement) for _ in range(repeat)) - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--streams", type=int, default=300)
    args = parser.parse_args()

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_fake(Path(tmp))
        try:
            chat = asyncio.run(bench_chat(base, args.requests))
            ttfc = asyncio.run(bench_ttfc(base, args.streams))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
    in_process = asyncio.run(bench_in_process())
    imports = {
        "import legato.providers (types)": import_time("import legato.providers"),
        "legato.providers.OpenAIModel (adapter + httpx)": import_time("import legato.providers as p; p.OpenAIModel"),
        "import openai": import_time("import openai"),
    }

    def row(section: str, samples: dict[str, list[float]], name: str) -> dict[str, float]:
        floor = statistics.median(samples["raw httpx"])
        p50 = statistics.median(samples[name])
        cpu = CPU[f"{section}/{name}"] / len(samples[name])
        cpu_floor = CPU[f"{section}/raw httpx"] / len(samples["raw httpx"])
        return {
            "p50_us": p50 * 1e6,
            "p99_us": pct(samples[name], 0.99) * 1e6,
            "added_p50_us": (p50 - floor) * 1e6,
            "client_cpu_us": cpu * 1e6,
            "added_cpu_us": (cpu - cpu_floor) * 1e6,
            "n": len(samples[name]),
        }

    report = {
        "chat": {name: row("chat", chat, name) for name in chat},
        "ttfc": {name: row("ttfc", ttfc, name) for name in ttfc},
        "in_process_cpu_us": in_process,
        "import_s": imports,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    header = f"{'p50 us':>10}{'p99 us':>10}{'added p50':>12}{'CPU us':>10}{'added CPU':>12}"
    for section, title in (("chat", "non-streaming chat (loopback)"), ("ttfc", "time to first chunk (stream)")):
        print(f"{title:<34}{header}")
        for name, r in report[section].items():
            print(
                f"  {name:<32}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['added_p50_us']:>12.0f}"
                f"{r['client_cpu_us']:>10.0f}{r['added_cpu_us']:>12.0f}"
            )
    print("in-process chat, no network (httpx.MockTransport): client CPU us/call, best of 5")
    for name, us in in_process.items():
        print(f"  {name:<32}{us:>10.1f}{us - in_process['raw httpx']:>12.1f}")
    print("import time (s, over an empty interpreter)")
    for name, seconds in imports.items():
        print(f"  {name:<48}{seconds:>8.3f}")
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Cache and micro-batching benchmarks, each against a floor measured in the same run.

* in-memory cache hit through the ``ResponseCache`` wrapper (target <= 50 us p50),
  floor: a bare call of the in-process model it wraps;
* Redis cache hit (target <= 1 ms p50 on loopback), floor: a raw Redis ``GET``;
* micro-batching the packaged all-MiniLM-L6-v2 embedding model with 64 concurrent
  callers (target >= 4x the throughput of unbatched calls), p50/p99 latency;
* a pipeline over a corpus with 30% duplicate inputs (OpenAI adapter against the
  fake provider, priced as gpt-4o-mini): upstream calls and cost without and with
  the cache.

Writes ``bench/results/cache_batch.json``. Run: ``python bench/cache_batch.py``
(``--quick`` for fewer iterations). Needs Redis at 127.0.0.1:6379 for the Redis row.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import anyio

from legato import Pipeline
from legato.batching import Batcher
from legato.cache import RedisBackend, ResponseCache
from legato.providers import ChatRequest, Message, OpenAIModel, PythonModel, Usage
from legato.testing import FakeProvider, Reply

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "cache_batch.json"
REDIS_URL = os.environ.get("LEGATO_BENCH_REDIS", "redis://127.0.0.1:6379/0")
QUICK = "--quick" in sys.argv


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    """Microseconds per call, after a warm-up."""
    for _ in range(min(200, n)):
        await fn()
    out = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await fn()
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


REQUEST = ChatRequest(
    messages=[
        Message(role="system", content="You are a concise assistant."),
        Message(role="user", content="What is the capital of France? Answer in one word."),
    ],
    temperature=0,
    max_tokens=16,
)


async def bench_memory_hit(n: int) -> dict[str, Any]:
    inner = PythonModel(lambda request: "Paris", name="echo", thread=False)
    cache = ResponseCache(inner)
    await cache.chat(REQUEST)  # fill
    floor = await latencies(lambda: inner.chat(REQUEST), n)
    hits = await latencies(lambda: cache.chat(REQUEST), n)
    assert cache.stats.hits >= n
    return {
        "hit_p50_us": statistics.median(hits),
        "hit_p99_us": pct(hits, 0.99),
        "floor_bare_model_p50_us": statistics.median(floor),
        "target_p50_us": 50,
    }


async def bench_redis_hit(n: int) -> dict[str, Any]:
    prefix = f"legato-bench:{uuid.uuid4().hex[:8]}:"
    backend = RedisBackend(REDIS_URL, prefix=prefix)
    cache = ResponseCache(PythonModel(lambda request: "Paris", name="echo", thread=False), backend)
    try:
        await cache.chat(REQUEST)
        client = backend.client
        await client.set(prefix + "raw", b"x" * 400)
        floor = await latencies(lambda: client.get(prefix + "raw"), n)
        hits = await latencies(lambda: cache.chat(REQUEST), n)
        assert cache.stats.backend_errors == 0
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await cache.aclose()
    return {
        "hit_p50_us": statistics.median(hits),
        "hit_p99_us": pct(hits, 0.99),
        "floor_raw_get_p50_us": statistics.median(floor),
        "target_p50_us": 1000,
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def corpus_texts(n: int, words_per_text: tuple[int, int] = (8, 24)) -> list[str]:
    rng = random.Random(7)
    words = ["order", "delivery", "late", "refund", "broken", "great", "support", "price", "quality", "screen"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(*words_per_text))) + "." for _ in range(n)]


async def bench_batching(
    callers: int, rounds: int, repeats: int, words_per_text: tuple[int, int] = (3, 8)
) -> dict[str, Any]:
    import torch

    from legato.tasks import EmbedTask, get

    # One intra-op thread on both sides: on a small shared machine, OpenMP threads
    # spinning against other processes distort large batches far more than single calls.
    torch.set_num_threads(1)
    task = get("embed")
    assert isinstance(task, EmbedTask)
    await task.awarm_up()
    texts = corpus_texts(callers * rounds, words_per_text)

    async def drive(call: Callable[[str], Awaitable[list[float]]]) -> tuple[float, list[float], float]:
        lat: list[float] = []

        async def caller(i: int) -> None:
            for r in range(rounds):
                started = time.perf_counter()
                vector = await call(texts[i * rounds + r])
                lat.append((time.perf_counter() - started) * 1000)
                assert len(vector) == 384

        started, cpu = time.perf_counter(), cpu_seconds()
        async with anyio.create_task_group() as tg:
            for i in range(callers):
                tg.start_soon(caller, i)
        return time.perf_counter() - started, lat, cpu_seconds() - cpu

    async def unbatched(text: str) -> list[float]:
        return (await task.run_batch([text]))[0]

    # Interleaved repetitions, best of each: the machine may be shared, and a slow
    # moment should not land on one side only.
    await drive(unbatched)  # warm-up of the single-item path
    plain_s, plain_lat, plain_cpu = float("inf"), [], 0.0
    batched_s, batched_lat, batched_cpu, batches = float("inf"), [], 0.0, 0
    for _ in range(repeats):
        took, lat, cpu = await drive(unbatched)
        if took < plain_s:
            plain_s, plain_lat, plain_cpu = took, lat, cpu
        async with Batcher(task.run_batch, max_batch=64, max_wait_ms=5, name="minilm") as batcher:
            took, lat, cpu = await drive(batcher)
        if took < batched_s:
            batched_s, batched_lat, batched_cpu, batches = took, lat, cpu, batcher.batches
    items = callers * rounds
    return {
        "callers": callers,
        "items": items,
        "words_per_text": list(words_per_text),
        "unbatched_items_per_s": items / plain_s,
        "batched_items_per_s": items / batched_s,
        "speedup": plain_s / batched_s,
        "unbatched_cpu_ms_per_item": plain_cpu * 1000 / items,
        "batched_cpu_ms_per_item": batched_cpu * 1000 / items,
        "cpu_speedup": plain_cpu / batched_cpu if batched_cpu else None,
        "unbatched_p50_ms": statistics.median(plain_lat),
        "unbatched_p99_ms": pct(plain_lat, 0.99),
        "batched_p50_ms": statistics.median(batched_lat),
        "batched_p99_ms": pct(batched_lat, 0.99),
        "batches": batches,
        "target_speedup": 4.0,
        "torch_threads": torch_threads(),
        "load_average_1m": os.getloadavg()[0],
    }


async def bench_corpus(n: int) -> dict[str, Any]:
    distinct = corpus_texts(int(n * 0.7))
    rng = random.Random(11)
    docs = distinct + [rng.choice(distinct) for _ in range(n - len(distinct))]
    rng.shuffle(docs)
    usage = Usage(input_tokens=600, output_tokens=120)
    out: dict[str, Any] = {"documents": n, "distinct": len(set(docs))}
    async with FakeProvider(seed=0, default=Reply(text="positive", usage=usage)) as fake:
        for label, cached in (("without_cache", False), ("with_cache", True)):
            fake.clear()
            adapter = OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-bench")
            model = ResponseCache(adapter) if cached else adapter
            p = Pipeline(f"corpus-{label}")

            @p.step(map="doc", max_concurrency=16)
            async def classify(doc: str, model: Any = model) -> str:
                request = ChatRequest(
                    messages=[
                        Message(role="system", content="Classify the review as positive or negative."),
                        Message(role="user", content=doc),
                    ],
                    temperature=0,
                    max_tokens=5,
                )
                return str((await model.chat(request)).text)

            try:
                result = await p.run(doc=docs)
            finally:
                await model.aclose()
            assert result.ok, result.error
            out[label] = {
                "upstream_calls": len(fake.requests_for("openai.chat")),
                "cost_usd": result.cost,
                "cache_hits": result.usage.get("cache_hits", 0),
                "saved_usd": result.usage.get("saved", 0.0),
            }
    return out


def batching_rows(bat: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    lo, hi = bat["words_per_text"]
    return [
        (
            f"MiniLM {bat['callers']} callers, {lo}-{hi} words",
            f"{bat['batched_items_per_s']:.0f} items/s",
            f"unbatched {bat['unbatched_items_per_s']:.0f} items/s",
            f"x{bat['speedup']:.1f} (>= x4)",
        ),
        (
            "  CPU ms per item",
            f"{bat['batched_cpu_ms_per_item']:.1f}",
            f"{bat['unbatched_cpu_ms_per_item']:.1f}",
            f"x{bat['cpu_speedup']:.1f}",
        ),
        (
            "  latency p50/p99",
            f"{bat['batched_p50_ms']:.0f}/{bat['batched_p99_ms']:.0f} ms",
            f"{bat['unbatched_p50_ms']:.0f}/{bat['unbatched_p99_ms']:.0f} ms",
            f"{bat['batches']} batches",
        ),
    ]


def report(results: dict[str, Any]) -> None:
    mem, red, bat, cor = results["memory_hit"], results["redis_hit"], results["batching"], results["corpus"]
    rows = [
        (
            "memory hit p50",
            f"{mem['hit_p50_us']:.1f} us",
            f"bare model {mem['floor_bare_model_p50_us']:.1f} us",
            "<= 50 us",
        ),
        ("memory hit p99", f"{mem['hit_p99_us']:.1f} us", "", ""),
    ]
    if red:
        rows += [
            (
                "redis hit p50",
                f"{red['hit_p50_us']:.0f} us",
                f"raw GET {red['floor_raw_get_p50_us']:.0f} us",
                "<= 1000 us",
            ),
            ("redis hit p99", f"{red['hit_p99_us']:.0f} us", "", ""),
        ]
    workloads = (results["batching_keywords"], bat, results["batching_sentences"])
    rows += [row for b in workloads for row in batching_rows(b)]
    rows += [
        (
            f"corpus {cor['documents']} docs, 30% dup",
            f"{cor['with_cache']['upstream_calls']} calls ${cor['with_cache']['cost_usd']:.5f}",
            f"{cor['without_cache']['upstream_calls']} calls ${cor['without_cache']['cost_usd']:.5f}",
            f"saved ${cor['with_cache']['saved_usd']:.5f}",
        ),
    ]
    widths = [max(len(r[i]) for r in [("measure", "legato", "floor / without", "target"), *rows]) for i in range(4)]
    for row in [("measure", "legato", "floor / without", "target"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


async def main() -> None:
    n = 2000 if QUICK else 10_000
    if "--only-batching" in sys.argv:
        for words in ((1, 3), (3, 8), (8, 24)):
            print(json.dumps(await bench_batching(64, 1, 2, words), indent=2))
        return
    results: dict[str, Any] = {"memory_hit": await bench_memory_hit(n)}
    try:
        results["redis_hit"] = await bench_redis_hit(n // 5)
    except OSError as exc:
        print(f"redis benchmark skipped: {exc}", file=sys.stderr)
        results["redis_hit"] = None
    results["batching_keywords"] = await bench_batching(64, 1, 2, (1, 3))  # labels, entity names
    results["batching"] = await bench_batching(64, 1, 2)  # short queries
    results["batching_sentences"] = await bench_batching(64, 1, 2, (8, 24))  # review sentences
    results["corpus"] = await bench_corpus(100 if QUICK else 300)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report(results)
    print(f"\nwrote {RESULTS.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    anyio.run(main)

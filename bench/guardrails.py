"""Latency a PII guard adds to a model call, and what sealing costs per stored value.

The inner model answers instantly in process (it echoes the prompt), so what is
measured is the guard alone: detection over a 1 KB prompt, the placeholder rewrite,
the worker-thread hop and the restore. Cases:

- ``engine=patterns`` (Presidio's pattern and checksum recognisers, no language model)
  with personal data and without;
- ``engine=ner`` (plus spaCy's NER, loaded with ``tok2vec`` and ``ner`` only);
- ``engine=ner`` asked for pattern entities only (spaCy is skipped);
- for comparison, Presidio's own ``AnalyzerEngine`` on the full spaCy pipeline (what
  the guard ran before), called directly on the same text.

Each row gives wall-clock p50/p99 per call and CPU milliseconds per call (process
time, which load from other processes inflates less than wall time), with the load
average at the start. Also: AES-GCM seal and open of a 1 KB stored value. Prints a
table and writes bench/results/guardrails.json.

    python bench/guardrails.py [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from legato.guardrails import PIIGuard
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message
from legato.store._crypto import Sealer

RESULTS = Path(__file__).parent / "results" / "guardrails.json"
# About 3 findings per 85 characters: a dense worst case (a real 1 KB ticket has a few).
PII = "Customer John Smith (john.smith@example.com, phone 212-555-0143) asks about order 4471. "
CLEAN = "The parcel left the warehouse on time and the tracking page shows it in transit. "
PATTERNS = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"]


class Echo:
    name = "echo"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        reply = Message(role="assistant", content=request.messages[-1].text)
        return ChatResponse(message=reply, model="e", provider="e")

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _text(unit: str) -> str:
    return (unit * (1024 // len(unit) + 1))[:1024]


def _prompt(unit: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=_text(unit))])


async def _time(call: Callable[[], Awaitable[Any]], calls: int) -> dict[str, float]:
    for _ in range(3):  # builds the detector (loads spaCy) and warms caches
        await call()
    wall = []
    cpu = time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        await call()
        wall.append((time.perf_counter() - t) * 1000)
    cpu_ms = (time.process_time() - cpu) / calls * 1000
    wall.sort()
    return {
        "p50_ms": statistics.median(wall),
        "p99_ms": wall[min(len(wall) - 1, int(len(wall) * 0.99))],
        "cpu_ms": cpu_ms,
    }


def _presidio_before() -> Callable[[str], Awaitable[Any]]:
    """Presidio's AnalyzerEngine on the full shipped spaCy pipeline, as the guard used it."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from legato.guardrails._presidio import _offline_tldextract
    from legato.tasks._packaged import spacy_model_dir

    _offline_tldextract()
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(spacy_model_dir())}]}
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=config).create_engine())

    async def call(text: str) -> Any:
        return await anyio.to_thread.run_sync(lambda: engine.analyze(text=text, language="en", score_threshold=0.5))

    return call


async def main(calls: int) -> None:
    echo = Echo()
    load = os.getloadavg()[0]
    pii, clean = _prompt(PII), _prompt(CLEAN)

    def guard(**options: Any) -> Callable[[ChatRequest], Awaitable[Any]]:
        return PIIGuard(echo, **options).chat

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "no guard": lambda: echo.chat(pii),
        "mask, engine=patterns, 1 KB with PII": lambda: guard(engine="patterns")(pii),
        "block, engine=patterns, 1 KB without PII": lambda: guard(engine="patterns", mode="block")(clean),
        "mask, engine=ner, 1 KB with PII": lambda: guard(engine="ner")(pii),
        "block, engine=ner, 1 KB without PII": lambda: guard(engine="ner", mode="block")(clean),
        "mask, engine=ner, pattern entities only": lambda: guard(engine="ner", entities=PATTERNS)(pii),
    }
    before = _presidio_before()
    cases["before: Presidio AnalyzerEngine, 1 KB with PII"] = lambda: before(_text(PII))
    rows = {name: await _time(call, calls) for name, call in cases.items()}
    sealer, value = Sealer("bench", b"k" * 32), "x" * 1024
    t = time.perf_counter()
    for _ in range(10_000):
        sealer.open(sealer.seal(value)[len("legato:enc:v1:bench:") :])
    seal_ms = (time.perf_counter() - t) / 10_000 * 1000
    rows["seal + open a 1 KB stored value"] = {"p50_ms": seal_ms, "p99_ms": seal_ms, "cpu_ms": seal_ms}
    print(f"load average at start: {load:.2f}; {calls} calls per case")
    print(f"{'case':48} {'p50 ms':>9} {'p99 ms':>9} {'cpu ms':>9}")
    for name, row in rows.items():
        print(f"{name:48} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f} {row['cpu_ms']:9.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"calls": calls, "load_average": load, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    anyio.run(main, parser.parse_args().calls)

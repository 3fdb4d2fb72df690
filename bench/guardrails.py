"""Latency a PII guard adds to a model call, and what sealing costs per stored value.

The inner model answers instantly in process (it echoes the prompt), so what is
measured is the guard alone: Presidio's analysis (spaCy's small English pipeline plus
the pattern recognisers) of a ~1 KB prompt, the placeholder rewrite and the restore.
Three configurations: all of Presidio's entities, only pattern entities (e-mail,
phone, credit card, IBAN: spaCy still tokenises), and a prompt without personal
data. Also: AES-GCM seal and open of a 1 KB stored value. Prints p50/p99 and writes
bench/results/guardrails.json.

    python bench/guardrails.py [--calls 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from legato.guardrails import PIIGuard
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message
from legato.store._crypto import Sealer

RESULTS = Path(__file__).parent / "results" / "guardrails.json"
PII = "Customer John Smith (john.smith@example.com, +1 212-555-0143) asks about order 4471. "
CLEAN = "The parcel left the warehouse on time and the tracking page shows it in transit. "
PATTERNS = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE"]


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


def _prompt(unit: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=(unit * (1024 // len(unit) + 1))[:1024])])


async def _time(model: Any, request: ChatRequest, calls: int) -> list[float]:
    await model.chat(request)  # loads spaCy once
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        await model.chat(request)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))]}


async def main(calls: int) -> None:
    echo = Echo()
    rows: dict[str, dict[str, float]] = {
        "no guard": _stats(await _time(echo, _prompt(PII), calls)),
        "mask, all entities, 1 KB with PII": _stats(await _time(PIIGuard(echo), _prompt(PII), calls)),
        "mask, pattern entities, 1 KB with PII": _stats(
            await _time(PIIGuard(echo, entities=PATTERNS), _prompt(PII), calls)
        ),
        "block, all entities, 1 KB without PII": _stats(
            await _time(PIIGuard(echo, mode="block"), _prompt(CLEAN), calls)
        ),
    }
    sealer, value = Sealer("bench", b"k" * 32), "x" * 1024
    t = time.perf_counter()
    for _ in range(10_000):
        sealer.open(sealer.seal(value)[len("legato:enc:v1:bench:") :])
    rows["seal + open a 1 KB stored value"] = {"p50_ms": (time.perf_counter() - t) / 10_000 * 1000, "p99_ms": 0.0}
    print(f"{'case':44} {'p50 ms':>9} {'p99 ms':>9}")
    for name, row in rows.items():
        print(f"{name:44} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"calls": calls, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    anyio.run(main, parser.parse_args().calls)

"""Steps of the simulated pipeline: each sleeps for a draw from its own seeded
distribution, so the pipeline's true latency and failure distributions are known."""

from __future__ import annotations

import math
import random

import anyio

_rng = random.Random(20261205)


def _lognormal(median_s: float, sigma: float) -> float:
    return _rng.lognormvariate(math.log(median_s), sigma)


async def fetch(n: int, request: int) -> list[int]:
    await anyio.sleep(_lognormal(0.012, 0.2))
    return list(range(n))


async def score(fetch: list[int]) -> int:
    await anyio.sleep(_lognormal(0.010, 0.3))
    if _rng.random() < 0.15:
        raise ConnectionError("the scoring service refused the request")
    return sum(fetch)


async def audit() -> str:
    await anyio.sleep(_lognormal(0.060, 0.15))
    return "ok"


async def square(x: int) -> int:
    await anyio.sleep(_lognormal(0.002, 0.2))
    return x * x


async def report(score: int, audit: str, square: list[int]) -> dict[str, object]:
    return {"score": score, "audit": audit, "items": len(square)}

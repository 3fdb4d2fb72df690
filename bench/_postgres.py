"""What several benchmarks share: a throw-away PostgreSQL database per run, and a
latency summary. Not a benchmark itself (``make bench`` skips files starting with ``_``)."""

from __future__ import annotations

import statistics

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def pg_database(action: str, name: str) -> None:
    """``create`` or ``drop`` the database ``name`` on the local server."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), max and mean of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }

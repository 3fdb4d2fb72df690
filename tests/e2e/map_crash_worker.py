"""One durable run of a map step, to be SIGKILLed mid-map (used by test_map_crash).

``python map_crash_worker.py DATABASE_URL COUNTER_FILE KEY ITEMS CONCURRENCY``

Each item sleeps briefly, then appends its index to ``COUNTER_FILE`` (one
``O_APPEND`` write, atomic for a short line): the file counts how many times each
item really executed.
"""

from __future__ import annotations

import os
import sys

import anyio

from legato.engine import Pipeline
from legato.store import DurableRunner, RunStore

ITEM_S = 0.01


def build_pipeline(counter_file: str, concurrency: int) -> Pipeline:
    p = Pipeline("map_crash", inputs={"n": int})

    @p.step
    async def items(n: int) -> list[int]:
        return list(range(n))

    @p.step(map="items", max_concurrency=concurrency)
    async def work(items: int) -> int:
        await anyio.sleep(ITEM_S)
        fd = os.open(counter_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{items}\n".encode())
        finally:
            os.close(fd)
        return items * 3

    @p.step
    async def total(work: list[int]) -> int:
        return sum(work)

    return p


async def main(url: str, counter: str, key: str, n: int, concurrency: int) -> None:
    async with RunStore(url) as store:
        result = await DurableRunner(store, reflect=None).run(
            build_pipeline(counter, concurrency), {"n": n}, idempotency_key=key
        )
    print(result.status, flush=True)


if __name__ == "__main__":
    url, counter, key, n, concurrency = sys.argv[1:6]
    anyio.run(main, url, counter, key, int(n), int(concurrency))

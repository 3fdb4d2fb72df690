"""kill -9 in the middle of a map step, then resume: only items in flight run again.

A real process runs a 400-item map (8 at a time) durably; each item appends its
index to a file when it finishes. The test SIGKILLs the process once half the
items have run, retries the request with the same idempotency key (as a client
would) and counts executions per item: every item ran, and at most
``max_concurrency`` items — those in flight at the kill — ran twice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from legato.store import DurableRunner, RunStore

WORKER = Path(__file__).with_name("map_crash_worker.py")
ITEMS = 400
CONCURRENCY = 8


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("legato_map_crash_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legato.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.slow
async def test_sigkill_mid_map_reruns_only_items_in_flight(database_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "items.txt"
    key = f"map-crash-{os.urandom(4).hex()}"
    args = [database_url, str(counter), key, str(ITEMS), str(CONCURRENCY)]
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with anyio.fail_after(120):
            while len(lines(counter)) < ITEMS // 2:
                assert proc.poll() is None, f"the worker exited early ({proc.returncode})"
                await anyio.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    done_at_kill = len(lines(counter))
    assert done_at_kill < ITEMS, "the run finished before the kill"

    worker = load_worker()
    async with RunStore(database_url) as store:
        record = await store.find_by_idempotency_key(key)
        assert record is not None
        assert record.status == "running"  # orphaned mid-map
        committed = set((await store.map_items(record.id)).get("work", {}))
        assert len(committed) >= done_at_kill - CONCURRENCY
        result = await DurableRunner(store, reflect=None).run(
            worker.build_pipeline(str(counter), CONCURRENCY), {"n": ITEMS}, idempotency_key=key
        )
    assert result.ok, result.error
    assert result.outputs["total"] == 3 * sum(range(ITEMS))

    counts = Counter(int(i) for i in lines(counter))
    assert set(counts) == set(range(ITEMS)), "items never ran"
    twice = sorted(i for i, n in counts.items() if n == 2)
    assert all(n <= 2 for n in counts.values()), counts.most_common(3)
    assert not set(twice) & committed, "a committed item ran again"
    assert len(twice) <= CONCURRENCY, f"{len(twice)} items ran twice: {twice}"

"""The Task contract with a task of our own: loading once, prefetching, batching."""

from __future__ import annotations

import threading
from typing import ClassVar

import anyio

from legato import tasks


class Upper(tasks.Task[str, str]):
    name: ClassVar[str] = "upper-test"
    batched: ClassVar[bool] = True

    def __init__(self, fail_loads: int = 0) -> None:
        super().__init__()
        self.loads = 0
        self.fail_loads = fail_loads
        self.batch_sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def _load(self) -> None:
        self.release.wait(5)
        self.loads += 1
        if self.loads <= self.fail_loads:
            raise OSError("weights missing")

    def _run(self, items: list[str]) -> list[str]:
        self.batch_sizes.append(len(items))
        return [item.upper() for item in items]


async def test_the_model_loads_once_however_many_callers() -> None:
    task = Upper()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(task.awarm_up)
    assert task.loads == 1
    assert await task("a") == "A"
    assert task.loads == 1


async def test_concurrent_single_calls_share_batches() -> None:
    task = Upper()
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        results[i] = await task(f"t{i}")

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert results == {i: f"T{i}" for i in range(20)}
    assert sum(task.batch_sizes) == 20
    assert len(task.batch_sizes) < 20


def test_prefetch_loads_in_the_background_and_keeps_a_failure_for_the_next_caller() -> None:
    task = Upper(fail_loads=1)
    task.release.clear()
    task.prefetch()
    task.prefetch()  # already loading: no second thread
    assert not task.loaded
    task.release.set()
    seen: list[OSError] = []
    for _ in range(2):
        try:
            task.warm_up()  # waits for a load in progress; loads again after a failed one
            break
        except OSError as exc:
            seen.append(exc)
    assert task.loaded
    assert task.loads == 2
    # The one failed load was reported once: to this caller, or kept for it by the background thread.
    assert len(seen) + (task.prefetch_error is not None) == 1
    assert task.run_sync(["x"]) == ["X"]


def test_registered_factories_are_shared_by_options() -> None:
    tasks.register("upper-test", Upper)
    assert tasks.get("upper-test") is tasks.get("upper-test")
    assert tasks.get("upper-test", fail_loads=0) is not tasks.get("upper-test")
    assert "upper-test" in tasks.names()

"""Process-wide shared tables: one build per key, and an owner that ends their lifetime."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import pytest

from legato._shared import Shared, release_shared
from legato.tasks._base import Task


def test_concurrent_first_lookups_of_a_key_build_once() -> None:
    builds: list[int] = []
    gate = threading.Event()

    def build() -> object:
        gate.wait(5)
        builds.append(1)
        return object()

    table: Shared[str, object] = Shared("things")
    found: list[object] = []
    threads = [threading.Thread(target=lambda: found.append(table.get("k", build))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(builds) == 1
    assert len({id(v) for v in found}) == 1


def test_a_failed_build_is_not_kept() -> None:
    table: Shared[str, int] = Shared("numbers")

    def broken() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        table.get("k", broken)
    assert table.get("k", lambda: 2) == 2


def test_release_forgets_every_value_and_hands_it_to_the_owner_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("legato._shared._tables", weakref.WeakSet())  # leave the process's real tables alone
    released: list[str] = []
    table: Shared[str, str] = Shared("names", release=released.append)
    first = table.get("a", lambda: "A")
    release_shared()
    assert released == [first]
    assert len(table) == 0
    assert table.get("a", lambda: "A2") == "A2"


class _SlowTask(Task[str, str]):
    name = "slow-for-test"

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def _load(self) -> None:
        self.gate.wait(10)

    def _run(self, items: list[str]) -> list[str]:
        return items


def test_releasing_the_tasks_table_joins_a_warm_up_still_running() -> None:
    gate = threading.Event()
    task = _SlowTask(gate)
    table: Shared[str, Task[Any, Any]] = Shared("tasks", release=Task.join_prefetch)
    table.get("slow", lambda: task)
    task.prefetch()
    assert task._prefetching is not None
    assert task._prefetching.is_alive()
    threading.Timer(0.05, gate.set).start()
    table.release()
    assert not task._prefetching.is_alive()
    assert task.loaded

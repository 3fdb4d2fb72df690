"""Process-wide tables of things built once and shared, with an owner.

Loaded model weights, built-in tasks and the in-process chat model of the local
tasks are expensive to build and safe to share, so each is built once per key and
process. :class:`Shared` is the one way to keep such a table: one build per key
(concurrent first lookups of a key wait for the one build; lookups of other keys do
not), and a lifetime that ends with :meth:`Shared.release`, which forgets every value
and hands it to the table's ``release`` callback (a task joins its warm-up thread
there). :func:`release_shared` ends the lifetime of every table of the process: what
a test or an embedding application calls to give the memory back.

A leaf module: it imports nothing from legato, so providers and tasks may both use it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Shared", "release_shared"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_tables: weakref.WeakSet[Shared[object, object]] = weakref.WeakSet()


class Shared(Generic[K, V]):
    """Values built once per key for the whole process; ``release`` ends their lifetime."""

    def __init__(self, what: str, *, release: Callable[[V], None] | None = None) -> None:
        self.what = what
        self._values: dict[K, V] = {}
        self._building: dict[K, threading.Lock] = {}
        self._lock = threading.Lock()
        self._on_release = release
        _tables.add(self)  # type: ignore[arg-type]

    def get(self, key: K, build: Callable[[], V]) -> V:
        """The value of ``key``, built by ``build()`` on first use (an exception from
        ``build`` reaches the caller and nothing is kept, so the next lookup builds again)."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                return value
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                value = self._values.get(key)
            if value is None:
                value = build()
                with self._lock:
                    self._values[key] = value
        return value

    def peek(self, key: K) -> V | None:
        """The value of ``key`` if it was built, without building it."""
        with self._lock:
            return self._values.get(key)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._values.values())

    def release(self) -> None:
        """Forget every value (a later lookup builds again), handing each to ``release``."""
        with self._lock:
            values, self._values, self._building = list(self._values.values()), {}, {}
        if self._on_release is not None:
            for value in values:
                self._on_release(value)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __repr__(self) -> str:
        return f"<Shared {self.what}: {len(self)}>"


def release_shared() -> None:
    """End the lifetime of every shared table of the process (see the module docstring)."""
    for table in list(_tables):
        table.release()

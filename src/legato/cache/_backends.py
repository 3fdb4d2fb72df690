"""Where cached bytes live: the backend protocol and the in-memory LRU backend.

A backend stores opaque bytes under string keys with an optional time to live. It
knows nothing of requests or responses, so the same backends serve the response
cache, the semantic cache and step memoization. The in-memory LRU is written here
(an ``OrderedDict`` with an entries bound and a bytes bound) because the libraries
that offer one bound entries only, not the memory they take.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["CacheBackend", "MemoryBackend"]


@runtime_checkable
class CacheBackend(Protocol):
    """Bytes by key, with expiry. Every method may raise the backend's own I/O errors."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds, ``None`` for no expiry."""
        ...

    async def delete(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """An in-process LRU bounded by entry count and by total value bytes.

    ``clock`` (seconds, ``time.monotonic`` by default) decides expiry, so tests can
    move time forward. A value larger than ``max_bytes`` is not stored.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._subjects: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Total bytes of the stored values."""
        return self._bytes

    async def get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and self.clock() >= expires_at:
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if key in self._data:
            self._remove(key)
        if len(value) > self.max_bytes:
            return
        expires_at = None if ttl is None else self.clock() + ttl
        self._data[key] = (value, expires_at)
        self._bytes += len(value)
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._data))
            self._remove(oldest)

    async def delete(self, key: str) -> None:
        if key in self._data:
            self._remove(key)

    async def tag(self, subject: str, key: str, ttl: float | None) -> None:
        self._subjects.setdefault(subject, set()).add(key)

    async def erase(self, subject: str) -> int:
        keys = [k for k in self._subjects.pop(subject, set()) if k in self._data]
        for key in keys:
            self._remove(key)
        return len(keys)

    async def aclose(self) -> None:
        """Nothing to release (the entries stay, so a backend shared by several caches
        keeps serving the others after one of them is closed)."""

    def _remove(self, key: str) -> None:
        value, _ = self._data.pop(key)
        self._bytes -= len(value)

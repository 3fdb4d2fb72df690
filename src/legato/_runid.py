"""Run ids: one format and one generator for every run, started from Python, the
CLI, the gateway or a worker.

An id is 32 lowercase hex digits: 12 of milliseconds since the epoch (so ids sort by
creation time, which the store's prefix look-ups rely on) and 20 of randomness (80
bits from ``os.urandom``). The random bits are read 4,000 bytes at a time (one system
call per 400 runs instead of one per run); a forked child starts afresh so that
parent and child never hand out the same id.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_run_id"]

_RANDOM_BYTES = 10  # 80 bits: 20 hex digits
_BLOCK = 400 * _RANDOM_BYTES


class _RunIds:
    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.pool: list[bytes] = []

    def __call__(self) -> str:
        with self.lock:
            if not self.pool:
                block = os.urandom(_BLOCK)
                self.pool = [block[i : i + _RANDOM_BYTES] for i in range(0, _BLOCK, _RANDOM_BYTES)]
            random = self.pool.pop()
        return f"{time.time_ns() // 1_000_000:012x}{random.hex()}"


new_run_id = _RunIds()
"""A new run id (see the module docstring)."""

"""The local executor: steps run in this process.

Async step functions are awaited on the event loop; sync ones run in worker
threads through ``anyio.to_thread.run_sync`` with this executor's own
:class:`anyio.CapacityLimiter`, so a pipeline full of blocking steps cannot starve
the default thread pool other code shares. This is also what the engine does when
no executor is given (with anyio's default limiter of 40 threads).
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import anyio.to_thread

from legato.engine import StepCall

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run steps in this process; sync steps in at most ``max_threads`` threads."""

    def __init__(self, *, max_threads: int = 40) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads!r}")
        self.max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Created lazily: a limiter belongs to the event loop that first uses it.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        return self._limiter

    async def run_step(self, call: StepCall) -> Any:
        if call.is_async:
            return await call.fn(**call.kwargs)
        return await anyio.to_thread.run_sync(
            functools.partial(call.fn, **call.kwargs), abandon_on_cancel=True, limiter=self.limiter
        )

    def __repr__(self) -> str:
        return f"LocalExecutor(max_threads={self.max_threads})"

"""The periodic flush shared by the gateway's buffered records (spend, model calls).

Both recorders keep what requests add in memory and write it in one transaction
every ``interval_s`` seconds (or sooner, when a recorder's buffer has a batch's worth:
:class:`Wake`), so that no request waits for the database; a write
that fails is logged and retried at the next tick (each recorder keeps the failed
batch). The loop runs until cancelled, as a task of the gateway's task group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Wake", "flush_every"]

log = logging.getLogger("legato.server")


class Wake:
    """Lets a recorder ask for a flush before the interval is over (its buffer is full)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Until :meth:`set` was called (since the last wait) or ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()


async def flush_every(
    interval_s: float, flush: Callable[[], Awaitable[None]], what: str, *, wake: Wake | None = None
) -> None:
    """Call ``flush`` every ``interval_s`` seconds (sooner when ``wake`` is set) until
    cancelled; a failure is logged as "could not write {what}; will retry"."""
    wake = wake if wake is not None else Wake()  # one nobody sets: every interval_s
    while True:
        await wake.wait(interval_s)
        try:
            await flush()
        except Exception:
            log.exception("could not write %s; will retry", what)

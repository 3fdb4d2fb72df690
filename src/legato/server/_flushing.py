"""The periodic flush shared by the gateway's buffered records (spend, model calls).

Both recorders keep what requests add in memory and write it in one transaction
every ``interval_s`` seconds, so that no request waits for the database; a write
that fails is logged and retried at the next tick (each recorder keeps the failed
batch). The loop runs until cancelled, as a task of the gateway's task group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["flush_every"]

log = logging.getLogger("legato.server")


async def flush_every(interval_s: float, flush: Callable[[], Awaitable[None]], what: str) -> None:
    """Call ``flush`` every ``interval_s`` seconds until cancelled; a failure is logged
    as "could not write {what}; will retry"."""
    while True:
        await anyio.sleep(interval_s)
        try:
            await flush()
        except Exception:
            log.exception("could not write %s; will retry", what)

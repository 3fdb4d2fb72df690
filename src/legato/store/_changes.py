"""Telling live views that the runs table changed, without asking it every half second.

A live runs list used to re-read its page every 0.5 s. :class:`RunChanges` keeps a
change count per store instead, and the list re-reads only when it moves:

* **PostgreSQL**: a statement-level trigger (migration ``r0015_run_notify``) runs
  ``pg_notify('legato_runs_changed', '')`` when runs are inserted or deleted or
  their status, outputs, error, cost, start, finish or tags change (never on
  heartbeats); one ``LISTEN`` connection per store (asyncpg, opened on first use)
  counts the notifications, so a run finished on any replica wakes every viewer at
  once. If the connection cannot be opened or drops, every wait reports a change
  (the list re-reads, as it did before) until it is back.
* **SQLite** has no notifications: ``PRAGMA data_version`` on a connection of its
  own changes whenever another connection commits. Reading it costs microseconds,
  every ``poll_s``, shared by every viewer of the process.
* Anything else (an in-memory database): every wait reports a change after
  ``poll_s``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio

from legato.store._database import sqlite_path
from legato.store._listen import Listener, asyncpg_dsn

__all__ = ["CHANGES_CHANNEL", "RunChanges"]

CHANGES_CHANNEL = "legato_runs_changed"


class RunChanges:
    """A count of the changes to a store's runs (see the module docstring)."""

    def __init__(self, url: str, *, poll_s: float = 0.5) -> None:
        self.poll_s = poll_s
        self.count = 0
        self._dsn = asyncpg_dsn(url)
        self._path = sqlite_path(url)
        self._changed = anyio.Event()
        self._lock = anyio.Lock()
        # Something may have changed while nobody listened: a new connection counts as a change.
        self._listener = (
            None
            if self._dsn is None
            else Listener(
                self._dsn, CHANGES_CHANNEL, self._notified, self._notified, self._notified,
                what="run changes", fallback="live views poll instead",
            )
        )  # fmt: skip
        self._probe: sqlite3.Connection | None = None
        self._version: int | None = None
        self._probed_at = float("-inf")

    @property
    def kind(self) -> str:
        """``notify`` (PostgreSQL), ``data_version`` (SQLite file) or ``poll``."""
        return "notify" if self._dsn is not None else "data_version" if self._path is not None else "poll"

    async def wait(self, after: int, timeout: float) -> int:
        """The change count once it has moved past ``after``, or after ``timeout``
        seconds (then ``after`` itself, when nothing changed)."""
        if self._listener is not None and await self._listener.listening():
            with anyio.move_on_after(timeout):
                while self.count == after:
                    await self._changed.wait()
            return self.count
        if self._dsn is None and self._path is not None:
            return await self._wait_polled(after, timeout)
        await anyio.sleep(min(timeout, self.poll_s))
        self.count += 1  # nothing tells us: assume a change
        return self.count

    async def _wait_polled(self, after: int, timeout: float) -> int:
        deadline = anyio.current_time() + timeout
        while self.count == after:
            left = deadline - anyio.current_time()
            if left <= 0:
                break
            await anyio.sleep(min(left, self.poll_s))
            await self._poll()
        return self.count

    async def _poll(self) -> None:
        async with self._lock:  # one probe per poll_s however many viewers wait
            if anyio.current_time() - self._probed_at < self.poll_s / 2:
                return
            version = await anyio.to_thread.run_sync(self._data_version)
            self._probed_at = anyio.current_time()
            if version != self._version:
                self._version = version
                self.count += 1

    def _data_version(self) -> int:
        if self._probe is None:
            self._probe = sqlite3.connect(str(self._path), check_same_thread=False)
        return int(self._probe.execute("PRAGMA data_version").fetchone()[0])

    def _notified(self, *_args: Any) -> None:
        self.count += 1
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

"""Telling a run's worker, within a fraction of a second, that a cancel was recorded.

``legato runs cancel``, the runs API and the dashboard record a cancel in the
``runs`` row (``cancel_requested``, ``cancelled_by``, ``cancel_requested_at``); the
worker executing the run must notice it. Waiting for the next heartbeat (a third of
the lease, 10 s by default) is too slow, so :class:`CancelListener` watches:

* **PostgreSQL**: the recording transaction runs ``pg_notify('legato_run_cancel',
  run_id)``; one ``LISTEN`` connection per store (asyncpg, opened on first use)
  wakes the waiting run when it commits. A notification sent while the listener was
  reconnecting is covered by a slow poll (every ``fallback_s``) and by the
  heartbeat, which reports the flag too.
* **SQLite** has no notifications: the store polls every ``poll_s`` (200 ms), one
  query for all the runs waiting in this process (WAL readers never wait for the
  writer). One of the waiting runs does the polling for all; when its run ends,
  another takes over.

Every checkpoint also reads the flag in its own transaction (see
``RunStore.checkpoint``): a step whose dependencies committed after the cancel was
recorded never starts, whatever the listener's latency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from legato.store._listen import Listener, asyncpg_dsn
from legato.store._records import CancelRequest

__all__ = ["CHANNEL", "QUEUE_CHANNEL", "CancelListener"]

CHANNEL = "legato_run_cancel"
QUEUE_CHANNEL = "legato_run_queued"  # payload: the queue's name (see legato.store._queue)

Check = Callable[[str], Awaitable[CancelRequest | None]]
CheckMany = Callable[[list[str]], Awaitable[dict[str, CancelRequest]]]
Sleep = Callable[[float], Awaitable[None]]


class CancelListener:
    """Waits for cancel requests of runs executing in this process (see the module docstring).

    ``check(run_id)`` reads the run's recorded request, ``check_many(ids)`` those of
    several runs; ``url`` is the store's SQLAlchemy URL (a ``postgresql+asyncpg`` URL
    turns on ``LISTEN``).
    """

    def __init__(
        self, url: str, check: Check, check_many: CheckMany, *, poll_s: float = 0.2, fallback_s: float = 5.0
    ) -> None:
        self._check = check
        self._check_many = check_many
        self._found: dict[str, CancelRequest] = {}
        self._polling = False
        dsn = asyncpg_dsn(url)
        self.poll_s = poll_s
        self.fallback_s = fallback_s
        self._waiting: dict[str, set[anyio.Event]] = {}
        # A request may have been sent while nobody listened: every waiter re-checks.
        self._listener = (
            None
            if dsn is None
            else Listener(dsn, CHANNEL, self._notified, self._wake_all, self._wake_all, what="run cancellations")
        )

    @property
    def notifies(self) -> bool:
        """Whether requests arrive by notification (PostgreSQL) rather than by polling."""
        return self._listener is not None

    async def wait(self, run_id: str, sleep: Sleep) -> CancelRequest:
        """Return once a cancel of ``run_id`` is recorded (``sleep`` paces the polls)."""
        if self._listener is not None and await self._listener.listening():
            return await self._wait_notified(self._listener, run_id, sleep)
        return await self._wait_polled(run_id, sleep)

    async def _wait_polled(self, run_id: str, sleep: Sleep) -> CancelRequest:
        woken = self._subscribe(run_id)
        try:
            while run_id not in self._found:
                if not self._polling:  # nobody polls for this process's runs: this one does
                    self._polling = True
                    try:
                        await self._poll(run_id, sleep)
                    finally:
                        self._polling = False
                        self._wake_all()  # another waiter takes over if this run ended
                    continue
                with anyio.move_on_after(self.poll_s * 2):
                    await woken.wait()
                self._unsubscribe(run_id, woken)
                woken = self._subscribe(run_id)
            return self._found.pop(run_id)
        finally:
            self._unsubscribe(run_id, woken)
            self._found.pop(run_id, None)

    async def _poll(self, mine: str, sleep: Sleep) -> None:
        while True:
            found = await self._check_many(list(self._waiting))
            for run_id, request in found.items():
                self._found[run_id] = request
                for event in self._waiting.get(run_id, ()):
                    event.set()
            if mine in self._found:
                return
            await sleep(self.poll_s)

    async def _wait_notified(self, listener: Listener, run_id: str, sleep: Sleep) -> CancelRequest:
        woken = self._subscribe(run_id)
        try:
            while True:
                # Checked after subscribing: a cancel recorded before LISTEN is seen here.
                request = await self._check(run_id)
                if request is not None:
                    return request
                with anyio.move_on_after(self.fallback_s):
                    await woken.wait()
                self._unsubscribe(run_id, woken)
                woken = self._subscribe(run_id)
                await listener.listening()  # reconnects if the listener's connection dropped
                await sleep(0)
        finally:
            self._unsubscribe(run_id, woken)

    def _subscribe(self, run_id: str) -> anyio.Event:
        event = anyio.Event()
        self._waiting.setdefault(run_id, set()).add(event)
        return event

    def _unsubscribe(self, run_id: str, event: anyio.Event) -> None:
        waiters = self._waiting.get(run_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiting[run_id]

    def _wake_all(self, *_args: Any) -> None:
        for waiters in self._waiting.values():
            for event in waiters:
                event.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for event in self._waiting.get(payload, ()):
            event.set()

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()

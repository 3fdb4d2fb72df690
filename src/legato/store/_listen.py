"""One PostgreSQL ``LISTEN`` connection, opened on first use and again after it drops.

The cancel listener (:mod:`legato.store._cancel`), the change counter of live views
(:mod:`legato.store._changes`) and the queue waiter (:mod:`legato.store._queue`) each
wait for notifications on a channel of their own. :class:`Listener` is what they
share: :meth:`Listener.listening` connects (asyncpg) when there is no open
connection, tells the owner once it listens (a notification sent while nobody
listened is missed, so the owner re-checks), and reports False, after a warning,
when the database cannot be reached: the owner then polls. A connection whose
``LISTEN`` fails or is cancelled is closed before the error propagates, and closing
never hangs a shutdown (a close that takes more than 5 s terminates the connection).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy.engine import make_url

__all__ = ["Listener", "asyncpg_dsn"]

log = logging.getLogger("legato.store")


def asyncpg_dsn(url: str) -> str | None:
    """The asyncpg DSN of a store URL; None when the store is not PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """``LISTEN`` on ``channel`` of the database at ``dsn``.

    ``notified(conn, pid, channel, payload)`` is called for each notification and
    ``terminated(conn)`` when the connection drops; ``on_listen()`` each time a new
    connection listens. ``what`` and ``fallback`` name, in the warning logged when
    the database cannot be reached, what is listened for and what happens instead."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        notified: Callable[..., None],
        terminated: Callable[..., None],
        on_listen: Callable[[], None],
        *,
        what: str,
        fallback: str = "polling instead",
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self._notified = notified
        self._terminated = terminated
        self._on_listen = on_listen
        self._warning = f"cannot LISTEN for {what}; {fallback}"
        self._conn: Any = None
        self._lock = anyio.Lock()

    async def listening(self) -> bool:
        """Whether notifications arrive: True once a connection listens (connecting
        when there is none), False when the database cannot be reached."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return True
            try:
                self._conn = await self._open()
            except Exception:
                log.warning(self._warning, exc_info=True)
                return False
            self._on_listen()
            return True

    async def _open(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.add_listener(self.channel, self._notified)
            conn.add_termination_listener(self._terminated)
        except BaseException:
            await _close(conn)
            raise
        return conn

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        await _close(conn)


async def _close(conn: Any) -> None:
    """Close a listener connection, even from a cancelled task; one that does not
    close within 5 s is terminated."""
    if conn is None or conn.is_closed():
        return
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(5):
            await conn.close()
        if not conn.is_closed():
            conn.terminate()

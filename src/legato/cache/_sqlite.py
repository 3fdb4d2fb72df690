"""A cache backend in one SQLite file (WAL), for a single machine that restarts.

Uses ``aiosqlite`` (the database work happens on its own thread, never on the event
loop). Expired rows are removed when read and swept every ``sweep_every`` writes;
``max_entries`` bounds the table by dropping the oldest rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["SQLiteBackend"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS legato_cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL,
    stored_at REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS legato_cache_subjects (
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (subject, key)
)""",
)


class SQLiteBackend:
    """Cache entries in a SQLite file. The file and its table are created on first use."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int | None = 100_000,
        sweep_every: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries}")
        self.path = Path(path)
        self.max_entries = max_entries
        self.sweep_every = max(1, sweep_every)
        self.clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock: anyio.Lock | None = None
        self._writes = 0

    def __repr__(self) -> str:
        return f"SQLiteBackend({str(self.path)!r})"

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._db is None:
                import aiosqlite

                if str(self.path) != ":memory:":
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(str(self.path))
                try:
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("PRAGMA synchronous=NORMAL")
                    await db.execute("PRAGMA secure_delete=ON")  # erased values do not linger in free pages
                    for statement in _SCHEMA:
                        await db.execute(statement)
                    await db.commit()
                except BaseException:
                    await db.close()
                    raise
                self._db = db
        return self._db

    async def get(self, key: str) -> bytes | None:
        db = await self._conn()
        async with db.execute("SELECT value, expires_at FROM legato_cache WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        value, expires_at = row
        if expires_at is not None and self.clock() >= expires_at:
            await db.execute("DELETE FROM legato_cache WHERE key = ? AND expires_at = ?", (key, expires_at))
            await db.commit()
            return None
        return bytes(value)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        db = await self._conn()
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        await db.execute(
            "INSERT OR REPLACE INTO legato_cache (key, value, expires_at, stored_at) VALUES (?, ?, ?, ?)",
            (key, value, expires_at, now),
        )
        self._writes += 1
        if self._writes % self.sweep_every == 0:
            await self._sweep(db, now)
        await db.commit()

    async def _sweep(self, db: aiosqlite.Connection, now: float) -> None:
        await db.execute("DELETE FROM legato_cache WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        if self.max_entries is not None:
            await db.execute(
                "DELETE FROM legato_cache WHERE key IN ("
                " SELECT key FROM legato_cache ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
                (self.max_entries,),
            )
        await db.execute("DELETE FROM legato_cache_subjects WHERE key NOT IN (SELECT key FROM legato_cache)")

    async def delete(self, key: str) -> None:
        db = await self._conn()
        await db.execute("DELETE FROM legato_cache WHERE key = ?", (key,))
        await db.commit()

    async def tag(self, subject: str, key: str, ttl: float | None) -> None:
        db = await self._conn()
        await db.execute("INSERT OR IGNORE INTO legato_cache_subjects (subject, key) VALUES (?, ?)", (subject, key))
        await db.commit()

    async def erase(self, subject: str) -> int:
        db = await self._conn()
        cur = await db.execute(
            "DELETE FROM legato_cache WHERE key IN (SELECT key FROM legato_cache_subjects WHERE subject = ?)",
            (subject,),
        )
        await db.execute("DELETE FROM legato_cache_subjects WHERE subject = ?", (subject,))
        await db.commit()
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL file keeps the deleted pages otherwise
        return int(cur.rowcount)

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

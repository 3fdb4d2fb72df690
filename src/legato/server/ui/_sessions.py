"""Dashboard sign-in sessions, kept server-side in the store's database.

A session id is 32 random bytes (:func:`secrets.token_urlsafe`), sent to the browser
once in an ``HttpOnly``, ``SameSite=Strict`` cookie; the database keeps only its
SHA-256, so a copy of the table opens nothing. A session names the key that signed
in (``master`` for the master key) and expires after ``ttl_s``; signing out revokes
it at once, on every replica (they read the same table). Each request re-checks the
key behind the session, so revoking a key also ends its dashboard sessions.

Sessions are rows rather than signed cookies because a signed cookie cannot be
revoked before it expires.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Session", "SessionStore", "sessions_table"]

session_metadata = sa.MetaData()

sessions_table = sa.Table(
    "dashboard_sessions",
    session_metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_dashboard_sessions_expires_at", "expires_at"),
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    created_at: float
    expires_at: float
    client: str | None


def _session(row: Any) -> Session:
    return Session(key_id=row.key_id, created_at=row.created_at, expires_at=row.expires_at, client=row.client)


class SessionStore:
    """Sessions in table ``dashboard_sessions`` of ``engine``'s database."""

    def __init__(self, engine: AsyncEngine, *, ttl_s: float = 12 * 3600, clock: Callable[[], float] = time.time):
        if ttl_s <= 0:
            raise ValueError(f"session ttl_s must be > 0, got {ttl_s!r}")
        self.engine = engine
        self.ttl_s = ttl_s
        self._clock = clock
        self._reader = engine.execution_options(legato_readonly=True)

    async def create(self, key_id: str, client: str | None) -> str:
        """A new session for ``key_id``; returns its id (the only time it exists in clear)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        row = {"token_hash": _digest(token), "key_id": key_id, "client": (client or "")[:64] or None,
               "created_at": now, "expires_at": now + self.ttl_s}  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(sessions_table.delete().where(sessions_table.c.expires_at < now))  # forget old ones
            await conn.execute(sessions_table.insert().values(row))
        return token

    async def resolve(self, token: str) -> Session | None:
        """The live session with id ``token``; None when unknown, expired or revoked."""
        if not token or len(token) > 128:
            return None
        t = sessions_table
        query = sa.select(t).where(t.c.token_hash == _digest(token))
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.revoked_at is not None or row.expires_at <= self._clock():
            return None
        return _session(row)

    async def active(self, limit: int = 500) -> list[Session]:
        """The live sessions, newest first: who is signed in, from where, until when."""
        t, now = sessions_table, self._clock()
        query = (
            sa.select(t)
            .where(t.c.revoked_at.is_(None), t.c.expires_at > now)
            .order_by(t.c.created_at.desc())
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Session(key_id=r.key_id, created_at=r.created_at, expires_at=r.expires_at, client=r.client) for r in rows
        ]

    async def revoke(self, token: str) -> Session | None:
        """End the session ``token``; returns what it was (None when it was not live)."""
        session = await self.resolve(token)
        if session is None:
            return None
        t = sessions_table
        async with self.engine.begin() as conn:
            await conn.execute(t.update().where(t.c.token_hash == _digest(token)).values(revoked_at=self._clock()))
        return session

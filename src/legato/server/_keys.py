"""API keys: ``lg_...`` secrets shown once, stored as a SHA-256 hash with a visible prefix.

A key is ``lg_`` followed by 40 random base62 characters (about 238 bits). Its first
12 characters (``lg_`` + 9) are stored in clear as the *prefix*: it identifies the key
in listings, logs and the dashboard, and is the indexed lookup column. The rest is
never stored: only ``sha256(key)``, compared with :func:`hmac.compare_digest`.

A fast hash is the right tool here (see the decision record on key format): the
secret is random and long, so there is nothing for a slow password KDF to protect,
and a KDF would add milliseconds to every request.

Looked-up keys are cached in the replica for ``key_cache_ttl_s`` seconds (keyed by
the hash, never the key). A revocation is immediate on the replica that made it;
with Redis it is announced to the other replicas, which clear their cache at once
(:mod:`legato.server._revocation`), and without Redis (or while it is unreachable)
it reaches them when the TTL ends. Unknown keys are cached too, so a flood of bad
keys does not become a flood of database queries.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from legato.errors import InvalidAPIKey

__all__ = [
    "SCOPES",
    "ApiKey",
    "KeyStore",
    "api_keys_table",
    "generate_key",
    "hash_key",
    "key_metadata",
    "spend_table",
]

SCOPES = ("chat", "embed", "runs:read", "runs:write", "admin")
Scope = Literal["chat", "embed", "runs:read", "runs:write", "admin"]
BudgetPeriod = Literal["day", "month", "total"]

INT32_MAX = 2**31 - 1  # the rpm and tpm columns are INTEGER (32-bit on PostgreSQL)
MAX_BUDGET_USD = 1e12
KEY_PREFIX = "lg_"
_ALPHABET = string.ascii_letters + string.digits
_SECRET_LEN = 40
_VISIBLE = len(KEY_PREFIX) + 9

key_metadata = sa.MetaData()

api_keys_table = sa.Table(
    "api_keys",
    key_metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("models", sa.Text, nullable=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("budget_usd", sa.Float, nullable=True),
    sa.Column("budget_period", sa.String(8), nullable=False, server_default="month"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("guardrail", sa.String(64), nullable=True),  # revision r0011_key_guardrail
    sa.Index("ix_api_keys_prefix", "prefix", unique=True),
)

spend_table = sa.Table(
    "spend",
    key_metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost", sa.Float, nullable=False, server_default="0"),
)


def generate_key() -> str:
    """A new random key: ``lg_`` + 40 base62 characters."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never the secret). ``models`` None means every model."""

    id: str
    prefix: str
    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "month"
    created_at: float = 0.0
    revoked_at: float | None = None
    guardrail: str | None = None  # a registered guardrail applied to every model this key calls

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self) -> dict[str, Any]:
        """The key's description for listings and the admin API (no hash, no secret)."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "models": sorted(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "guardrail": self.guardrail,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def _check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    result = frozenset(scopes)
    unknown = sorted(result - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not result:
        raise ValueError("a key needs at least one scope")
    return result


def _check_limits(*, rpm: int | None, tpm: int | None, budget_usd: float | None) -> None:
    """``ValueError`` unless each limit fits its column (``rpm``/``tpm``: 32-bit integers)."""
    limits: tuple[tuple[str, float | None, float], ...] = (
        ("rpm", rpm, INT32_MAX),
        ("tpm", tpm, INT32_MAX),
        ("budget_usd", budget_usd, MAX_BUDGET_USD),
    )
    for label, value, top in limits:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{label} must be a number, got {type(value).__name__}")
        if not 0 <= value <= top:  # also false for NaN
            raise ValueError(f"{label} must be between 0 and {top:g}, got {value}")


def _row_to_key(row: Any) -> tuple[ApiKey, str]:
    models = json.loads(row.models) if row.models is not None else None
    key = ApiKey(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        scopes=frozenset(json.loads(row.scopes)),
        models=frozenset(models) if models is not None else None,
        rpm=row.rpm,
        tpm=row.tpm,
        budget_usd=row.budget_usd,
        budget_period=row.budget_period,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        guardrail=row.guardrail,
    )
    return key, row.key_hash


class _Refresh:
    """One key lookup under way: its result, for the callers that wait on it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.finished = False
        self.key: ApiKey | None = None
        self.error: Exception | None = None


class KeyStore:
    """Keys in the run store's database (tables ``api_keys`` and ``spend``).

    ``create`` returns the secret once; ``authenticate`` maps a presented secret to
    its :class:`ApiKey` or raises :class:`InvalidAPIKey` (unknown, malformed or revoked).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_ttl_s: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        # Reads take no write lock on SQLite (the store begins writes with BEGIN IMMEDIATE).
        self._reader = engine.execution_options(legato_readonly=True)
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        self._wall = wall_clock
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._generation = 0  # bumped by invalidate(): a lookup that raced with it is not cached
        self._refreshing: dict[str, _Refresh] = {}  # lookups under way, shared by their waiters
        self.on_change: Callable[[str], Awaitable[None]] | None = None  # announces a changed key id

    def invalidate(self) -> None:
        """Forget every cached key (a key changed here or on another replica)."""
        self._generation += 1
        self._cache.clear()

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        models: Iterable[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        budget_period: BudgetPeriod = "month",
        guardrail: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its secret (the only time the secret exists)."""
        checked = _check_scopes(scopes)
        _check_limits(rpm=rpm, tpm=tpm, budget_usd=budget_usd)
        if budget_period not in ("day", "month", "total"):
            raise ValueError(f"budget_period must be day, month or total, got {budget_period!r}")
        model_set = frozenset(models) if models is not None else None
        for _ in range(5):
            secret = generate_key()
            key = ApiKey(
                id=uuid.uuid4().hex,
                prefix=secret[:_VISIBLE],
                name=name,
                scopes=checked,
                models=model_set,
                rpm=rpm,
                tpm=tpm,
                budget_usd=budget_usd,
                budget_period=budget_period,
                created_at=self._wall(),
                guardrail=guardrail,
            )
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        api_keys_table.insert().values(
                            id=key.id,
                            prefix=key.prefix,
                            key_hash=hash_key(secret),
                            name=name,
                            scopes=json.dumps(sorted(checked)),
                            models=json.dumps(sorted(model_set)) if model_set is not None else None,
                            rpm=rpm,
                            tpm=tpm,
                            budget_usd=budget_usd,
                            budget_period=budget_period,
                            created_at=key.created_at,
                            guardrail=guardrail,
                        )
                    )
            except sa.exc.IntegrityError:
                continue  # prefix collision (about 1 in 10^16): draw again
            return key, secret
        raise RuntimeError("could not draw a unique key prefix")

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        query = sa.select(api_keys_table).order_by(api_keys_table.c.created_at)
        if not include_revoked:
            query = query.where(api_keys_table.c.revoked_at.is_(None))
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_key(r)[0] for r in rows]

    async def get(self, id_or_prefix: str) -> ApiKey | None:
        table = api_keys_table
        query = sa.select(table).where(sa.or_(table.c.id == id_or_prefix, table.c.prefix == id_or_prefix))
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row_to_key(row)[0] if row is not None else None

    async def revoke(self, id_or_prefix: str) -> ApiKey | None:
        """Revoke a key by id or prefix; returns it, or None when there is no such key."""
        key = await self.get(id_or_prefix)
        if key is None:
            return None
        if key.revoked:
            return key
        now = self._wall()
        async with self.engine.begin() as conn:
            await conn.execute(api_keys_table.update().where(api_keys_table.c.id == key.id).values(revoked_at=now))
        self.invalidate()
        if self.on_change is not None:
            await self.on_change(key.id)
        return replace(key, revoked_at=now)

    async def update_limits(self, id_or_prefix: str, changes: dict[str, Any]) -> tuple[ApiKey, ApiKey] | None:
        """Change a live key's ``rpm``, ``tpm``, ``budget_usd`` and ``budget_period`` (None
        clears a limit); returns the key before and after, or None when there is no live key."""
        unknown = sorted(set(changes) - {"rpm", "tpm", "budget_usd", "budget_period"})
        if unknown:
            raise ValueError(f"only rpm, tpm, budget_usd and budget_period can change, not {', '.join(unknown)}")
        key = await self.get(id_or_prefix)
        if key is None or key.revoked:
            return None
        if changes:
            async with self.engine.begin() as conn:
                await conn.execute(api_keys_table.update().where(api_keys_table.c.id == key.id).values(**changes))
            self.invalidate()
            if self.on_change is not None:  # other replicas drop their cached copy too
                await self.on_change(key.id)
        return key, replace(key, **changes)

    def cached(self, secret: str) -> ApiKey | None:
        """The key for ``secret`` if this replica holds it, valid, in its cache; None
        otherwise (unknown, revoked, not cached or expired: ask :meth:`authenticate`).
        Synchronous: for answers decided before a request reaches the app."""
        if not secret.startswith(KEY_PREFIX) or len(secret) != len(KEY_PREFIX) + _SECRET_LEN:
            return None
        hit = self._cache.get(hash_key(secret))
        if hit is None or hit[0] <= self._clock() or hit[1] is None or hit[1].revoked:
            return None
        return hit[1]

    async def authenticate(self, secret: str) -> ApiKey:
        """The key for ``secret``; :class:`InvalidAPIKey` when unknown, malformed or revoked."""
        if not secret.startswith(KEY_PREFIX) or len(secret) != len(KEY_PREFIX) + _SECRET_LEN:
            raise InvalidAPIKey("invalid API key")
        digest = hash_key(secret)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            key: ApiKey | None = hit[1]
        else:
            key = await self._refresh(secret[:_VISIBLE], digest, now)
        if key is None:
            raise InvalidAPIKey("invalid API key")
        if key.revoked:
            raise InvalidAPIKey(f"API key {key.prefix}... has been revoked")
        return key

    async def _refresh(self, prefix: str, digest: str, now: float) -> ApiKey | None:
        """Look the key up and cache it. With a cache, calls that find the same entry
        missing or expired share one query: when it expires under load, the database
        sees one lookup, not one per request in flight."""
        if self._ttl <= 0:
            return await self._lookup(prefix, digest)
        shared = self._refreshing.get(digest)
        if shared is not None:
            await shared.done.wait()
            if shared.finished:
                if shared.error is not None:
                    raise shared.error
                return shared.key
            return await self._refresh(prefix, digest, now)  # the first caller was cancelled
        shared = self._refreshing[digest] = _Refresh()
        generation = self._generation
        try:
            shared.key = await self._lookup(prefix, digest)
            shared.finished = True
        except Exception as exc:
            shared.error, shared.finished = exc, True
            raise
        finally:
            del self._refreshing[digest]
            shared.done.set()
        if generation == self._generation:
            self._remember(digest, shared.key, now)
        return shared.key

    async def _lookup(self, prefix: str, digest: str) -> ApiKey | None:
        query = sa.select(api_keys_table).where(api_keys_table.c.prefix == prefix)
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            hmac.compare_digest(digest, digest)  # same work on a miss as on a hit
            return None
        key, stored = _row_to_key(row)
        return key if hmac.compare_digest(stored, digest) else None

    def _remember(self, digest: str, key: ApiKey | None, now: float) -> None:
        if self._ttl <= 0:
            return
        self._cache[digest] = (now + self._ttl, key)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def spend_since(self, key_id: str, since_day: str | None) -> float:
        """Dollars recorded for ``key_id`` from ``since_day`` (``YYYY-MM-DD``; None: all time)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_table.c.cost), 0.0)).where(spend_table.c.key_id == key_id)
        if since_day is not None:
            query = query.where(spend_table.c.day >= since_day)
        async with self._reader.connect() as conn:
            value = (await conn.execute(query)).scalar_one()
        return float(value)

    async def spend_report(
        self, *, key_id: str | None = None, since_day: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Spend rows (key prefix, day, model, requests, tokens, cost), newest day first."""
        s, k = spend_table, api_keys_table
        query = (
            sa.select(
                k.c.prefix, k.c.name, s.c.day, s.c.model, s.c.requests, s.c.input_tokens, s.c.output_tokens, s.c.cost
            )
            .join(k, k.c.id == s.c.key_id)
            .order_by(s.c.day.desc(), k.c.prefix, s.c.model)
        )
        if key_id is not None:
            query = query.where(s.c.key_id == key_id)
        if since_day is not None:
            query = query.where(s.c.day >= since_day)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]

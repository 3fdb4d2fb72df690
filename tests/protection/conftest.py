"""Fixtures: a fresh store URL per test on SQLite and on its own PostgreSQL database
(a store has one key-encryption key, so tests with different keys must not share one),
a fresh response-cache backend on SQLite and on Redis, and the raw bytes of both as
someone holding the files or the servers reads them (for canary scans)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from legato.cache import CacheBackend, RedisBackend, SQLiteBackend
from legato.store._crypto import new_key_text
from legato.testing.pytest_plugin import fake_provider  # noqa: F401 - the fixture


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, user=os.environ.get("PGUSER", "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legato.db'}"
        return
    admin_dsn = str(request.getfixturevalue("postgres_admin_dsn"))
    name = f"legato_protect_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@{admin_dsn.split('//')[1].split('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def kek_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key-encryption key in the environment; returns its reference."""
    name = f"LEGATO_TEST_KEK_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(name, new_key_text())
    return f"env:{name}"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def cache_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    """A response-cache backend: a SQLite file, or a Redis prefix of its own (emptied after)."""
    if request.param == "sqlite":
        made: CacheBackend = SQLiteBackend(tmp_path / "cache.db")
    else:
        made = RedisBackend(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
    yield made
    if isinstance(made, RedisBackend):
        keys = [k async for k in made.client.scan_iter(match=made.prefix + "*")]
        if keys:
            await made.client.delete(*keys)
    await made.aclose()


def store_bytes(url: str) -> bytes:
    """Everything the store's database holds (the SQLite file and its WAL, or a
    ``pg_dump``), as the bytes an attacker with the files would read."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    return subprocess.run(["pg_dump", "--no-owner", dsn], check=True, capture_output=True).stdout


async def cache_bytes(backend: CacheBackend) -> bytes:
    """Every byte the cache holds (values, subject index members and keys), as someone
    with the file or the Redis server reads it."""
    if isinstance(backend, SQLiteBackend):
        return b"".join(p.read_bytes() for p in backend.path.parent.glob(backend.path.name + "*"))
    assert isinstance(backend, RedisBackend)
    out = []
    async for key in backend.client.scan_iter(match=backend.prefix + "*"):
        kind = await backend.client.type(key)
        if kind in (b"string", "string"):
            out.append(await backend.client.get(key))
        else:
            out += list(await backend.client.smembers(key))
        out.append(key)
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for v in out)

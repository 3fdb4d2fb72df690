from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from legato.cache import CacheBackend, MemoryBackend, RedisBackend, ResponseCache, SQLiteBackend

from ._doubles import CountingModel, ask


async def test_memory_lru_is_bounded_by_entries() -> None:
    backend = MemoryBackend(max_entries=3)
    for key in "abcd":
        await backend.set(key, key.encode())
    assert await backend.get("a") is None
    await backend.get("b")  # b is now the most recently used
    await backend.set("e", b"e")
    assert len(backend) == 3
    assert await backend.get("c") is None
    assert [await backend.get(k) for k in "bde"] == [b"b", b"d", b"e"]


async def test_memory_lru_is_bounded_by_bytes() -> None:
    backend = MemoryBackend(max_bytes=10)
    await backend.set("a", b"12345")
    await backend.set("b", b"12345")
    assert backend.size_bytes == 10
    await backend.set("c", b"1")
    assert await backend.get("a") is None
    assert backend.size_bytes == 6
    await backend.set("big", b"x" * 11)  # larger than the whole cache: not stored
    assert await backend.get("big") is None
    await backend.set("b", b"1")  # replacing a value releases its bytes
    assert backend.size_bytes == 2


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path / "cache" / "legato-cache.db")
    yield backend
    await backend.aclose()


@pytest.fixture
async def redis_backend(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_url, prefix=redis_prefix)
    yield backend
    client = backend.client
    keys = [k async for k in client.scan_iter(match=redis_prefix + "*")]
    if keys:
        await client.delete(*keys)
    await backend.aclose()


async def roundtrip(backend: CacheBackend) -> None:
    assert isinstance(backend, CacheBackend)
    assert await backend.get("k") is None
    await backend.set("k", b"\x00value\xff", ttl=60)
    assert await backend.get("k") == b"\x00value\xff"
    await backend.set("k", b"new")
    assert await backend.get("k") == b"new"
    await backend.delete("k")
    assert await backend.get("k") is None


async def test_sqlite_backend(sqlite_backend: SQLiteBackend) -> None:
    await roundtrip(sqlite_backend)


@pytest.mark.redis
async def test_redis_backend(redis_backend: RedisBackend, redis_prefix: str) -> None:
    await roundtrip(redis_backend)
    await redis_backend.set("t", b"v", ttl=30)
    pttl = await redis_backend.client.pttl(redis_prefix + "t")
    assert 0 < pttl <= 30_000


async def test_sqlite_entries_survive_a_restart_and_expire(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "c.db"
    first = SQLiteBackend(path, clock=lambda: now[0])
    upstream = CountingModel()
    cache = ResponseCache(upstream, first, ttl=60)
    await cache.chat(ask("persist me"))
    await cache.aclose()

    second = SQLiteBackend(path, clock=lambda: now[0])
    cache = ResponseCache(upstream, second, ttl=60)
    try:
        assert (await cache.chat(ask("persist me"))).cached is True
        now[0] += 60
        assert (await cache.chat(ask("persist me"))).cached is False
    finally:
        await cache.aclose()
    assert upstream.chat_calls == 2


async def test_sqlite_sweep_bounds_the_table(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "c.db", max_entries=5, sweep_every=10)
    try:
        for i in range(20):
            await backend.set(f"k{i}", b"v")
        present = [i for i in range(20) if await backend.get(f"k{i}") is not None]
    finally:
        await backend.aclose()
    assert present == [15, 16, 17, 18, 19]


def test_invalid_backend_settings() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryBackend(max_entries=0)
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryBackend(max_bytes=0)
    with pytest.raises(ValueError, match="exactly one"):
        RedisBackend()
    with pytest.raises(ValueError, match="ttl"):
        ResponseCache(CountingModel(), ttl=0)

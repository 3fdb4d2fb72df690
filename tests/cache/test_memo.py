from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from legato.cache import MemoryBackend, RedisBackend, SQLiteBackend, StepMemo


@dataclass(frozen=True)
class Summary:
    title: str
    scores: tuple[float, ...]


async def check_memo(memo: StepMemo) -> None:
    assert await memo.get("step-a:inputs-1:v1") == (False, None)
    value = {"summary": Summary("t", (0.5, 1.0)), "count": 3}
    await memo.put("step-a:inputs-1:v1", value)
    hit, got = await memo.get("step-a:inputs-1:v1")
    assert hit is True
    assert got == value
    assert isinstance(got["summary"], Summary)  # the exact Python value comes back
    assert await memo.get("step-a:inputs-1:v2") == (False, None)  # a new code version misses
    await memo.put("none", None)
    assert await memo.get("none") == (True, None)  # a stored None is a hit, not a miss


async def test_memo_in_memory() -> None:
    await check_memo(StepMemo())


async def test_memo_in_sqlite(tmp_path: Path) -> None:
    memo = StepMemo(SQLiteBackend(tmp_path / "memo.db"))
    try:
        await check_memo(memo)
    finally:
        await memo.aclose()


@pytest.mark.redis
async def test_memo_in_redis(redis_url: str, redis_prefix: str) -> None:
    memo = StepMemo(RedisBackend(redis_url, prefix=redis_prefix), ttl=60)
    try:
        await check_memo(memo)
    finally:
        await memo.aclose()


async def test_namespaces_do_not_share_outputs() -> None:
    backend = MemoryBackend()
    await StepMemo(backend, namespace="pipeline-a").put("k", 1)
    assert await StepMemo(backend, namespace="pipeline-b").get("k") == (False, None)
    assert await StepMemo(backend, namespace="pipeline-a").get("k") == (True, 1)


async def test_signed_entries_reject_tampering() -> None:
    backend = MemoryBackend()
    memo = StepMemo(backend, secret=b"s3cret")
    await memo.put("k", [1, 2])
    assert await memo.get("k") == (True, [1, 2])
    assert await StepMemo(backend, secret=b"other").get("k") == (False, None)
    (stored_key,) = list(backend._data)
    raw = await backend.get(stored_key)
    assert raw is not None
    await backend.set(stored_key, raw[:-1] + b"\x00")
    assert await memo.get("k") == (False, None)


async def test_unpicklable_output_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="step key 'k' cannot be memoized"):
        await StepMemo().put("k", lambda: None)


async def test_corrupt_entry_is_a_miss() -> None:
    backend = MemoryBackend()
    memo = StepMemo(backend)
    await memo.put("k", 1)
    (stored_key,) = list(backend._data)
    await backend.set(stored_key, b"not a pickle")
    assert await memo.get("k") == (False, None)

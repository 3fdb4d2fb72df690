"""The response cache of a guarded or encrypted model never holds plaintext, and
entries tagged with a data subject can be erased; canary scans of Redis values and
the SQLite cache file (with its WAL)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from legato.cache import (
    CacheBackend,
    CacheConfig,
    RedisBackend,
    ResponseCache,
    SQLiteBackend,
    StepMemo,
    erase_subject,
)
from legato.config import LegatoConfig
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.store import RunStore
from legato.testing import FakeProvider, Reply
from protection.conftest import cache_bytes


def _ask(text: str, subject: str | None = None) -> ChatRequest:
    metadata = {"subject": subject} if subject else {}
    return ChatRequest(messages=[Message(role="user", content=text)], metadata=metadata)


async def test_sealed_cache_values_hold_no_plaintext_and_still_answer(
    cache_backend: CacheBackend, fake_provider: FakeProvider, tmp_path: Path, kek_env: str
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    fake_provider.script(Reply(text=f"answer about {canary}"))
    async with RunStore(f"sqlite:///{tmp_path / 'runs.db'}", encryption_key=kek_env) as store:
        inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
        cache = ResponseCache(inner, cache_backend, sealing=store.cache_sealing())
        first = await cache.chat(_ask(f"tell me about {canary}"))
        second = await cache.chat(_ask(f"tell me about {canary}"))
        assert (first.cached, second.cached) == (False, True)
        assert second.text == f"answer about {canary}"
        assert len(fake_provider.requests) == 1
        raw = await cache_bytes(cache_backend)
        assert canary.encode() not in raw
        assert b"legato:enc:v1:" in raw
        await inner.aclose()


async def test_a_protected_cache_ignores_and_removes_plaintext_entries(
    fake_provider: FakeProvider, tmp_path: Path, kek_env: str
) -> None:
    backend = SQLiteBackend(tmp_path / "cache.db")
    inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    fake_provider.script(Reply(text="plain answer"), Reply(text="fresh answer"))
    await ResponseCache(inner, backend).chat(_ask("same question"))  # written before protection was on
    async with RunStore(f"sqlite:///{tmp_path / 'runs.db'}", encryption_key=kek_env) as store:
        protected = ResponseCache(inner, backend, sealing=store.cache_sealing())
        answer = await protected.chat(_ask("same question"))
        assert (answer.text, answer.cached) == ("fresh answer", False)
    await protected.aclose()
    with sqlite3.connect(tmp_path / "cache.db") as db:  # the stored values (the WAL keeps old pages a while)
        values = [bytes(v) for (v,) in db.execute("SELECT value FROM legato_cache")]
    assert len(values) == 1
    assert values[0].startswith(b"legato:enc:v1:")


async def test_cache_entries_of_a_subject_are_erased(cache_backend: CacheBackend, fake_provider: FakeProvider) -> None:
    inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    cache = ResponseCache(inner, cache_backend)
    fake_provider.script(Reply(text="for Ann"), Reply(text="for Ann, streamed"), Reply(text="for Bob"))
    await cache.chat(_ask("ann's order 1", subject="cust-ann"))
    _ = [c async for c in cache.stream(_ask("ann's order 2", subject="cust-ann"))]
    await cache.chat(_ask("bob's order", subject="cust-bob"))
    assert await erase_subject(cache_backend, "cust-ann") == 2
    raw = await cache_bytes(cache_backend) if isinstance(cache_backend, RedisBackend) else b""
    assert b"for Ann" not in raw
    fake_provider.script(Reply(text="Ann again"))
    assert (await cache.chat(_ask("ann's order 1", subject="cust-ann"))).cached is False
    assert (await cache.chat(_ask("bob's order", subject="cust-bob"))).cached is True
    assert await erase_subject(cache_backend, "nobody") == 0
    if isinstance(cache_backend, SQLiteBackend):
        await cache_backend.aclose()  # the erased rows are gone from the file and its WAL
        assert b"for Ann" not in b"".join(p.read_bytes() for p in cache_backend.path.parent.glob("cache.db*"))
    await inner.aclose()


def _gateway_config(tmp_path: Path, base_url: str, protect: str, guardrail: str | None) -> LegatoConfig:
    model = {"provider": "openai", "model": "gpt-4o-mini", "base_url": base_url, "api_key": "env:PATH"}
    if guardrail:
        model["guardrail"] = guardrail
    cache = {"backend": "sqlite", "path": str(tmp_path / "gw-cache.db"), "protect": protect}
    return LegatoConfig({"models": {"m": model, "plain": {**model, "guardrail": None}}, "cache": cache})


async def test_the_gateway_catalog_seals_skips_or_caches_by_setting(
    fake_provider: FakeProvider, tmp_path: Path, kek_env: str
) -> None:
    from legato.server import catalog_from_config

    async def cached_twice(config: LegatoConfig, name: str, sealing: object) -> bool:
        catalog = catalog_from_config(config, sealing=sealing)
        try:
            fake_provider.script(Reply(text="a"), Reply(text="a"))
            model = catalog.get(name)
            await model.chat(_ask("hello there"))
            return (await model.chat(_ask("hello there"))).cached
        finally:
            await catalog.aclose()

    base = fake_provider.openai_base_url
    guarded = _gateway_config(tmp_path, base, "encrypt", "pii-mask-patterns")
    assert await cached_twice(guarded, "plain", None) is True  # no guardrail, no encryption: cached as before
    assert await cached_twice(guarded, "m", None) is False  # guarded, and no key to seal with: not cached
    async with RunStore(f"sqlite:///{tmp_path / 'runs.db'}", encryption_key=kek_env) as store:
        assert await cached_twice(guarded, "m", store.cache_sealing()) is True
        assert await cached_twice(guarded, "plain", store.cache_sealing()) is True
        skip = _gateway_config(tmp_path, base, "skip", "pii-mask-patterns")
        assert await cached_twice(skip, "m", store.cache_sealing()) is False
    with pytest.raises(ValueError, match="protect"):
        CacheConfig.model_validate({"protect": "plain"})


async def test_sealed_step_memo_holds_no_plaintext_and_replays_the_step(
    cache_backend: CacheBackend, tmp_path: Path, kek_env: str
) -> None:
    """A memoised step's output is sealed like the store's payloads; an entry written
    before sealing was on, or tampered with, is a miss (the step runs again)."""
    from legato import Pipeline

    ann = f"ann-{uuid.uuid4().hex}"  # the canary: only ever in a sealed entry
    calls: list[str] = []
    p = Pipeline("memo")

    @p.step(cache=True)
    def profile(name: str) -> dict[str, str]:
        calls.append(name)
        return {"about": f"profile of {name}"}

    async with RunStore(f"sqlite:///{tmp_path / 'runs.db'}", encryption_key=kek_env) as store:
        await p.run(name="bob", step_cache=StepMemo(cache_backend))  # written before sealing was on
        memo = StepMemo(cache_backend, sealing=store.cache_sealing())
        await p.run(name="bob", step_cache=memo)
        assert calls == ["bob", "bob"]  # the plaintext entry was not used, but replaced by a sealed one
        first = await p.run(name=ann, step_cache=memo)
        second = await p.run(name=ann, step_cache=memo)
        assert first.outputs == second.outputs == {"profile": {"about": f"profile of {ann}"}}
        assert calls == ["bob", "bob", ann]
        assert ann.encode() not in await cache_bytes(cache_backend)
        stored = [await cache_backend.get(k) for k in await _keys(cache_backend)]
        assert len(stored) == 2
        assert all(v is not None and v.startswith(b"legato:enc:v1:") for v in stored)
        for key in await _keys(cache_backend):  # a tampered entry fails authentication: a miss
            sealed = await cache_backend.get(key)
            assert sealed is not None
            await cache_backend.set(key, sealed[:-8] + b"AAAAAAA=", None)
        await p.run(name=ann, step_cache=memo)
        assert calls == ["bob", "bob", ann, ann]


async def _keys(cache_backend: CacheBackend) -> list[str]:
    if isinstance(cache_backend, SQLiteBackend):
        with sqlite3.connect(cache_backend.path) as db:
            return [str(k) for (k,) in db.execute("SELECT key FROM legato_cache")]
    assert isinstance(cache_backend, RedisBackend)
    return [
        k.decode().removeprefix(cache_backend.prefix)
        async for k in cache_backend.client.scan_iter(match=cache_backend.prefix + "*")
    ]

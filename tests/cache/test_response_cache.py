from __future__ import annotations

import pytest

from legato.cache import MemoryBackend, RedisBackend, ResponseCache, bypass
from legato.errors import BadRequest, ServerError, StreamInterrupted
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatChunk, EmbedRequest, Model

from ._doubles import PRICE, CountingModel, ask


async def collect(model: Model, text: str, **params: object) -> list[ChatChunk]:
    return [c async for c in model.stream(ask(text, **params))]


async def test_a_repeated_request_is_answered_from_the_cache() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    first = await cache.chat(ask("hi"))
    ledger = Ledger("run")
    with use_ledger(ledger):
        second = await cache.chat(ask("hi"))
    assert upstream.chat_calls == 1
    assert first.cached is False
    assert first.cost == PRICE
    assert second.cached is True
    assert second.cost == 0.0
    assert second.text == first.text == "echo: hi"
    assert ledger.summary() | {"by_model": {}} == {
        "calls": 1,
        "cache_hits": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "cost": 0.0,
        "saved": PRICE,
        "unpriced_calls": 0,
        "by_model": {},
    }
    assert cache.stats.hits == 1
    assert cache.stats.misses == 1


async def test_errors_are_never_cached() -> None:
    upstream = CountingModel(fail=True)
    cache = ResponseCache(upstream)
    for _ in range(2):
        with pytest.raises(ServerError):
            await cache.chat(ask("hi"))
    assert upstream.chat_calls == 2
    upstream.fail = False
    assert (await cache.chat(ask("hi"))).cached is False
    assert (await cache.chat(ask("hi"))).cached is True


async def test_sampled_requests_are_not_cached_unless_opted_in() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    await cache.chat(ask("hi", temperature=0.7))
    await cache.chat(ask("hi", temperature=0.7))
    assert upstream.chat_calls == 2
    assert cache.stats.bypassed == 2

    sampled = ResponseCache(upstream, cache_sampled=True)
    await sampled.chat(ask("hi", temperature=0.7))
    assert (await sampled.chat(ask("hi", temperature=0.7))).cached is True
    assert upstream.chat_calls == 3
    # temperature 0 (and unset) is cached by default
    await cache.chat(ask("hi", temperature=0))
    assert (await cache.chat(ask("hi", temperature=0))).cached is True


async def test_per_call_bypass_and_refresh() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    await cache.chat(ask("hi"))
    bypass = await cache.chat(ask("hi", metadata={"cache": False}))
    assert bypass.cached is False
    assert upstream.chat_calls == 2
    refreshed = await cache.chat(ask("hi", metadata={"cache": "refresh"}))
    assert refreshed.cached is False
    assert upstream.chat_calls == 3
    assert cache.stats.stored == 2  # the refresh stored its fresh answer
    assert (await cache.chat(ask("hi"))).cached is True
    with pytest.raises(BadRequest, match="metadata\\['cache'\\]"):
        await cache.chat(ask("hi", metadata={"cache": "sometimes"}))


async def test_no_hits_across_namespaces_or_tenants() -> None:
    backend = MemoryBackend()
    upstream = CountingModel()
    blue = ResponseCache(upstream, backend, namespace="blue")
    green = ResponseCache(upstream, backend, namespace="green")
    for text in ("a", "b", "c"):
        await blue.chat(ask(text))
        await blue.chat(ask(text, metadata={"tenant": "acme"}))
    for text in ("a", "b", "c"):
        assert (await green.chat(ask(text))).cached is False
        assert (await blue.chat(ask(text, metadata={"tenant": "globex"}))).cached is False
    assert green.stats.hits == 0
    assert blue.stats.hits == 0
    assert upstream.chat_calls == 12
    assert (await blue.chat(ask("a", metadata={"tenant": "acme"}))).cached is True


async def test_ttl_expiry() -> None:
    now = [0.0]
    upstream = CountingModel()
    cache = ResponseCache(upstream, MemoryBackend(clock=lambda: now[0]), ttl=10)
    await cache.chat(ask("hi"))
    now[0] = 9.9
    assert (await cache.chat(ask("hi"))).cached is True
    now[0] = 10.0
    assert (await cache.chat(ask("hi"))).cached is False
    assert upstream.chat_calls == 2


async def test_streams_are_replayed_chunk_for_chunk() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    live = await collect(cache, "one two three")
    ledger = Ledger("run")
    with use_ledger(ledger):
        replay = await collect(cache, "one two three")
    assert upstream.stream_calls == 1
    assert [c.text for c in replay] == [c.text for c in live] == ["echo:", " one", " two", " three", ""]
    assert [c.model_copy(update={"cost": None}) for c in replay] == [c.model_copy(update={"cost": None}) for c in live]
    assert live[-1].cost == PRICE
    assert replay[-1].cost == 0.0
    assert ledger.cache_hits == 1
    assert ledger.saved == PRICE
    # a stream and a single response are stored apart
    assert (await cache.chat(ask("one two three"))).cached is False


async def test_a_stream_left_early_or_cut_is_not_cached() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    stream = cache.stream(ask("one two three"))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert await collect(cache, "one two three")  # goes upstream again
    assert upstream.stream_calls == 2

    broken = CountingModel(fail_stream_after=2)
    cache = ResponseCache(broken)
    for _ in range(2):
        with pytest.raises(StreamInterrupted):
            await collect(cache, "one two three")
    assert broken.stream_calls == 2
    assert cache.stats.stored == 0


async def test_embeddings_are_cached() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    first = await cache.embed(EmbedRequest(inputs=["abc", "de"]))
    second = await cache.embed(EmbedRequest(inputs=["abc", "de"]))
    assert upstream.embed_calls == 1
    assert second.vectors == first.vectors == [[3.0, 1.0], [2.0, 1.0]]
    assert second.cached is True


async def test_a_backend_outage_never_fails_a_call() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream, RedisBackend("redis://127.0.0.1:1/0"))  # nothing listens on port 1
    try:
        assert (await cache.chat(ask("hi"))).text == "echo: hi"
        assert (await cache.chat(ask("hi"))).cached is False
    finally:
        await cache.aclose()
    assert upstream.chat_calls == 2
    assert cache.stats.backend_errors == 4  # two failed reads, two failed writes


@pytest.mark.redis
async def test_replicas_share_entries_through_redis(redis_url: str, redis_prefix: str) -> None:
    upstream_a, upstream_b = CountingModel(), CountingModel()
    replica_a = ResponseCache(upstream_a, RedisBackend(redis_url, prefix=redis_prefix), namespace="gw")
    replica_b = ResponseCache(upstream_b, RedisBackend(redis_url, prefix=redis_prefix), namespace="gw")
    try:
        await replica_a.chat(ask("hi"))
        assert (await replica_b.chat(ask("hi"))).cached is True
        await collect(replica_a, "streamed")
        assert [c.text for c in await collect(replica_b, "streamed")] == ["echo:", " streamed", ""]
    finally:
        await replica_a.aclose()
        await replica_b.aclose()
    assert (upstream_a.chat_calls, upstream_b.chat_calls) == (1, 0)
    assert (upstream_a.stream_calls, upstream_b.stream_calls) == (1, 0)


async def test_bypass_block_covers_every_call_inside_it() -> None:
    upstream = CountingModel()
    cache = ResponseCache(upstream)
    await cache.chat(ask("hi"))
    with bypass():
        assert (await cache.chat(ask("hi"))).cached is False
        assert "".join([c.text async for c in cache.stream(ask("hi"))]) == "echo: hi"
        assert (await cache.chat(ask("hi", metadata={"cache": True}))).cached is True  # the request wins
    with bypass(refresh=True):
        assert (await cache.chat(ask("new"))).cached is False
    assert (await cache.chat(ask("new"))).cached is True  # the refresh stored it
    assert (await cache.chat(ask("hi"))).cached is True
    assert upstream.chat_calls == 3
    assert upstream.stream_calls == 1

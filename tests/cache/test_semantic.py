from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from legato.cache import SemanticCache
from legato.errors import BadRequest
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message

from ._doubles import CountingModel, ask

VOCAB = ["reset", "password", "weather", "paris", "capital", "france", "my", "how", "the"]


class BagOfWords:
    """A tiny, exact embedding model: counts of a few words (a real Model, not a stand-in)."""

    name = "bag-of-words"

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        vectors = []
        for text in request.inputs:
            words = re.findall(r"[a-z]+", text.lower())
            vectors.append([float(words.count(w)) for w in VOCAB])
        return EmbedResponse(vectors=vectors, model=self.name, provider="python")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise BadRequest("embedding only")

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise BadRequest("embedding only")

    async def aclose(self) -> None:
        pass


async def test_a_paraphrase_is_answered_from_the_cache() -> None:
    upstream = CountingModel()
    cache = SemanticCache(upstream, BagOfWords(), threshold=0.9)
    first = await cache.chat(ask("How do I reset my password?"))
    again = await cache.chat(ask("My password: how to reset it?"))  # same words, another order
    assert upstream.chat_calls == 1
    assert again.cached is True
    assert again.cost == 0.0
    assert again.text == first.text
    other = await cache.chat(ask("What is the weather in Paris?"))
    assert other.cached is False
    assert upstream.chat_calls == 2


async def test_the_context_must_match_exactly() -> None:
    upstream = CountingModel()
    cache = SemanticCache(upstream, BagOfWords(), threshold=0.9)
    await cache.chat(ask("reset my password"))
    with_system = ChatRequest(
        messages=[
            Message(role="system", content="Answer in French."),
            Message(role="user", content="reset my password"),
        ]
    )
    assert (await cache.chat(with_system)).cached is False
    assert (await cache.chat(ask("reset my password", max_tokens=5))).cached is False
    assert (await cache.chat(ask("reset my password", metadata={"tenant": "other"}))).cached is False
    other_namespace = SemanticCache(upstream, BagOfWords(), namespace="elsewhere")
    assert (await other_namespace.chat(ask("reset my password"))).cached is False
    assert upstream.chat_calls == 5


async def test_policy_bypass_and_bounds() -> None:
    now = [0.0]
    upstream = CountingModel()
    cache = SemanticCache(upstream, BagOfWords(), threshold=0.9, max_entries=2, ttl=10, clock=lambda: now[0])
    await cache.chat(ask("how to reset my password"))
    assert (await cache.chat(ask("how to reset my password", metadata={"cache": False}))).cached is False
    assert (await cache.chat(ask("how to reset my password", temperature=1.0))).cached is False
    await cache.chat(ask("weather in paris"))
    await cache.chat(ask("capital of france"))
    assert len(cache) == 2  # the oldest answer went first
    assert (await cache.chat(ask("how to reset my password"))).cached is False
    now[0] = 11
    assert (await cache.chat(ask("capital of france"))).cached is False  # expired
    with pytest.raises(ValueError, match="threshold"):
        SemanticCache(upstream, BagOfWords(), threshold=0)


@pytest.mark.slow
@pytest.mark.local_models
async def test_with_the_local_minilm_embedding_model() -> None:
    from legato.tasks import LocalEmbedModel

    upstream = CountingModel()
    cache = SemanticCache(upstream, LocalEmbedModel())  # the default threshold, 0.95
    await cache.chat(ask("How do I reset my password?"))
    paraphrase = await cache.chat(ask("How can I reset my password?"))
    unrelated = await cache.chat(ask("Which trains go from Paris to Lyon?"))
    assert paraphrase.cached is True
    assert unrelated.cached is False
    assert upstream.chat_calls == 2

"""Semantic cache (opt-in): answer a question phrased differently from a similar past one.

The last user message is embedded (with the embedding ``Model`` you give it, e.g.
the packaged local MiniLM model) and compared by cosine similarity with the
questions already answered *in the same context*: same namespace and tenant, same
model, same earlier messages (system prompt, history) and same parameters. At or
above ``threshold`` the stored answer is returned.

The trade-off: a semantic hit can be wrong. "What is the capital of Australia?" and
"What is the capital of Austria?" are close in embedding space. A high threshold
(0.95 and up for MiniLM) keeps false hits rare but catches fewer paraphrases; use
it only where a near-duplicate answer is acceptable (FAQ bots, classification of
near-identical inputs), never where a digit or a name in the prompt matters.

The index is in process memory (numpy), bounded by ``max_entries`` (least recently
used first out). Streams are passed through uncached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legato.cache._keys import chat_key
from legato.cache._response import CacheStats, cache_mode, record_hit
from legato.errors import MalformedResponse
from legato.providers import ChatRequest, ChatResponse, EmbedRequest, Message, Model, ModelWrapper

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SemanticCache"]


@dataclass(eq=False)
class _Entry:
    context: str
    vector: Any  # unit-length numpy vector
    response: ChatResponse
    expires_at: float | None


class SemanticCache(ModelWrapper):
    """Answer near-duplicate questions from memory. See the module docstring for the trade-off.

    Args:
        inner: the model whose answers are cached.
        embedder: a model whose ``embed`` turns a question into a vector.
        threshold: cosine similarity (0 < threshold <= 1) at which a past answer is reused.
        namespace: scopes entries (the request's ``metadata["tenant"]`` scopes them further).
        max_entries: most answers kept; the least recently used go first.
        ttl: seconds an answer lives (``None``: until evicted).
        cache_sampled: also cache requests with ``temperature > 0``.
    """

    def __init__(
        self,
        inner: Model,
        embedder: Model,
        *,
        threshold: float = 0.95,
        namespace: str = "default",
        max_entries: int = 10_000,
        ttl: float | None = 3600.0,
        cache_sampled: bool = False,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.embedder = embedder
        self.threshold = threshold
        self.namespace = namespace
        self.max_entries = max_entries
        self.ttl = ttl
        self.cache_sampled = cache_sampled
        self.clock = clock
        self.stats = CacheStats()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        mode = cache_mode(request, cache_sampled=self.cache_sampled)
        question = _last_user_text(request)
        if mode is None or question is None:
            self.stats.bypassed += 1
            return await self.inner.chat(request)
        context = self._context(request)
        vector = await self._embed(question)
        if mode == "read":
            hit = self._search(context, vector)
            if hit is not None:
                self.stats.hits += 1
                record_hit(hit.model, hit.provider, hit.cost)
                return hit.model_copy(update={"cached": True, "cost": 0.0})
        self.stats.misses += 1
        response = await self.inner.chat(request)
        self._add(context, vector, response)
        return response

    def _context(self, request: ChatRequest) -> str:
        """Everything but the question itself: it must match exactly for a semantic hit."""
        messages = list(request.messages)
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == "user":
                messages[i] = Message(role="user", content="\x00question")
                break
        blank = request.model_copy(update={"messages": messages})
        return chat_key(blank, model=request.model or self.inner.name, namespace=self.namespace)

    async def _embed(self, text: str) -> np.ndarray[Any, Any]:
        import numpy as np

        response = await self.embedder.embed(EmbedRequest(inputs=[text]))
        if len(response.vectors) != 1 or not response.vectors[0]:
            raise MalformedResponse(
                f"embedder {self.embedder.name!r} returned {len(response.vectors)} vectors for 1 input",
                provider=response.provider,
            )
        vector = np.asarray(response.vectors[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def _search(self, context: str, vector: np.ndarray[Any, Any]) -> ChatResponse | None:
        import numpy as np

        now = self.clock()
        expired = [k for k, e in self._entries.items() if e.expires_at is not None and now >= e.expires_at]
        for k in expired:
            del self._entries[k]
        candidates = [(k, e) for k, e in self._entries.items() if e.context == context]
        candidates = [(k, e) for k, e in candidates if e.vector.shape == vector.shape]
        if not candidates:
            return None
        scores = np.stack([e.vector for _, e in candidates]) @ vector
        best = int(np.argmax(scores))
        if float(scores[best]) < self.threshold:
            return None
        key, entry = candidates[best]
        self._entries.move_to_end(key)
        return entry.response

    def _add(self, context: str, vector: np.ndarray[Any, Any], response: ChatResponse) -> None:
        expires_at = None if self.ttl is None else self.clock() + self.ttl
        self._entries[self._next_id] = _Entry(context, vector, response, expires_at)
        self._next_id += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _last_user_text(request: ChatRequest) -> str | None:
    for message in reversed(request.messages):
        if message.role == "user":
            text = message.text
            return text if text.strip() else None
    return None

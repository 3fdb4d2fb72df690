"""Response caching, semantic caching, single-flight and step memoization.

* :class:`ResponseCache` — a ``Model`` wrapper answering repeated requests from a
  backend, with single-flight for identical concurrent requests;
* :class:`SemanticCache` — opt-in: answers near-duplicate questions (embeddings +
  cosine threshold);
* :class:`StepMemo` — the engine's step cache (``get``/``put``) over the same backends;
* backends: :class:`MemoryBackend` (LRU bounded by entries and bytes),
  :class:`SQLiteBackend`, :class:`RedisBackend`, or any :class:`CacheBackend`;
* :class:`SingleFlight` — the deduplication primitive on its own;
* :func:`chat_key` / :func:`embed_key` — the canonical request keys;
* :class:`CacheConfig` — the ``cache:`` section of ``legato.yaml``;
* :class:`Sealing`, :func:`erase_subject` — encrypted values and erasure by data subject.
"""

from legato.cache._backends import CacheBackend, MemoryBackend
from legato.cache._config import CacheConfig
from legato.cache._keys import chat_key, embed_key
from legato.cache._memo import StepMemo
from legato.cache._protect import Sealing, SubjectIndex, erase_subject, subject_digest
from legato.cache._redis import RedisBackend
from legato.cache._response import CacheStats, ResponseCache, bypass
from legato.cache._semantic import SemanticCache
from legato.cache._single_flight import SingleFlight
from legato.cache._sqlite import SQLiteBackend

__all__ = [
    "CacheBackend",
    "CacheConfig",
    "CacheStats",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "SQLiteBackend",
    "Sealing",
    "SemanticCache",
    "SingleFlight",
    "StepMemo",
    "SubjectIndex",
    "bypass",
    "chat_key",
    "embed_key",
    "erase_subject",
    "subject_digest",
]

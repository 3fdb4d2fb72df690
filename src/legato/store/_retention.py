"""Retention and erasure: how long runs and their payloads are kept, and deleting a
data subject's payloads on request.

The ``retention:`` section of ``legato.yaml``::

    retention:
      default:
        keep_runs_days: 90          # finished runs are deleted after this (null: kept)
        keep_payloads_days: 30      # then only metadata is kept after this (null: kept)
      pipelines:
        support:
          keep_payloads_days: 7
          payloads: metadata        # never keep payloads: timings, costs and statuses only
          subject: customer_id      # the input naming the data subject of a run
      interval_s: 3600              # how often `legato serve` applies it

*Payloads* are what a run carried: its inputs and outputs, step and map-item outputs,
event data and model-call details (prompts and answers). *Metadata* is what stays:
ids, pipeline, statuses, step names, timings, token counts, costs and (redacted)
error messages. ``runs.payloads`` says why a run has none: ``metadata`` (its pipeline
keeps none; an interrupted run of it resumes from the start), ``expired`` (past
``keep_payloads_days``) or ``erased`` (its subject's data was erased).

A run's *subject* is kept as a SHA-256 digest (:func:`legato.cache.subject_digest`),
so the store never names the person; :func:`erase_subject` takes the subject and
removes the payloads of every run of it, and the journal entries written about those
runs. The run-search index follows (its triggers re-index the emptied rows). On
SQLite the freed pages are zeroed (``secure_delete``), the full-text indexes are
merged anew and the write-ahead log is checkpointed, so erased words do not linger
in the files; on PostgreSQL the old row versions stay in the table files until
``VACUUM`` reclaims them (they are never in a ``pg_dump``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from legato.config import LegatoConfig
from legato.errors import ConfigError
from legato.store._records import TERMINAL
from legato.store._schema import events, journal_entries, map_items, model_calls, runs, step_attempts

if TYPE_CHECKING:
    from legato.store._runs import RunStore

__all__ = [
    "ErasureReport",
    "PayloadMode",
    "PayloadState",
    "RetentionConfig",
    "RetentionReport",
    "RetentionRule",
    "apply_retention",
    "delete_runs",
    "erase_subject",
    "explain_payloads",
    "strip_payloads",
    "subject_key",
]

log = logging.getLogger("legato.store")
_DAY = 86_400.0
_CHUNK = 500


class PayloadMode(StrEnum):
    FULL = "full"
    METADATA = "metadata"


class PayloadState(StrEnum):
    """Why a run has no payloads (``runs.payloads``; ``NULL`` when it has them)."""

    METADATA = "metadata"
    EXPIRED = "expired"
    ERASED = "erased"


_GONE = {
    PayloadState.METADATA: "payloads are not kept for this pipeline (metadata only): a resume runs it from the start",
    PayloadState.EXPIRED: "payloads were removed after the retention period (metadata only)",
    PayloadState.ERASED: "payloads were erased at the request of its data subject (metadata only)",
}


def explain_payloads(state: str | None) -> str | None:
    """What a run's ``payloads`` state means, for people (``None``: payloads are kept)."""
    return None if state is None else _GONE.get(PayloadState(state), state)


class RetentionRule(BaseModel):
    """How long one pipeline's runs and payloads are kept; ``None`` fields fall back to
    ``retention.default``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_runs_days: float | None = Field(default=None, gt=0)
    keep_payloads_days: float | None = Field(default=None, gt=0)
    payloads: PayloadMode | None = None
    subject: str | None = Field(default=None, min_length=1, description="the input naming the run's data subject")


class RetentionConfig(BaseModel):
    """The ``retention:`` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: RetentionRule = Field(default_factory=RetentionRule)
    pipelines: dict[str, RetentionRule] = Field(default_factory=dict)
    interval_s: float = Field(default=3600.0, gt=0)

    @classmethod
    def load(cls, config: LegatoConfig | None = None) -> RetentionConfig:
        return (config if config is not None else LegatoConfig.load()).section("retention", cls)

    @classmethod
    def from_environment(cls) -> RetentionConfig:
        """The section of the ``legato.yaml`` in use; defaults when there is none or it
        cannot be read (the commands that need the config report that themselves)."""
        try:
            return cls.load()
        except ConfigError:
            return cls()

    def rule(self, pipeline: str) -> RetentionRule:
        """``pipeline``'s rule with the default's values where it sets none."""
        own = self.pipelines.get(pipeline)
        if own is None:
            return self.default
        merged = {k: getattr(own, k) if getattr(own, k) is not None else getattr(self.default, k) for k in own.__dict__}
        return RetentionRule(**merged)

    def keeps_payloads(self, pipeline: str) -> bool:
        return self.rule(pipeline).payloads is not PayloadMode.METADATA

    def subject_of(self, pipeline: str, inputs: dict[str, Any]) -> str | None:
        """The data subject named by the pipeline's ``subject`` input, if any."""
        field = self.rule(pipeline).subject
        value = inputs.get(field) if field else None
        return None if value is None or value == "" else str(value)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    deleted: int  # runs deleted (past keep_runs_days)
    expired: int  # runs whose payloads were removed (past keep_payloads_days)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class ErasureReport:
    runs: int
    journal_entries: int
    cache_entries: int


def subject_key(subject: str) -> str:
    """How a subject is stored: a digest, the same the response cache indexes by."""
    from legato.cache import subject_digest

    return subject_digest(subject)


def delete_runs(conn: Connection, ids: Sequence[str]) -> None:
    """Delete runs with their steps, map items, events and model calls (journal entries stay)."""
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        for table in (step_attempts, map_items, events, model_calls):
            conn.execute(table.delete().where(table.c.run_id.in_(chunk)))
        conn.execute(runs.delete().where(runs.c.id.in_(chunk)))


def strip_payloads(conn: Connection, ids: Sequence[str], state: PayloadState, *, journal: bool = False) -> int:
    """Remove the payloads of runs ``ids`` (and, with ``journal``, the journal entries
    about them), leaving their metadata; returns how many journal entries went."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable
    removed = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        conn.execute(runs.update().where(runs.c.id.in_(chunk)).values(inputs="{}", outputs=None, payloads=state.value))
        conn.execute(step_attempts.update().where(step_attempts.c.run_id.in_(chunk)).values(output=None))
        conn.execute(map_items.update().where(map_items.c.run_id.in_(chunk)).values(output=None))
        conn.execute(events.update().where(events.c.run_id.in_(chunk)).values(data=None))
        conn.execute(model_calls.update().where(model_calls.c.run_id.in_(chunk)).values(detail=None))
        if journal:
            result = conn.execute(journal_entries.delete().where(journal_entries.c.run_id.in_(chunk)))
            removed += int(result.rowcount or 0)
    return removed


def _ended_before(cutoff: float) -> Any:
    return sa.and_(runs.c.status.in_(tuple(TERMINAL)), sa.func.coalesce(runs.c.finished_at, runs.c.updated_at) < cutoff)


async def apply_retention(store: RunStore, config: RetentionConfig, *, dry_run: bool = False) -> RetentionReport:
    """Delete finished runs past ``keep_runs_days`` and remove the payloads of those past
    ``keep_payloads_days``, per pipeline (``dry_run``: count only)."""
    now = store.clock()

    def work(conn: Connection) -> RetentionReport:
        deleted, expired = [], []
        for (pipeline,) in conn.execute(sa.select(runs.c.pipeline).distinct()).all():
            rule = config.rule(pipeline)
            mine = runs.c.pipeline == pipeline
            if rule.keep_runs_days is not None:
                old = _ended_before(now - rule.keep_runs_days * _DAY)
                deleted += [r[0] for r in conn.execute(sa.select(runs.c.id).where(mine, old)).all()]
            if rule.keep_payloads_days is not None:
                stale = _ended_before(now - rule.keep_payloads_days * _DAY)
                query = sa.select(runs.c.id).where(mine, stale, runs.c.payloads.is_(None))
                expired += [r[0] for r in conn.execute(query).all() if r[0] not in set(deleted)]
        if not dry_run:
            delete_runs(conn, deleted)
            strip_payloads(conn, expired, PayloadState.EXPIRED)
        return RetentionReport(len(deleted), len(expired), dry_run)

    report = await store.run_sync(work, readonly=dry_run)
    if not dry_run and (report.deleted or report.expired):
        await store.checkpoint_wal()
    return report


async def erase_subject(store: RunStore, subject: str, *, caches: Iterable[Any] = ()) -> ErasureReport:
    """Remove the payloads of every run of ``subject``, the journal entries about those
    runs, and the response-cache entries tagged with it in ``caches`` (backends)."""
    from legato.cache import erase_subject as erase_cached

    key = subject_key(subject)

    def work(conn: Connection) -> tuple[int, int]:
        ids = [r[0] for r in conn.execute(sa.select(runs.c.id).where(runs.c.subject == key)).all()]
        entries = strip_payloads(conn, ids, PayloadState.ERASED, journal=True)
        if ids and conn.dialect.name == "sqlite":  # rebuild the full-text segments without the erased words
            conn.exec_driver_sql("INSERT INTO run_text_fts(run_text_fts) VALUES ('optimize')")
            conn.exec_driver_sql("INSERT INTO journal_fts(journal_fts) VALUES ('optimize')")
        return len(ids), entries

    count, entries = await store.run_sync(work)
    await store.checkpoint_wal()
    cached = 0
    for backend in caches:
        cached += await erase_cached(backend, subject)
    return ErasureReport(count, entries, cached)

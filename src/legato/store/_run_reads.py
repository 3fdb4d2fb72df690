"""Reading runs back: a run by id or prefix, listings, and a run's steps, map items
and events. Every read is one read-only transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.errors import RunNotFound
from legato.store._codec import decode
from legato.store._connection import StoreConnection
from legato.store._lookup import resolve, short_ids
from legato.store._records import (
    EventRecord,
    RunRecord,
    StepRecord,
)
from legato.store._rows import event_record, run_record, step_record
from legato.store._schema import events, map_items, runs, step_attempts
from legato.store._search import RunFilter
from legato.store._search import where as filter_runs

__all__ = ["RunReads", "get_run_row"]


class RunReads(StoreConnection):
    """The read side of :class:`~legato.store.RunStore`."""

    async def find_by_idempotency_key(self, key: str, *, tenant: str = "") -> RunRecord | None:
        """The run created with idempotency ``key`` (for ``tenant``), or None."""
        query = sa.select(runs).where(runs.c.tenant == tenant, runs.c.idempotency_key == key)

        def find(conn: Connection) -> RunRecord | None:
            row = conn.execute(query).mappings().first()
            return None if row is None else run_record(row)

        return await self.run_sync(find, readonly=True)

    async def get_run(self, run_id: str, *, tenant: str | None = None) -> RunRecord:
        """The run with id ``run_id`` or a unique prefix of it (see :meth:`resolve_run_id`).

        With ``tenant``, only that tenant's runs are considered: another tenant's run
        is :class:`RunNotFound` like an unknown id (see :func:`legato.store.visible_run`)."""
        return await self.run_sync(lambda conn: get_run_row(conn, run_id, prefix=True, tenant=tenant), readonly=True)

    async def resolve_run_id(self, prefix: str, *, tenant: str | None = None) -> str:
        """The full id of the one run whose id is, or starts with, ``prefix``.

        Raises :class:`RunNotFound` when none matches and :class:`AmbiguousRunId`
        (listing the matching ids) when several do. With ``tenant`` only that tenant's
        runs are considered, so neither the answer nor the candidates reveal other
        tenants' runs."""
        return await self.run_sync(lambda conn: resolve(conn, prefix, tenant), readonly=True)

    async def short_ids(self, ids: Iterable[str], *, tenant: str | None = None, minimum: int = 8) -> dict[str, str]:
        """The shortest prefix (at least ``minimum`` characters) of each id that no other
        run's id shares, within ``tenant``'s runs when given: what a listing prints so
        that the printed id resolves. Time-ordered ids of runs started close together
        share their leading characters, so a fixed-length prefix would not do.

        A prefix stays unique as later runs are added unless one starts in the same
        millisecond range, so the short ids of older runs are stable."""
        wanted = list(ids)
        return await self.run_sync(lambda conn: short_ids(conn, wanted, tenant, minimum), readonly=True)

    async def list_runs(
        self,
        where: RunFilter | None = None,
        *,
        limit: int = 50,
        oldest_first: bool = False,
        cursor: tuple[float, str] | None = None,
        status: str | Iterable[str] | None = None,
        pipeline: str | None = None,
        tenant: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RunRecord]:
        """Runs matching ``where`` (a :class:`~legato.store.RunFilter`: status, pipeline,
        owner, time, words, tags, cost, duration), newest first (``oldest_first``:
        oldest first). ``status``, ``pipeline``, ``tenant``, ``since`` and ``until``
        are shorthands for the same fields of ``where`` (given both ways, both apply).
        ``status="dead"`` lists the dead-letter queue. ``cursor`` is the
        ``(created_at, id)`` of the last run of the previous page: the page goes on
        after it (keyset pagination, stable while runs arrive)."""
        key = (runs.c.created_at, runs.c.id)
        order = [c.asc() for c in key] if oldest_first else [c.desc() for c in key]
        query = sa.select(runs).order_by(*order).limit(limit)
        statuses = (status,) if isinstance(status, str) else tuple(status or ())
        shorthand = RunFilter(status=statuses, pipeline=pipeline, tenant=tenant, since=since, until=until)
        query = filter_runs(filter_runs(query, shorthand, self.dialect), where or RunFilter(), self.dialect)
        if cursor is not None:
            after = sa.tuple_(*key) > sa.tuple_(*cursor) if oldest_first else sa.tuple_(*key) < sa.tuple_(*cursor)
            query = query.where(after)
        return await self.run_sync(
            lambda conn: [run_record(r) for r in conn.execute(query).mappings().all()], readonly=True
        )

    async def pipelines(self, *, tenant: str | None = None) -> list[str]:
        """The name of every pipeline with a stored run (of ``tenant``, if given), sorted."""
        query = sa.select(runs.c.pipeline).distinct().order_by(runs.c.pipeline)
        if tenant is not None:
            query = query.where(runs.c.tenant == tenant)
        return await self.run_sync(lambda conn: [str(r) for r in conn.execute(query).scalars()], readonly=True)

    async def steps(self, run_id: str) -> list[StepRecord]:
        """Every stored step attempt of the run, in the order they finished."""
        query = sa.select(step_attempts).where(step_attempts.c.run_id == run_id).order_by(step_attempts.c.id)
        return await self.run_sync(
            lambda conn: [step_record(r) for r in conn.execute(query).mappings().all()], readonly=True
        )

    async def completed_steps(self, run_id: str) -> dict[str, StepRecord]:
        """The finished (succeeded or skipped) attempt of each step: what a resume keeps."""
        query = (
            sa.select(step_attempts)
            .where(step_attempts.c.run_id == run_id, step_attempts.c.status.in_(("succeeded", "skipped")))
            .order_by(step_attempts.c.id)
        )
        return await self.run_sync(
            lambda conn: {r["step"]: step_record(r) for r in conn.execute(query).mappings().all()}, readonly=True
        )

    async def last_attempts(self, run_id: str) -> dict[str, int]:
        """The highest stored attempt number of each step (a resume numbers on from it)."""
        query = (
            sa.select(step_attempts.c.step, sa.func.max(step_attempts.c.attempt))
            .where(step_attempts.c.run_id == run_id)
            .group_by(step_attempts.c.step)
        )
        return await self.run_sync(
            lambda conn: {str(r[0]): int(r[1]) for r in conn.execute(query).all()}, readonly=True
        )

    async def map_item_times(self, run_id: str) -> dict[str, list[list[float]]]:
        """The items of the run's unfinished map steps checkpointed so far, without their
        outputs: step -> ``[index, attempt, duration_s, finished_at]`` (what a live view shows)."""
        cols = (
            map_items.c.step,
            map_items.c.item,
            map_items.c.attempt,
            map_items.c.duration_s,
            map_items.c.finished_at,
        )
        query = sa.select(*cols).where(map_items.c.run_id == run_id).order_by(map_items.c.id)

        def read(conn: Connection) -> dict[str, list[list[float]]]:
            out: dict[str, list[list[float]]] = {}
            for step, item, attempt, duration, at in conn.execute(query).all():
                if ":" not in step:  # step journal rows are keyed "journal:<step>"
                    out.setdefault(step, []).append([item, attempt, duration or 0.0, at])
            return out

        return await self.run_sync(read, readonly=True)

    async def map_items(self, run_id: str) -> dict[str, dict[int, Any]]:
        """The checkpointed items of the run's unfinished map steps: step -> index -> output."""
        query = (
            sa.select(map_items.c.step, map_items.c.item, map_items.c.output)
            .where(map_items.c.run_id == run_id)
            .order_by(map_items.c.id)
        )

        def read(conn: Connection) -> dict[str, dict[int, Any]]:
            found: dict[str, dict[int, Any]] = {}
            for step, item, output in conn.execute(query).all():
                found.setdefault(step, {})[item] = decode(output)
            return found

        return await self.run_sync(read, readonly=True)

    async def events(self, run_id: str, *, after_id: int = 0) -> list[EventRecord]:
        """The run's events in order (``after_id``: only those after that event id)."""
        query = sa.select(events).where(events.c.run_id == run_id, events.c.id > after_id).order_by(events.c.id)
        return await self.run_sync(
            lambda conn: [event_record(r) for r in conn.execute(query).mappings().all()], readonly=True
        )

    # -- checkpoints (fenced by the lease) -------------------------------------------


def get_run_row(conn: Connection, run_id: str, *, prefix: bool = False, tenant: str | None = None) -> RunRecord:
    scoped = sa.select(runs) if tenant is None else sa.select(runs).where(runs.c.tenant == tenant)
    row = conn.execute(scoped.where(runs.c.id == run_id)).mappings().first()
    if row is None and prefix:
        row = conn.execute(scoped.where(runs.c.id == resolve(conn, run_id, tenant))).mappings().first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run_record(row)

"""Queues: runs enqueued for workers to claim (``legato run --queue``, ``legato worker``).

An enqueued run is an ordinary row of ``runs`` with status ``queued`` and its
queue's name; claiming it is one transaction that turns it ``running`` under the
claiming worker's lease, after which the durable runner executes it exactly as
any other run (leases, heartbeats, takeover, recovery; see docs/durable-runs.md).
Idempotency keys, ownership (the ``tenant``), cancel and run-id prefixes are the
run's own, so they work for queued runs unchanged; a queued run cancelled never starts.

**The claim** picks, within one queue, a run of the tenant with the fewest runs of
this queue in flight (per-key fairness: one tenant's burst does not starve the
others), among those the run with the highest ``priority``, then the oldest:

* **PostgreSQL**: ``UPDATE runs ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING``: concurrent workers skip each other's rows instead of waiting.
* **SQLite** (one machine): the same single ``UPDATE ... WHERE id = (SELECT ...)
  RETURNING`` statement; SQLite serialises writers, so two claims never take one row.

**Global concurrency** (``concurrency: N`` of a queue) is part of the claim query:
the row is taken only while fewer than N runs of the queue are ``running``. On
PostgreSQL the claims of a limited queue take a transaction-scoped advisory lock
first, so two workers cannot both count N-1 and both claim; a run whose worker died
keeps its slot until it is taken over (it is still in flight).

**Rate limit** (``rate: 10/s`` of a queue): at most N claims of the queue in any
sliding window of the given length, counted from ``claimed_at`` (set by each claim,
a run put back and claimed again counts twice) in the same claim statement and under
the same advisory lock, so the limit holds across the fleet as the concurrency does.

**Wake-up**: enqueueing on PostgreSQL sends ``pg_notify('legato_run_queued', queue)``
in the inserting transaction; :class:`QueueWaiter` LISTENs (the same asyncpg
machinery as cancel notifications) and falls back to polling. On SQLite it polls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator
from sqlalchemy.engine import Connection

from legato.store._cancel import QUEUE_CHANNEL
from legato.store._listen import Listener, asyncpg_dsn
from legato.store._records import EventRecord, RunRecord, StoredStatus
from legato.store._rows import event_row, run_record
from legato.store._runs import RunStore
from legato.store._schema import events, runs, workers

__all__ = [
    "QueueSettings",
    "QueueStats",
    "QueueWaiter",
    "QueuesSection",
    "RateLimit",
    "WorkerStats",
    "claim_run",
    "default_queue",
    "forget_worker",
    "queue_stats",
    "renew_worker",
    "requeue",
    "worker_stats",
]


_QUEUED = StoredStatus.QUEUED.value
_RUNNING = StoredStatus.RUNNING.value


_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``runs`` claims in any window of ``per_s`` seconds."""

    runs: int
    per_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"10/s"``, ``"100/m"``, ``"5/10s"``, ``"1000/h"``."""
        match = _RATE.match(text)
        if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
            raise ValueError(f"a rate is RUNS/PERIOD such as 10/s, 100/m or 5/10s, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2) or 1) * _PER[match.group(3)])


class QueueSettings(BaseModel):
    """One queue of the ``queues:`` section of ``legato.yaml``."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1, description="Runs of this queue in flight across all workers.")
    rate: str | None = Field(None, description="Runs started across all workers: 10/s, 100/m, 5/10s.")
    pipelines: list[str] = Field(default_factory=list, description="Pipelines whose runs go here by default.")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value

    @property
    def rate_limit(self) -> RateLimit | None:
        return RateLimit.parse(self.rate) if self.rate is not None else None


class QueuesSection(RootModel[dict[str, QueueSettings]]):
    """``queues:``: ``{name: {concurrency: N, pipelines: [...]}}``."""

    root: dict[str, QueueSettings] = Field(default_factory=dict)


def default_queue(queues: QueuesSection, pipeline: str) -> str | None:
    """The queue whose ``pipelines:`` names ``pipeline`` (its runs are enqueued there), if any."""
    for name, settings in queues.root.items():
        if pipeline in settings.pipelines:
            return name
    return None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's depth (runs waiting), runs in flight, and the enqueue time
    (epoch seconds) of its oldest waiting run (None when nothing waits)."""

    queue: str
    queued: int
    running: int
    oldest_queued_at: float | None


async def claim_run(
    store: RunStore,
    queue: str,
    owner: str,
    *,
    lease_ttl: float = 30.0,
    concurrency: int | None = None,
    rate: RateLimit | None = None,
) -> RunRecord | None:
    """Claim the next run of ``queue`` for ``owner`` (status ``running`` under its
    lease), or None when nothing waits, ``concurrency`` runs of the queue are in
    flight already or ``rate`` claims were made in its window. See the module
    docstring for the order and the limits."""
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    postgres = store.dialect == "postgresql"
    now = store.clock()
    started = EventRecord("", "RunClaimed", now, data={"owner": owner, "queue": queue})

    def claim(conn: Connection) -> RunRecord | None:
        if postgres and (concurrency is not None or rate is not None):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"legato_queue:{queue}"))))
        pick = _pick(queue, concurrency, postgres, _window(queue, rate, now))
        row = (
            conn.execute(
                runs.update()
                .where(runs.c.id == pick, runs.c.status == _QUEUED)
                .values(
                    status=_RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + lease_ttl,
                    started_at=sa.func.coalesce(runs.c.started_at, now),
                    claimed_at=now,
                    updated_at=now,
                )
                .returning(*runs.c)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        record = run_record(row)
        conn.execute(events.insert(), [event_row(_for(started, record.id), store.redactor, store.sealer)])
        return record

    return await store.run_sync(claim)


def _window(queue: str, rate: RateLimit | None, now: float) -> Any:
    """The condition "fewer than ``rate.runs`` claims of ``queue`` in the window" (or None)."""
    if rate is None:
        return None
    recent = runs.alias("recent")
    claims = (
        sa.select(sa.func.count())
        .select_from(recent)
        .where(recent.c.queue == queue, recent.c.claimed_at > now - rate.per_s)
        .scalar_subquery()
    )
    return claims < rate.runs


def _pick(queue: str, concurrency: int | None, postgres: bool, window: Any = None) -> Any:
    waiting = runs.alias("waiting")
    flying = runs.alias("flying")
    tenant_in_flight = (
        sa.select(sa.func.count())
        .select_from(flying)
        .where(flying.c.queue == queue, flying.c.status == _RUNNING, flying.c.tenant == waiting.c.tenant)
        .scalar_subquery()
    )
    query = (
        sa.select(waiting.c.id)
        .where(waiting.c.queue == queue, waiting.c.status == _QUEUED)
        .order_by(tenant_in_flight, waiting.c.priority.desc(), waiting.c.created_at, waiting.c.id)
        .limit(1)
    )
    if concurrency is not None:
        everyone = runs.alias("everyone")
        in_flight = (
            sa.select(sa.func.count())
            .select_from(everyone)
            .where(everyone.c.queue == queue, everyone.c.status == _RUNNING)
            .scalar_subquery()
        )
        query = query.where(in_flight < concurrency)
    if window is not None:
        query = query.where(window)
    if postgres:
        query = query.with_for_update(skip_locked=True, of=waiting)
    return query.scalar_subquery()


def _for(event: EventRecord, run_id: str) -> EventRecord:
    return EventRecord(run_id, event.type, event.at, data=event.data)


async def requeue(store: RunStore, run_id: str, owner: str) -> bool:
    """Put a run this worker stopped without finishing back on its queue (a draining
    worker's runs past the grace period). Only while nobody else took it over: its
    lease is ``owner``'s or released. Returns whether it was requeued; its finished
    steps stay, so the next worker resumes from its last checkpoint."""
    now = store.clock()
    query = (
        runs.update()
        .where(
            runs.c.id == run_id,
            runs.c.status == _RUNNING,
            runs.c.queue.is_not(None),
            sa.or_(runs.c.lease_owner.is_(None), runs.c.lease_owner == owner),
        )
        .values(status=_QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now)
    )
    event = event_row(EventRecord(run_id, "RunRequeued", now, data={"owner": owner}), store.redactor, store.sealer)

    def write(conn: Connection) -> bool:
        if conn.execute(query).rowcount != 1:
            return False
        conn.execute(events.insert(), [event])
        return True

    return await store.run_sync(write)


async def queue_stats(store: RunStore) -> list[QueueStats]:
    """Depth, runs in flight and oldest waiting run of every queue with runs queued or running."""
    query = (
        sa.select(runs.c.queue, runs.c.status, sa.func.count(), sa.func.min(runs.c.created_at))
        .where(runs.c.queue.is_not(None), runs.c.status.in_((_QUEUED, _RUNNING)))
        .group_by(runs.c.queue, runs.c.status)
    )

    def read(conn: Connection) -> list[QueueStats]:
        found: dict[str, dict[str, Any]] = {}
        for queue, status, count, oldest in conn.execute(query).all():
            entry = found.setdefault(str(queue), {"queued": 0, "running": 0, "oldest": None})
            entry[str(status)] = int(count)
            if status == _QUEUED:
                entry["oldest"] = oldest
        return [QueueStats(q, e["queued"], e["running"], e["oldest"]) for q, e in sorted(found.items())]

    return await store.run_sync(read, readonly=True)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One live worker: the runs it may execute at once (``slots``) and those it
    executes now (``busy``: runs ``running`` under its lease)."""

    owner: str
    queues: list[str]
    slots: int
    busy: int

    @property
    def utilisation(self) -> float:
        return self.busy / self.slots if self.slots else 0.0


async def renew_worker(store: RunStore, owner: str, queues: Iterable[str], slots: int) -> None:
    """Record that worker ``owner`` is alive now and offers ``slots`` runs at once."""
    now = store.clock()
    names = json.dumps(sorted(queues))

    def write(conn: Connection) -> None:
        seen = workers.update().where(workers.c.owner == owner).values(queues=names, slots=slots, seen_at=now)
        if conn.execute(seen).rowcount == 0:
            conn.execute(workers.insert().values(owner=owner, queues=names, slots=slots, started_at=now, seen_at=now))

    await store.run_sync(write)


async def forget_worker(store: RunStore, owner: str) -> None:
    """Remove a stopped worker from the live ones."""
    await store.run_sync(lambda conn: conn.execute(workers.delete().where(workers.c.owner == owner)))


async def worker_stats(store: RunStore, *, seen_within_s: float = 30.0) -> list[WorkerStats]:
    """Workers seen in the last ``seen_within_s`` seconds with their busy slots, by owner."""
    busy = (
        sa.select(sa.func.count())
        .select_from(runs)
        .where(runs.c.lease_owner == workers.c.owner, runs.c.status == _RUNNING)
        .scalar_subquery()
    )
    query = (
        sa.select(workers.c.owner, workers.c.queues, workers.c.slots, busy)
        .where(workers.c.seen_at > store.clock() - seen_within_s)
        .order_by(workers.c.owner)
    )

    def read(conn: Connection) -> list[WorkerStats]:
        return [WorkerStats(o, json.loads(q), int(s), int(b)) for o, q, s, b in conn.execute(query).all()]

    return await store.run_sync(read, readonly=True)


class QueueWaiter:
    """Waits until a run may have been enqueued on one of ``queues``: at once on a
    PostgreSQL notification, else after ``poll_s``. Call :meth:`clear` before each
    claim attempt and :meth:`wait` after an empty one, so that a run enqueued in
    between is not missed."""

    def __init__(self, url: str, queues: set[str], *, poll_s: float = 0.2, fallback_s: float = 2.0) -> None:
        dsn = asyncpg_dsn(url)
        self.queues = queues
        self.poll_s = poll_s
        self.fallback_s = fallback_s
        self._event = anyio.Event()
        # A run may have been enqueued while nobody listened: a new connection wakes the worker.
        self._listener = (
            None
            if dsn is None
            else Listener(dsn, QUEUE_CHANNEL, self._notified, self.wake, self.wake, what="enqueued runs")
        )

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    def wake(self, *_args: Any) -> None:
        """Wake the waiting worker (a run of its own finished: a slot is free)."""
        self._event.set()

    async def wait(self, at_most_s: float | None = None) -> None:
        """Until a notification, the poll or the fallback interval, or ``at_most_s``
        (a rate-limited queue's window frees a claim without any notification)."""
        listening = self._listener is not None and await self._listener.listening()
        limit = self.fallback_s if listening else self.poll_s
        with anyio.move_on_after(limit if at_most_s is None else min(limit, at_most_s)):
            await self._event.wait()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload in self.queues:
            self._event.set()

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()

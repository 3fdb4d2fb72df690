"""Writing runs: creation (with idempotency), checkpoints and the end of a run, both
fenced by the lease, the dead-letter queue and pruning.

Idempotency rides on a unique constraint ``(tenant, idempotency_key)``: of any
number of concurrent submissions with one key exactly one insert wins, on SQLite
and PostgreSQL alike; the others read the winner's run and compare request
hashes (same request -> that run; different -> :class:`IdempotencyConflict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from legato.errors import IdempotencyConflict, StoreError
from legato.store._cancel import QUEUE_CHANNEL
from legato.store._codec import encode, request_hash
from legato.store._ids import new_run_id
from legato.store._leases import fence
from legato.store._records import (
    TERMINAL,
    CancelRequest,
    EventRecord,
    MapItemRecord,
    RunRecord,
    StepRecord,
    StoredStatus,
)
from legato.store._retention import PayloadState, delete_runs, strip_payloads, subject_key
from legato.store._rows import event_row, map_item_row, sealed, step_row
from legato.store._run_reads import RunReads, get_run_row
from legato.store._schema import events, map_items, model_calls, runs, step_attempts
from legato.store._search import encode_tags

__all__ = ["NewRun", "RunWrites", "insert_history", "insert_run"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NewRun:
    """A run to create (:meth:`RunWrites.create_run`).

    With ``owner`` the run starts ``running`` under that owner's lease (``lease_ttl``
    seconds); with ``queue`` (and no owner) it is ``queued`` there for a worker to
    claim, ``priority`` first (see :mod:`legato.store._queue`); otherwise it is
    ``pending``. ``idempotency_key`` (per ``tenant``) makes creating it again return
    the same run. ``tags`` label the run for finding it later. ``subject`` names the
    run's data subject (stored as a digest, for erasure; default: the input the
    ``retention:`` rule of the pipeline names); ``payloads=METADATA`` keeps no payloads
    once the run ends (default: the pipeline's rule; see :mod:`legato.store._retention`).
    ``rerun_of``/``rerun_from`` record the run and step a re-run starts from."""

    pipeline: str
    version_hash: str
    inputs: dict[str, Any]
    idempotency_key: str | None = None
    tenant: str = ""
    owner: str | None = None
    lease_ttl: float = 30.0
    run_id: str | None = None
    estimated_cost: float | None = None
    source: str | None = None
    queue: str | None = None
    priority: int = 0
    rerun_of: str | None = None
    rerun_from: str | None = None
    tags: Iterable[str] = ()
    subject: str | None = None
    payloads: PayloadState | None = None


class RunWrites(RunReads):
    """The write side of :class:`~legato.store.RunStore`."""

    async def create_run(self, run: NewRun) -> tuple[RunRecord, bool]:
        """Create ``run``, or return the one already created with its ``idempotency_key``.

        Returns ``(record, created)``. Raises :class:`IdempotencyConflict` when the key
        was used for a different pipeline or different inputs, :class:`ValueError` for
        a malformed tag."""
        digest = request_hash(run.pipeline, run.inputs)
        key = run.idempotency_key
        if key is not None:
            existing = await self.find_by_idempotency_key(key, tenant=run.tenant)
            if existing is not None:
                return self._same_request(existing, digest, key), False
        row = self.new_run_row(run)

        def insert(conn: Connection) -> RunRecord:
            return insert_run(conn, row, self.dialect)

        try:
            return await self.run_sync(insert), True
        except IntegrityError as exc:
            if key is None:
                raise StoreError(f"run id {row['id']!r} already exists") from exc
            existing = await self.find_by_idempotency_key(key, tenant=run.tenant)
            if existing is None:  # pragma: no cover - the winner's row is committed before we fail
                raise StoreError(f"idempotency key {key!r} collided but no run holds it") from exc
            return self._same_request(existing, digest, key), False

    def new_run_row(self, run: NewRun) -> dict[str, Any]:
        """The ``runs`` row of ``run`` (see :meth:`create_run`), for :func:`insert_run`
        in a transaction that writes more than the run (a schedule's tick)."""
        stored_tags = encode_tags(run.tags)
        now = self.clock()
        policy = self.retention  # the subject input and the payload mode of the pipeline
        subject = run.subject if run.subject is not None else policy.subject_of(run.pipeline, run.inputs)
        payloads = run.payloads
        if payloads is None and not policy.keeps_payloads(run.pipeline):
            payloads = PayloadState.METADATA
        owner = run.owner
        return {
            "id": run.run_id or new_run_id(),
            "pipeline": run.pipeline,
            "version_hash": run.version_hash,
            "inputs": sealed(self._sealer, encode(run.inputs)),
            "request_hash": request_hash(run.pipeline, run.inputs),
            "status": _initial_status(owner, run.queue),
            "tenant": run.tenant,
            "idempotency_key": run.idempotency_key,
            "lease_owner": owner,
            "lease_expires_at": now + run.lease_ttl if owner else None,
            "recoveries": 0,
            "cancel_requested": False,
            "estimated_cost": run.estimated_cost,
            "created_at": now,
            "updated_at": now,
            "started_at": now if owner else None,
            "source": run.source,
            "queue": run.queue,
            "priority": run.priority,
            "rerun_of": run.rerun_of,
            "rerun_from": run.rerun_from,
            "tags": stored_tags,
            "subject": None if subject is None else subject_key(subject),
            "payloads": None if payloads is None else payloads.value,
        }

    @staticmethod
    def _same_request(existing: RunRecord, digest: str, key: str) -> RunRecord:
        if existing.request_hash != digest:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used by run {existing.id} "
                f"(pipeline {existing.pipeline!r}) with different inputs; use a new key for a new request"
            )
        return existing

    async def checkpoint(
        self,
        run_id: str,
        owner: str,
        *,
        attempts: Sequence[StepRecord] = (),
        new_events: Sequence[EventRecord] = (),
        items: Sequence[MapItemRecord] = (),
        maps_done: Iterable[str] = (),
        lease_ttl: float = 30.0,
    ) -> CancelRequest | None:
        """Commit finished step attempts, map items and events in one transaction,
        extending the lease; the item rows of ``maps_done`` (map steps whose whole
        output is in ``attempts``) are dropped. Raises :class:`LeaseLost` (writing
        nothing) if ``owner`` lost the run. Returns the run's cancel request when one
        was recorded (read in the same transaction: the caller starts no new step
        after seeing it)."""
        now = self.clock()
        step_rows = [step_row(a, self.redactor, self._sealer) for a in attempts]
        event_rows = [event_row(e, self.redactor, self._sealer) for e in new_events]
        item_rows = [map_item_row(m, self._sealer) for m in items]
        done = list(maps_done)

        def write(conn: Connection) -> CancelRequest | None:
            request = fence(conn, run_id, owner, {"lease_expires_at": now + lease_ttl, "updated_at": now})
            insert_history(conn, step_rows, event_rows)
            if item_rows:
                conn.execute(map_items.insert(), item_rows)
            if done:
                conn.execute(map_items.delete().where(map_items.c.run_id == run_id, map_items.c.step.in_(done)))
            return request

        return await self.run_sync(write)

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        *,
        status: str,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        failed_step: str | None = None,
        cost: float | None = None,
        attempts: Sequence[StepRecord] = (),
        new_events: Sequence[EventRecord] = (),
        cancelled_by: str | None = None,
    ) -> None:
        """Record the run's end and release its lease (fenced like :meth:`checkpoint`);
        ``waiting``: the run pauses on its wait steps, holding no lease.
        ``cancelled_by`` names who stopped a cancelled run when no cancel request was
        recorded before (Ctrl-C on ``legato run``, say)."""
        if status not in TERMINAL and status != StoredStatus.WAITING:
            raise ValueError(
                f"finish_run: {status!r} is not a terminal status ({', '.join(sorted(TERMINAL))}) or waiting"
            )
        now = self.clock()
        values: dict[str, Any] = {
            "status": status,
            "outputs": None if outputs is None else sealed(self._sealer, encode(outputs)),
            "error": None if error is None else self.redactor.text(error),
            "failed_step": failed_step,
            "cost": cost,
            "finished_at": None if status == StoredStatus.WAITING else now,
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if status == StoredStatus.CANCELLED:
            values["cancel_requested"] = True
            values["cancelled_by"] = sa.func.coalesce(runs.c.cancelled_by, cancelled_by)
            values["cancel_requested_at"] = sa.func.coalesce(runs.c.cancel_requested_at, now)
        step_rows = [step_row(a, self.redactor, self._sealer) for a in attempts]
        event_rows = [event_row(e, self.redactor, self._sealer) for e in new_events]

        def write(conn: Connection) -> None:
            fence(conn, run_id, owner, values)
            insert_history(conn, step_rows, event_rows)
            if status in TERMINAL and _keeps_no_payloads(conn, run_id):
                strip_payloads(conn, [run_id], PayloadState.METADATA)

        await self.run_sync(write)

    # -- leases ----------------------------------------------------------------------------

    async def dead_letter(self, run_id: str, reason: str) -> RunRecord:
        """Move a run to the dead-letter queue (status ``dead``)."""
        now = self.clock()
        reason = self.redactor.text(reason)
        event = event_row(
            EventRecord(run_id=run_id, type="RunDeadLettered", at=now, data={"reason": reason}),
            self.redactor,
            self._sealer,
        )

        def bury(conn: Connection) -> RunRecord:
            result = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status != StoredStatus.SUCCEEDED.value)
                .values(
                    status=StoredStatus.DEAD.value,
                    dead_reason=reason,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            if result.rowcount != 1:
                raise StoreError(f"run {run_id} cannot be dead-lettered (unknown or already succeeded)")
            insert_history(conn, [], [event])
            return get_run_row(conn, run_id)

        return await self.run_sync(bury)

    async def prune(self, *, older_than_s: float) -> int:
        """Delete finished runs (with their steps, events and model calls) that ended more
        than ``older_than_s`` seconds ago, and gateway model calls older than that. Journal
        entries are kept. Returns how many runs."""
        cutoff = self.clock() - older_than_s
        old = sa.select(runs.c.id).where(
            runs.c.status.in_(tuple(TERMINAL)), sa.func.coalesce(runs.c.finished_at, runs.c.updated_at) < cutoff
        )

        def delete(conn: Connection) -> int:
            ids = [r[0] for r in conn.execute(old).all()]
            delete_runs(conn, ids)
            conn.execute(model_calls.delete().where(model_calls.c.run_id.is_(None), model_calls.c.at < cutoff))
            return len(ids)

        return await self.run_sync(delete)


def insert_run(conn: Connection, row: dict[str, Any], dialect: str) -> RunRecord:
    """Insert a run row of :meth:`RunWrites.new_run_row`; an enqueued run wakes the
    LISTENing workers when the transaction commits (PostgreSQL)."""
    conn.execute(runs.insert().values(row))
    if row["status"] == StoredStatus.QUEUED.value and dialect == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(QUEUE_CHANNEL, row["queue"])))
    return get_run_row(conn, str(row["id"]))


def _keeps_no_payloads(conn: Connection, run_id: str) -> bool:
    mode = conn.execute(sa.select(runs.c.payloads).where(runs.c.id == run_id)).scalar()
    return bool(mode == PayloadState.METADATA.value)


def _initial_status(owner: str | None, queue: str | None) -> str:
    if owner:
        return StoredStatus.RUNNING.value
    return StoredStatus.QUEUED.value if queue is not None else StoredStatus.PENDING.value


def insert_history(conn: Connection, step_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]) -> None:
    if step_rows:
        conn.execute(step_attempts.insert(), step_rows)
    if event_rows:
        conn.execute(events.insert(), event_rows)

"""Runs paused on wait steps: the requests they wait on, answering them, timeouts.

A run whose wait step asked for an answer is stored with status ``waiting`` and
no lease: no process holds it. The step's row (status ``waiting``) keeps the
request: kind, question, answer schema, timeout and default, and ``expires_at``
when a timeout was set. :func:`respond` checks an answer against the schema and,
in one transaction, stores it as the step's output and makes the run ``pending``
again; whoever answered then resumes it (the CLI, the replica that took the API
call), and if that process dies first, :func:`~legato.store.recover_expired_runs`
picks the pending run up like any released one. :func:`expire_waits` answers the
waits whose timeout passed with their declared default, the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.engine import InputRequest, WaitKind, answer_problem
from legato.errors import InvalidAnswer, StepNotWaiting
from legato.store._records import EventRecord, RunRecord, StepRecord, StoredStatus
from legato.store._rows import event_row, run_record, step_record, step_row
from legato.store._run_reads import get_run_row
from legato.store._runs import RunStore
from legato.store._schema import events, runs, step_attempts

__all__ = ["expire_waits", "respond", "waiting_requests"]


async def waiting_requests(store: RunStore, run_id: str) -> dict[str, dict[str, Any]]:
    """Step -> request, for each step of the run waiting for an answer now."""
    return await store.run_sync(lambda conn: _waiting(conn, run_id), readonly=True)


def _waiting(conn: Connection, run_id: str) -> dict[str, dict[str, Any]]:
    query = sa.select(step_attempts).where(step_attempts.c.run_id == run_id).order_by(step_attempts.c.id)
    latest: dict[str, StepRecord] = {}
    for row in conn.execute(query).mappings():
        latest[row["step"]] = step_record(row)
    return {name: dict(s.meta.get("request") or {}) for name, s in latest.items() if s.status == "waiting"}


def _schema(request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = WaitKind(request.get("kind", WaitKind.ANSWER))
    schema = request.get("schema")
    return InputRequest(kind, str(request.get("question", "")), schema).answer_schema()


async def respond(store: RunStore, run_id: str, step: str, answer: Any, *, by: str = "") -> RunRecord:
    """Answer the wait step ``step`` of run ``run_id`` (an id, not a prefix) and make
    the run resumable (``pending``). Raises :class:`StepNotWaiting` when the run or
    the step is not waiting (answered already, say) and :class:`InvalidAnswer` naming
    what is wrong when the answer does not satisfy the step's schema; nothing is
    written then."""
    now = store.clock()

    def write(conn: Connection) -> RunRecord:
        record = get_run_row(conn, run_id)
        waiting = _waiting(conn, record.id)
        if record.status is not StoredStatus.WAITING or step not in waiting:
            asked = ", ".join(sorted(waiting)) or "none"
            raise StepNotWaiting(
                f"step {step!r} of run {record.id} is not waiting for an answer "
                f"(the run is {record.status}; steps waiting: {asked})",
                status=str(record.status),
            )
        request = waiting[step]
        problem = answer_problem(_schema(request), answer)
        if problem is not None:
            raise InvalidAnswer(f"the answer to step {step!r} is not valid: {problem}")
        attempt = conn.execute(
            sa.select(sa.func.max(step_attempts.c.attempt)).where(
                step_attempts.c.run_id == record.id, step_attempts.c.step == step
            )
        ).scalar_one()
        answered = StepRecord(
            record.id,
            step,
            "succeeded",
            attempt=int(attempt or 1),
            output=answer,
            finished_at=now,
            meta={"answered_by": by, "request": request},
        )
        updated = conn.execute(
            runs.update()
            .where(runs.c.id == record.id, runs.c.status == StoredStatus.WAITING.value)
            .values(status=StoredStatus.PENDING.value, updated_at=now)
        )
        if updated.rowcount != 1:
            raise StepNotWaiting(f"run {record.id} was answered at the same moment", status=str(record.status))
        conn.execute(step_attempts.insert(), [step_row(answered, store.redactor, store.sealer)])
        event = EventRecord(record.id, "StepAnswered", now, step=step, data={"by": by})
        conn.execute(events.insert(), [event_row(event, store.redactor, store.sealer)])
        return run_record(conn.execute(sa.select(runs).where(runs.c.id == record.id)).mappings().one())

    return await store.run_sync(write)


async def expire_waits(store: RunStore, *, limit: int = 100) -> list[str]:
    """Answer every wait whose timeout passed with its declared default; returns the
    ids of the runs made resumable (:func:`recover_expired_runs` resumes them)."""
    now = store.clock()
    query = sa.select(runs.c.id).where(runs.c.status == StoredStatus.WAITING.value).order_by(runs.c.updated_at)
    waiting_runs = await store.run_sync(lambda conn: [r[0] for r in conn.execute(query.limit(limit))], readonly=True)
    answered: list[str] = []
    for run_id in waiting_runs:
        for step, request in (await waiting_requests(store, run_id)).items():
            expires_at = request.get("expires_at")
            if expires_at is None or expires_at > now or "default" not in request:
                continue
            try:
                await respond(store, run_id, step, request["default"], by="timeout")
            except StepNotWaiting:
                continue  # answered meanwhile
            answered.append(run_id)
            break  # the run is pending now; its other waits ask again when it resumes
    return answered

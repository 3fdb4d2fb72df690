"""The lease rules of :class:`~legato.store.RunStore`, one transaction at a time.

Who may take a run (:func:`check_takeover`), whether the takeover is charged to the
run as a recovery (:func:`sole_holder`), and the fence every write of a running
run passes (:func:`fence`). Functions here run inside the store's transactions;
they take a SQLAlchemy ``Connection`` and never commit.

**Charging recoveries.** A run's ``recoveries`` counts the times its worker died
while executing it, and ``recover_expired_runs`` dead-letters a run past
``max_recoveries``. When a worker dies holding several runs, nobody can tell which
of them killed it, so none is charged: those runs are resumed one at a time, so that
the next death, if any, names its run. Only a takeover from a process that held no
other live run is charged. A released lease (the worker stopped the run cleanly) is
never charged.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.errors import LeaseLost, RunNotFound, RunNotResumable
from legato.store._ids import OwnerId, OwnerState, owner_state
from legato.store._records import ACTIVE, NEEDS_FORCE, CancelRequest, RunRecord, StoredStatus
from legato.store._schema import runs

__all__ = ["cancel_columns", "check_takeover", "fence", "holder_key", "interrupted", "sole_holder"]


def interrupted(record: RunRecord, now: float) -> bool:
    """Whether ``record`` was left running by a worker that stopped: its lease expired,
    was released, or names a process on this host that is gone. Such a run resumes
    from its last checkpoint without ``force``."""
    if record.status is not StoredStatus.RUNNING:
        return False
    return not record.lease_live(now) or owner_state(record.lease_owner) is OwnerState.GONE


def check_takeover(record: RunRecord, owner: str, now: float, *, force: bool) -> None:
    """Raise unless ``owner`` may take ``record``'s lease now (see ``RunStore.acquire``)."""
    if record.status is StoredStatus.SUCCEEDED:
        raise RunNotResumable(f"run {record.id} already succeeded; there is nothing to resume", status=record.status)
    if record.status in NEEDS_FORCE and not force:
        why = record.dead_reason if record.status is StoredStatus.DEAD else _cancelled(record)
        raise RunNotResumable(
            f"run {record.id} is {'dead-lettered' if record.status is StoredStatus.DEAD else 'cancelled'} ({why}); "
            "it resumes only when forced",
            status=record.status,
        )
    if force or record.status not in ACTIVE or record.lease_owner == owner or not record.lease_live(now):
        return
    state = owner_state(record.lease_owner)
    if state is OwnerState.GONE:
        return
    until = time.strftime("%H:%M:%S", time.localtime(record.lease_expires_at))
    known = "" if state is OwnerState.ALIVE else " (its process cannot be checked from here: another host or container)"
    raise LeaseLost(
        f"run {record.id} is being executed by {record.lease_owner}{known}; its lease runs until {until}",
        owner=record.lease_owner,
        expires_at=record.lease_expires_at,
    )


def _cancelled(record: RunRecord) -> str:
    request = record.cancel_request
    return request.describe() if request is not None else record.error or "cancelled"


def holder_key(owner: str) -> str:
    """The process behind a lease owner id (runners of one process share it)."""
    parsed = OwnerId.parse(owner)
    return owner if parsed is None else str(parsed).replace(f":{parsed.nonce}:", ":", 1)


def sole_holder(conn: Connection, record: RunRecord) -> bool:
    """Whether ``record``'s lease holder held no other active run: then its death is
    charged to this run (see the module docstring)."""
    if record.status is not StoredStatus.RUNNING or not record.lease_owner:
        return False
    prefix = holder_key(record.lease_owner)
    parsed = OwnerId.parse(record.lease_owner)
    same = runs.c.lease_owner == record.lease_owner
    if parsed is not None:
        head, _, tail = prefix.partition(f":{parsed.pid}:")
        same = sa.and_(
            runs.c.lease_owner.startswith(f"{head}:{parsed.pid}:", autoescape=True),
            runs.c.lease_owner.endswith(f":{tail}", autoescape=True),
        )
    others = conn.execute(
        sa.select(sa.func.count())
        .select_from(runs)
        .where(runs.c.id != record.id, runs.c.status.in_(tuple(ACTIVE)), same)
    ).scalar_one()
    return int(others) == 0


def fence(conn: Connection, run_id: str, owner: str, values: dict[str, Any]) -> CancelRequest | None:
    """Update the run if ``owner`` still holds it, else raise :class:`LeaseLost`.
    Returns the cancel request recorded for the run, if any (read in the same transaction)."""
    row = conn.execute(
        runs.update()
        .where(runs.c.id == run_id, runs.c.lease_owner == owner)
        .values(values)
        .returning(*cancel_columns())
    ).first()
    if row is not None:
        return cancel_request(row)
    held = conn.execute(sa.select(runs.c.lease_owner, runs.c.lease_expires_at).where(runs.c.id == run_id)).first()
    if held is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    raise LeaseLost(
        f"run {run_id} is no longer leased to {owner} (now held by {held[0] or 'nobody'}); another worker took it over",
        owner=held[0],
        expires_at=held[1],
    )


def cancel_columns() -> tuple[sa.Column[Any], ...]:
    return (runs.c.cancel_requested, runs.c.cancelled_by, runs.c.cancel_requested_at, runs.c.updated_at)


def cancel_request(row: Any) -> CancelRequest | None:
    """The request in a row of :func:`cancel_columns`, or None."""
    if not row[0]:
        return None
    return CancelRequest(row[1] or "", row[2] if row[2] is not None else row[3])

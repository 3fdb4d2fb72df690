"""Leases and cancels of :class:`~legato.store.RunStore`: taking a run to execute
it, the heartbeat, releasing, finding orphaned runs, and recording and waiting for
cancel requests. The rules themselves are in :mod:`legato.store._leases`."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.errors import LeaseLost, StoreError
from legato.store._cancel import CHANNEL, CancelListener
from legato.store._ids import owner_gone
from legato.store._leases import cancel_columns, cancel_request, check_takeover, fence, sole_holder
from legato.store._records import (
    ACTIVE,
    CANCELLABLE,
    CancelRequest,
    EventRecord,
    RunRecord,
    StoredStatus,
)
from legato.store._rows import event_row, run_record
from legato.store._run_reads import get_run_row
from legato.store._run_writes import RunWrites, insert_history
from legato.store._schema import runs

__all__ = ["RunLeases"]


class RunLeases(RunWrites):
    """The lease and cancel side of :class:`~legato.store.RunStore`."""

    async def acquire(
        self,
        run_id: str,
        owner: str,
        *,
        lease_ttl: float = 30.0,
        force: bool = False,
        charge: bool | None = None,
    ) -> RunRecord:
        """Take the run's lease to execute (resume) it.

        Allowed when nobody holds a live lease: the lease expired, was released, or
        names a process that provably no longer exists (same host, boot and PID
        namespace; see :mod:`legato.store._ids`). ``force`` also takes a live lease
        (the operator knows its holder is gone) and revives a cancelled or
        dead-lettered run. A run that already succeeded cannot be resumed
        (:class:`RunNotResumable`). ``charge`` counts the takeover as a recovery of
        this run (None: when the previous holder executed no other run; see
        :mod:`legato.store._leases`).
        """
        record = await self.get_run(run_id)
        now = self.clock()
        check_takeover(record, owner, now, force=force)
        values: dict[str, Any] = {
            "lease_owner": owner,
            "lease_expires_at": now + lease_ttl,
            "status": StoredStatus.RUNNING.value,
            "cancel_requested": False,
            "cancelled_by": None,
            "cancel_requested_at": None,
            "dead_reason": None,
            "finished_at": None,
            "error": None,
            "failed_step": None,
            "updated_at": now,
            "started_at": record.started_at or now,
        }
        data = {"owner": owner, "previous_owner": record.lease_owner, "previous_status": str(record.status)}

        def take(conn: Connection) -> RunRecord:
            charged = sole_holder(conn, record) if charge is None else charge
            if charged:
                values["recoveries"] = runs.c.recoveries + 1
            result = conn.execute(
                runs.update()
                .where(
                    runs.c.id == record.id,
                    runs.c.status == record.status,
                    runs.c.lease_owner.is_not_distinct_from(record.lease_owner),
                    runs.c.lease_expires_at.is_not_distinct_from(record.lease_expires_at),
                )
                .values(values)
            )
            if result.rowcount != 1:
                raise LeaseLost(f"run {record.id} was taken over by another worker at the same moment")
            taken = EventRecord(record.id, "LeaseAcquired", now, data={**data, "charged": charged})
            insert_history(conn, [], [event_row(taken, self.redactor, self._sealer)])
            return get_run_row(conn, record.id)

        return await self.run_sync(take)

    async def heartbeat(self, run_id: str, owner: str, *, lease_ttl: float = 30.0) -> CancelRequest | None:
        """Extend the lease. Returns the run's cancel request, if one was recorded;
        raises :class:`LeaseLost` if ``owner`` no longer holds the run."""
        now = self.clock()
        values = {"lease_expires_at": now + lease_ttl, "updated_at": now}
        return await self.run_sync(lambda conn: fence(conn, run_id, owner, values))

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        """The cancel request recorded for the run, if any (one primary-key read)."""
        query = sa.select(*cancel_columns()).where(runs.c.id == run_id)

        def read(conn: Connection) -> CancelRequest | None:
            row = conn.execute(query).first()
            return None if row is None else cancel_request(row)

        return await self.run_sync(read, readonly=True)

    async def cancel_requests(self, run_ids: list[str]) -> dict[str, CancelRequest]:
        """The cancel requests recorded for any of ``run_ids`` (one query per 500 ids)."""

        def read(conn: Connection) -> dict[str, CancelRequest]:
            found: dict[str, CancelRequest] = {}
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                query = sa.select(runs.c.id, *cancel_columns()).where(runs.c.id.in_(chunk), runs.c.cancel_requested)
                for row in conn.execute(query).all():
                    request = cancel_request(row[1:])
                    if request is not None:
                        found[str(row[0])] = request
            return found

        return await self.run_sync(read, readonly=True) if run_ids else {}

    async def wait_cancel(
        self, run_id: str, *, sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    ) -> CancelRequest:
        """Return once a cancel of ``run_id`` is recorded: at once by PostgreSQL
        ``NOTIFY``, within :attr:`cancel_poll_s` by polling on SQLite (see
        :mod:`legato.store._cancel`). ``sleep`` paces the polls (an injected clock's)."""
        if self._cancels is None:
            self._cancels = CancelListener(
                self.url, self.cancel_request, self.cancel_requests, poll_s=self.cancel_poll_s
            )
        return await self._cancels.wait(run_id, sleep)

    async def release(self, run_id: str, owner: str) -> None:
        """Give up the lease without finishing the run (it stays resumable at once)."""
        query = (
            runs.update()
            .where(runs.c.id == run_id, runs.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, updated_at=self.clock())
        )
        await self.run_sync(lambda conn: conn.execute(query))

    async def orphaned_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Running runs whose lease expired, was released, or whose holder (on this
        host) is gone: what :func:`recover_expired_runs` takes over."""
        now = self.clock()
        maybe_orphaned = sa.or_(
            runs.c.lease_owner.is_(None),
            runs.c.lease_expires_at < now,
            runs.c.lease_owner.startswith(f"{socket.gethostname()}:", autoescape=True),  # checked below
        )
        query = (
            sa.select(runs)
            .where(runs.c.status.in_(tuple(ACTIVE)), maybe_orphaned)
            .order_by(runs.c.created_at)
            .limit(limit)
        )
        found = await self.run_sync(
            lambda conn: [run_record(r) for r in conn.execute(query).mappings().all()], readonly=True
        )
        return [r for r in found if not r.lease_live(now) or owner_gone(r.lease_owner)]

    async def sole_holders(self, records: Iterable[RunRecord]) -> set[str]:
        """Of ``records``, the ids of those whose lease holder executed no other run
        (their takeover is charged as a recovery; see :mod:`legato.store._leases`)."""
        wanted = list(records)
        return await self.run_sync(lambda conn: {r.id for r in wanted if sole_holder(conn, r)}, readonly=True)

    async def request_cancel(self, run_id: str, *, by: str = "") -> RunRecord:
        """Record a request to cancel the run (``by`` says who asked). Its worker stops
        it within a fraction of a second (see :meth:`wait_cancel`); a run nobody is
        executing is cancelled at once. Raises :class:`StoreError` for a finished run."""
        record = await self.get_run(run_id)
        if record.terminal:
            raise StoreError(f"run {record.id} is already {record.status}")
        now = self.clock()
        request = CancelRequest(by, now)
        nobody = not record.lease_live(now) or owner_gone(record.lease_owner)
        values: dict[str, Any] = {
            "cancel_requested": True,
            "cancelled_by": by or None,
            "cancel_requested_at": now,
            "updated_at": now,
        }
        if nobody:
            values.update(
                status=StoredStatus.CANCELLED.value,
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
                error=request.describe(),
            )
        event = event_row(EventRecord(record.id, "CancelRequested", now, data={"by": by}), self.redactor, self._sealer)
        postgres = self.dialect == "postgresql"

        def cancel(conn: Connection) -> RunRecord:
            conn.execute(
                runs.update().where(runs.c.id == record.id, runs.c.status.in_(tuple(CANCELLABLE))).values(values)
            )
            insert_history(conn, [], [event])
            if postgres:  # delivered to the LISTENing worker when this transaction commits
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, record.id)))
            return get_run_row(conn, record.id)

        return await self.run_sync(cancel)

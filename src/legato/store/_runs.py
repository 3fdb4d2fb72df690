"""``RunStore``: runs, step checkpoints, events, idempotency and leases.

Every write that belongs to a running run is *fenced* by its lease: the same
transaction that inserts a checkpoint checks that this worker still owns the
run, so a worker that stalled past its lease and was taken over can never write
over its successor (it gets :class:`~legato.errors.LeaseLost` instead).

Idempotency rides on a unique constraint ``(tenant, idempotency_key)``: of any
number of concurrent submissions with one key exactly one insert wins, on SQLite
and PostgreSQL alike; the others read the winner's run and compare request
hashes (same request -> that run; different -> :class:`IdempotencyConflict`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from legato.errors import IdempotencyConflict, LeaseLost, RunNotFound, StoreError
from legato.redaction import Redactor, default_redactor
from legato.store._cancel import CHANNEL, QUEUE_CHANNEL, CancelListener
from legato.store._codec import decode, encode, request_hash
from legato.store._crypto import Sealer, release
from legato.store._database import (
    READONLY,
    connect,
    connect_sqlite_sync,
    migrate,
    prepare,
    resolve_url,
    sqlite_path,
    translate_error,
)
from legato.store._datakeys import kek_for, key_reference, load_data_keys, rotate_data_keys
from legato.store._ids import new_run_id, owner_gone
from legato.store._leases import cancel_columns, cancel_request, check_takeover, fence, sole_holder
from legato.store._lookup import resolve, short_ids
from legato.store._records import (
    ACTIVE,
    CANCELLABLE,
    TERMINAL,
    CancelRequest,
    EventRecord,
    MapItemRecord,
    RunRecord,
    StepRecord,
    StoredStatus,
)
from legato.store._rows import event_record, event_row, map_item_row, run_record, sealed, step_record, step_row
from legato.store._schema import events, map_items, runs, step_attempts

__all__ = ["RunStore"]

Clock = Callable[[], float]
T = TypeVar("T")


class RunStore:
    """The durable record of runs. Cheap to construct; :meth:`open` connects and
    migrates. Use as ``async with RunStore(url) as store:``.

    ``url``: ``None`` (``$LEGATO_DATABASE_URL`` or ``./.legato/legato.db``), a
    SQLite path or ``sqlite:///PATH``, or ``postgresql://HOST/DB``.
    ``create=False`` is for readers: a store that does not exist raises
    :class:`~legato.errors.StoreNotFound` instead of being created, and a SQLite
    file that cannot be written is opened read-only (:attr:`read_only`).
    ``clock`` returns epoch seconds; inject one to test leases in virtual time.
    ``redactor`` scrubs error messages, event data, step metadata and journal text
    before they are written (default: the process-wide
    :func:`~legato.redaction.default_redactor`, which ``observe.redact`` in
    ``legato.yaml`` extends). Run inputs and step outputs are stored as given:
    resuming a run needs them verbatim, so a step must not return secrets.
    ``encryption_key``: a key reference (``env:NAME``, ``file:PATH``) that turns on
    envelope encryption of every payload (default: ``$LEGATO_STORE_KEY``, else
    ``store.encryption.key`` in ``legato.yaml``; see docs/data-protection.md).
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        clock: Clock = time.time,
        echo: bool = False,
        redactor: Redactor | None = None,
        create: bool = True,
        encryption_key: str | None = None,
    ) -> None:
        self.url = resolve_url(None if url is None else os.fspath(url))
        self.clock = clock
        self.create = create
        self.read_only = False
        self._redactor = redactor
        self._echo = echo
        self._engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None  # SQLite: transactions run in a worker thread
        self._cancels: CancelListener | None = None
        self._serial: anyio.Lock | None = None
        self.cancel_poll_s = 0.2  # SQLite: how often a running run reads its cancel flag
        self.encryption_key = key_reference(encryption_key)
        self._sealer: Sealer | None = None
        self._held_keys: list[str] = []

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> RunStore:
        """Connect and bring the schema up to date. Raises ``StoreCorrupt`` for a file
        that is not a legato store (never resets it)."""
        if self._engine is None:
            url, self.read_only = await prepare(self.url, create=self.create)
            engine = connect(url, echo=self._echo, readonly=self.read_only)
            try:
                await migrate(engine, self.url, create=self.create, readonly=self.read_only)
            except BaseException:
                await engine.dispose()
                raise
            self._engine = engine
            if sqlite_path(self.url) is not None:  # an in-memory database stays on the async engine
                self._sync_engine = connect_sqlite_sync(url, echo=self._echo, readonly=self.read_only)
            elif engine.dialect.name == "sqlite":  # one shared connection: one transaction at a time
                self._serial = anyio.Lock()
            try:
                await self._load_keys()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def _load_keys(self) -> None:
        kek = kek_for(self.encryption_key)
        now, writable = self.clock(), not self.read_only
        held: list[str] = []
        try:
            self._sealer = await self.run_sync(
                lambda conn: load_data_keys(conn, kek, now, writable=writable, held=held)
            )
        finally:  # a failure part-way (a wrong key) releases what was registered
            self._held_keys = held

    @property
    def sealer(self) -> Sealer | None:
        """What seals payloads on their way in (``None``: encryption is off)."""
        return self._sealer

    @property
    def encrypted(self) -> bool:
        """Whether this store seals what it writes."""
        return self._sealer is not None

    async def rotate_key(self, new_key: str) -> int:
        """Re-wrap the store's data keys with the key ``new_key`` names (the store was
        opened with the current key); stored values are not rewritten. Returns how many
        data keys were re-wrapped."""
        old = kek_for(self.encryption_key)
        if old is None:
            raise StoreError("the store is not opened with an encryption key: give the current key to rotate from")
        new = kek_for(new_key)
        assert new is not None
        now = self.clock()
        count = await self.run_sync(lambda conn: rotate_data_keys(conn, old, new, now))
        self.encryption_key = new_key
        return count

    async def aclose(self) -> None:
        held, self._held_keys, self._sealer = self._held_keys, [], None
        release(held)
        if self._cancels is not None:
            cancels, self._cancels = self._cancels, None
            await cancels.aclose()
        if self._sync_engine is not None:
            sync_engine, self._sync_engine = self._sync_engine, None
            await anyio.to_thread.run_sync(sync_engine.dispose)
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> RunStore:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def redactor(self) -> Redactor:
        """What scrubs text on its way into the database (see the class docstring)."""
        return self._redactor if self._redactor is not None else default_redactor()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError("the run store is not open: use `async with RunStore(...)` or `await store.open()`")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def run_sync(self, fn: Callable[[Connection], T], *, readonly: bool = False) -> T:
        """Run ``fn(connection)`` in one transaction (committed when it returns, rolled
        back when it raises) and return its result. Database errors become
        :class:`StoreError` (``IntegrityError`` passes through for callers that expect it).

        On SQLite the whole transaction runs in a worker thread on a synchronous
        connection (one thread hop instead of one per statement); on PostgreSQL it runs
        on the async engine through SQLAlchemy's ``run_sync``.
        """
        try:
            if self._sync_engine is not None:
                return await anyio.to_thread.run_sync(self._sync_transaction, fn, readonly)
            engine = self.engine.execution_options(**READONLY) if readonly else self.engine
            async with self._serial or nullcontext(), engine.begin() as conn:
                return await conn.run_sync(fn)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise translate_error(exc, self.url) from exc
        except SQLAlchemyError as exc:  # pool timeouts and the like: still the store failing
            raise StoreError(f"{self.url.split('://')[0]} store: {exc}") from exc

    def _sync_transaction(self, fn: Callable[[Connection], T], readonly: bool) -> T:
        assert self._sync_engine is not None
        engine = self._sync_engine.execution_options(**READONLY) if readonly else self._sync_engine
        with engine.begin() as conn:
            return fn(conn)

    # -- runs ----------------------------------------------------------------------

    async def record_run(
        self,
        pipeline: Any,
        inputs: Mapping[str, Any],
        /,
        *,
        run_id: str | None = None,
        subscribers: Iterable[Any] = (),
        control: Any = None,
    ) -> Any:
        """Run ``pipeline`` durably in this store (what ``Pipeline(..., store=store).run``
        calls): recorded, checkpointed, resumable with ``legato runs resume``."""
        from legato.store._durable import DurableRunner

        return await DurableRunner(self).run(
            pipeline, inputs, run_id=run_id, subscribers=subscribers, control=control, source=pipeline.source
        )

    async def create_run(
        self,
        *,
        pipeline: str,
        version_hash: str,
        inputs: dict[str, Any],
        idempotency_key: str | None = None,
        tenant: str = "",
        owner: str | None = None,
        lease_ttl: float = 30.0,
        run_id: str | None = None,
        estimated_cost: float | None = None,
        source: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        rerun_of: str | None = None,
        rerun_from: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Create a run, or return the one already created with ``idempotency_key``.

        Returns ``(record, created)``. With ``owner`` the run starts ``running`` under
        that owner's lease; with ``queue`` (and no owner) it is ``queued`` there for a
        worker to claim (see :mod:`legato.store._queue`). Raises
        :class:`IdempotencyConflict` when the key was used for a different pipeline or
        different inputs.
        """
        digest = request_hash(pipeline, inputs)
        if idempotency_key is not None:
            existing = await self.find_by_idempotency_key(idempotency_key, tenant=tenant)
            if existing is not None:
                return self._same_request(existing, digest, idempotency_key), False
        now = self.clock()
        row = {
            "id": run_id or new_run_id(),
            "pipeline": pipeline,
            "version_hash": version_hash,
            "inputs": sealed(self._sealer, encode(inputs)),
            "request_hash": digest,
            "status": _initial_status(owner, queue),
            "tenant": tenant,
            "idempotency_key": idempotency_key,
            "lease_owner": owner,
            "lease_expires_at": now + lease_ttl if owner else None,
            "recoveries": 0,
            "cancel_requested": False,
            "estimated_cost": estimated_cost,
            "created_at": now,
            "updated_at": now,
            "started_at": now if owner else None,
            "source": source,
            "queue": queue,
            "priority": priority,
            "rerun_of": rerun_of,
            "rerun_from": rerun_from,
        }
        announce = queue is not None and owner is None and self.dialect == "postgresql"

        def insert(conn: Connection) -> RunRecord:
            conn.execute(runs.insert().values(row))
            if announce:  # wakes the LISTENing workers when this transaction commits
                conn.execute(sa.select(sa.func.pg_notify(QUEUE_CHANNEL, queue)))
            return _get(conn, str(row["id"]))

        try:
            return await self.run_sync(insert), True
        except IntegrityError as exc:
            if idempotency_key is None:
                raise StoreError(f"run id {row['id']!r} already exists") from exc
            existing = await self.find_by_idempotency_key(idempotency_key, tenant=tenant)
            if existing is None:  # pragma: no cover - the winner's row is committed before we fail
                raise StoreError(f"idempotency key {idempotency_key!r} collided but no run holds it") from exc
            return self._same_request(existing, digest, idempotency_key), False

    @staticmethod
    def _same_request(existing: RunRecord, digest: str, key: str) -> RunRecord:
        if existing.request_hash != digest:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used by run {existing.id} "
                f"(pipeline {existing.pipeline!r}) with different inputs; use a new key for a new request"
            )
        return existing

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
        return await self.run_sync(lambda conn: _get(conn, run_id, prefix=True, tenant=tenant), readonly=True)

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
        *,
        status: str | Iterable[str] | None = None,
        pipeline: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        oldest_first: bool = False,
        cursor: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (``oldest_first``: oldest first). ``status="dead"`` lists
        the dead-letter queue. ``since``/``until`` bound the creation time (``until``
        excluded); ``cursor`` is the ``(created_at, id)`` of the last run of the previous
        page: the page goes on after it (keyset pagination, stable while runs arrive)."""
        key = (runs.c.created_at, runs.c.id)
        order = [c.asc() for c in key] if oldest_first else [c.desc() for c in key]
        query = sa.select(runs).order_by(*order).limit(limit)
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        if until is not None:
            query = query.where(runs.c.created_at < until)
        if cursor is not None:
            after = sa.tuple_(*key) > sa.tuple_(*cursor) if oldest_first else sa.tuple_(*key) < sa.tuple_(*cursor)
            query = query.where(after)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            query = query.where(runs.c.status.in_(statuses))
        if pipeline is not None:
            query = query.where(runs.c.pipeline == pipeline)
        if tenant is not None:
            query = query.where(runs.c.tenant == tenant)
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
            _insert(conn, step_rows, event_rows)
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
            _insert(conn, step_rows, event_rows)

        await self.run_sync(write)

    # -- leases ----------------------------------------------------------------------------

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
            _insert(conn, [], [event_row(taken, self.redactor, self._sealer)])
            return _get(conn, record.id)

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
            _insert(conn, [], [event])
            return _get(conn, run_id)

        return await self.run_sync(bury)

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
            _insert(conn, [], [event])
            if postgres:  # delivered to the LISTENing worker when this transaction commits
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, record.id)))
            return _get(conn, record.id)

        return await self.run_sync(cancel)

    async def prune(self, *, older_than_s: float) -> int:
        """Delete finished runs (with their steps and events) that ended more than
        ``older_than_s`` seconds ago. Journal entries are kept. Returns how many runs."""
        cutoff = self.clock() - older_than_s
        old = sa.select(runs.c.id).where(
            runs.c.status.in_(tuple(TERMINAL)), sa.func.coalesce(runs.c.finished_at, runs.c.updated_at) < cutoff
        )

        def delete(conn: Connection) -> int:
            ids = [r[0] for r in conn.execute(old).all()]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                conn.execute(step_attempts.delete().where(step_attempts.c.run_id.in_(chunk)))
                conn.execute(map_items.delete().where(map_items.c.run_id.in_(chunk)))
                conn.execute(events.delete().where(events.c.run_id.in_(chunk)))
                conn.execute(runs.delete().where(runs.c.id.in_(chunk)))
            return len(ids)

        return await self.run_sync(delete)


def _initial_status(owner: str | None, queue: str | None) -> str:
    if owner:
        return StoredStatus.RUNNING.value
    return StoredStatus.QUEUED.value if queue is not None else StoredStatus.PENDING.value


def _get(conn: Connection, run_id: str, *, prefix: bool = False, tenant: str | None = None) -> RunRecord:
    scoped = sa.select(runs) if tenant is None else sa.select(runs).where(runs.c.tenant == tenant)
    row = conn.execute(scoped.where(runs.c.id == run_id)).mappings().first()
    if row is None and prefix:
        row = conn.execute(scoped.where(runs.c.id == resolve(conn, run_id, tenant))).mappings().first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run_record(row)


def _insert(conn: Connection, step_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]) -> None:
    if step_rows:
        conn.execute(step_attempts.insert(), step_rows)
    if event_rows:
        conn.execute(events.insert(), event_rows)

"""The connection under :class:`~legato.store.RunStore`: opening and migrating the
database, the data keys, and :meth:`StoreConnection.run_sync`, the one way the store
runs a transaction (a worker thread on SQLite, the async engine on PostgreSQL)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Self, TypeVar

import anyio
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from legato.errors import StoreError
from legato.redaction import Redactor, default_redactor
from legato.store._cancel import CancelListener
from legato.store._changes import RunChanges
from legato.store._crypto import CacheSealing, Sealer, release
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
from legato.store._retention import RetentionConfig

__all__ = ["Clock", "StoreConnection"]

Clock = Callable[[], float]
T = TypeVar("T")


class StoreConnection:
    """The database, its engines and its keys; see :class:`~legato.store.RunStore` for
    the constructor's arguments."""

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        clock: Clock = time.time,
        echo: bool = False,
        redactor: Redactor | None = None,
        create: bool = True,
        encryption_key: str | None = None,
        retention: RetentionConfig | None = None,
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
        self._changes: RunChanges | None = None
        self._serial: anyio.Lock | None = None
        self.cancel_poll_s = 0.2  # SQLite: how often a running run reads its cancel flag
        self.encryption_key = key_reference(encryption_key)
        self._sealer: Sealer | None = None
        self._held_keys: list[str] = []
        self._retention = retention

    @property
    def retention(self) -> RetentionConfig:
        """The ``retention:`` policy runs are created under (default: from ``legato.yaml``)."""
        if self._retention is None:
            self._retention = RetentionConfig.from_environment()
        return self._retention

    # -- lifecycle ---------------------------------------------------------------

    async def open(self, *, migrate_in_child: bool = False) -> Self:
        """Connect and bring the schema up to date. Raises ``StoreCorrupt`` for a file
        that is not a legato store (never resets it).

        ``migrate_in_child``: for long-lived serving processes; a store that must be
        created or upgraded is so by a short-lived child process, which keeps alembic
        out of this one (about 10 MB for its lifetime; see :mod:`legato._store_upgrade`)
        at the cost of starting a Python process, once."""
        if self._engine is None:
            url, self.read_only = await prepare(self.url, create=self.create)
            engine = connect(url, echo=self._echo, readonly=self.read_only)
            try:
                await migrate(engine, self.url, create=self.create, readonly=self.read_only, in_child=migrate_in_child)
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

    def cache_sealing(self) -> CacheSealing | None:
        """Seals response-cache values with this store's data key (``None``: encryption is off)."""
        return CacheSealing(self._sealer) if self._sealer is not None else None

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

    def run_changes(self) -> RunChanges:
        """The change count of this store's runs, for live views (see
        :mod:`legato.store._changes`); closed with the store."""
        if self._changes is None:
            self._changes = RunChanges(self.url)
        return self._changes

    async def aclose(self) -> None:
        held, self._held_keys, self._sealer = self._held_keys, [], None
        release(held)
        if self._cancels is not None:
            cancels, self._cancels = self._cancels, None
            await cancels.aclose()
        if self._changes is not None:
            changes, self._changes = self._changes, None
            await changes.aclose()
        if self._sync_engine is not None:
            sync_engine, self._sync_engine = self._sync_engine, None
            await anyio.to_thread.run_sync(sync_engine.dispose)
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> Self:
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

    async def checkpoint_wal(self) -> None:
        """SQLite: move the write-ahead log into the database file and truncate it, so
        overwritten values (erased payloads) do not linger in the log. A no-op elsewhere."""
        engine = self._sync_engine
        if engine is None:
            return

        def checkpoint() -> None:
            raw = engine.raw_connection()  # outside any transaction: the "begin" hook would open one
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()

        await anyio.to_thread.run_sync(checkpoint)

    def _sync_transaction(self, fn: Callable[[Connection], T], readonly: bool) -> T:
        assert self._sync_engine is not None
        engine = self._sync_engine.execution_options(**READONLY) if readonly else self._sync_engine
        with engine.begin() as conn:
            return fn(conn)

    # -- runs ----------------------------------------------------------------------

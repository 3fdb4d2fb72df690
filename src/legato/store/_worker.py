"""``legato worker``: claims queued runs and executes them with the durable runner.

A :class:`Worker` serves one or more queues: it claims a run (see
:mod:`legato.store._queue`), executes it with :class:`DurableRunner` (leases,
heartbeats, cancel notifications and checkpoints as for any run) and claims the
next one while fewer than ``concurrency`` of its runs are in flight. Every
``lease_ttl / 2`` seconds it also takes over runs whose worker died
(:func:`recover_expired_runs`), so a ``kill -9`` of one worker is repaired by another.

A worker records itself in the store every few seconds (its slots, for the
utilisation metric) and, given a :class:`~legato.store.Scheduler`, fires the
schedules of ``legato.yaml`` (every worker does; each tick fires once).

:meth:`Worker.drain` (SIGTERM) stops claiming, gives the runs in flight
``grace_s`` seconds to finish, then stops the rest: their leases are released and
they go back on their queue (status ``queued``), to be resumed by the next worker
from their last checkpoint.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio

from legato.engine import Pipeline, Subscriber
from legato.errors import InputError, LegatoError, PipelineChanged, StoreError
from legato.store._durable import DurableRunner
from legato.store._queue import QueueSettings, QueueWaiter, claim_run, forget_worker, renew_worker, requeue
from legato.store._records import RunRecord
from legato.store._recovery import recover_expired_runs
from legato.store._runs import RunStore
from legato.store._schedules import Scheduler

__all__ = ["Resolver", "Worker"]

log = logging.getLogger("legato.worker")

Resolver = Callable[[RunRecord], "Pipeline | Awaitable[Pipeline | None] | None"]


class Worker:
    """Executes the runs of ``queues`` (``{name: its settings, or None for no limits}``).

    ``resolve(record)`` returns the pipeline of a claimed run (None: this worker does
    not serve it, the run is dead-lettered with the reason). ``concurrency`` bounds
    this worker's runs in flight; a queue's own limit holds across all workers.
    ``pipelines`` (by name) are what it may take over when their worker died, with
    those of the runs it claimed."""

    def __init__(
        self,
        store: RunStore,
        queues: Mapping[str, QueueSettings | None],
        resolve: Resolver,
        *,
        concurrency: int = 4,
        lease_ttl: float = 30.0,
        grace_s: float = 30.0,
        poll_s: float = 0.2,
        subscribers: Iterable[Subscriber] = (),
        pipelines: Mapping[str, Pipeline] | None = None,
        scheduler: Scheduler | None = None,
        renew_s: float = 5.0,
    ) -> None:
        if not queues:
            raise ValueError("a worker needs at least one queue")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        self.store = store
        self.queues = {name: settings or QueueSettings() for name, settings in queues.items()}
        self.scheduler = scheduler
        self.renew_s = renew_s
        self.resolve = resolve
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.runner = DurableRunner(store, lease_ttl=lease_ttl)
        self.subscribers = list(subscribers)
        self.waiter = QueueWaiter(store.url, set(self.queues), poll_s=poll_s)
        rates = [s.rate_limit for s in self.queues.values() if s.rate_limit is not None]
        self._retry_s = min([r.per_s / r.runs for r in rates], default=None)  # a window frees a claim unannounced
        self.claimed = 0
        self._known: dict[str, Pipeline] = dict(pipelines or {})  # what recovery can resume
        self._in_flight: dict[str, anyio.CancelScope] = {}
        self._draining = anyio.Event()
        self._idle = anyio.Event()
        self._next = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def drain(self) -> None:
        """Stop claiming; :meth:`serve` returns once the runs in flight finished or
        were put back on their queue after ``grace_s``."""
        self._draining.set()
        self.waiter.wake()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim and execute runs until :meth:`drain`; then drain (see the module docstring)."""
        try:
            async with anyio.create_task_group() as runs_tg:
                async with anyio.create_task_group() as side:
                    side.start_soon(self._recover_forever)
                    side.start_soon(self._renew_forever)
                    if self.scheduler is not None:
                        side.start_soon(self.scheduler.serve)
                    task_status.started()
                    await self._claim_until_drained(runs_tg)
                    side.cancel_scope.cancel()
                with anyio.move_on_after(self.grace_s):
                    while self._in_flight:
                        self._idle = anyio.Event()
                        await self._idle.wait()
                for scope in list(self._in_flight.values()):
                    scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._forget()
            await self.waiter.aclose()

    async def _claim_until_drained(self, tg: anyio.abc.TaskGroup) -> None:
        while not self._draining.is_set():
            if len(self._in_flight) >= self.concurrency:
                self._idle = anyio.Event()
                with anyio.move_on_after(self.waiter.fallback_s):
                    await self._idle.wait()
                continue
            self.waiter.clear()
            record = await self._claim()
            if record is None:
                await self.waiter.wait(self._retry_s)
                continue
            self.claimed += 1
            scope = anyio.CancelScope()
            self._in_flight[record.id] = scope
            tg.start_soon(self._execute, record, scope)

    async def _claim(self) -> RunRecord | None:
        names = list(self.queues)
        for i in range(len(names)):  # round robin over the queues, one claim each
            name = names[(self._next + i) % len(names)]
            try:
                settings = self.queues[name]
                record = await claim_run(
                    self.store,
                    name,
                    self.runner.owner,
                    lease_ttl=self.runner.lease_ttl,
                    concurrency=settings.concurrency,
                    rate=settings.rate_limit,
                )
            except StoreError:
                log.warning("claiming from queue %s failed; retrying", name, exc_info=True)
                continue
            if record is not None:
                self._next = (self._next + i + 1) % len(names)
                return record
        return None

    async def _execute(self, record: RunRecord, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await self._run(record)
            if scope.cancelled_caught:
                with anyio.CancelScope(shield=True):
                    back = await requeue(self.store, record.id, self.runner.owner)
                log.info("run %s %s", record.id, "put back on its queue" if back else "left to its new holder")
        except Exception:
            log.exception("run %s of %s could not be executed", record.id, record.pipeline)
        finally:
            self._in_flight.pop(record.id, None)
            self._idle.set()
            self.waiter.wake()  # a slot is free: claim again at once

    async def _run(self, record: RunRecord) -> None:
        try:
            pipeline = await self._pipeline(record)
        except LegatoError as exc:
            await self.store.dead_letter(record.id, f"its pipeline could not be loaded: {exc}")
            return
        if pipeline is None:
            queue = record.queue or ""
            await self.store.dead_letter(record.id, f"no worker of queue {queue!r} serves pipeline {record.pipeline!r}")
            return
        try:
            result = await self.runner.resume(pipeline, record.id, charge=False, subscribers=self.subscribers)
        except (PipelineChanged, InputError) as exc:  # it would fail the same way on every worker
            await self.store.dead_letter(record.id, str(exc))
            return
        log.info("run %s of %s %s", record.id, record.pipeline, result.status)

    async def _pipeline(self, record: RunRecord) -> Pipeline | None:
        resolved = self.resolve(record)
        pipeline = await resolved if inspect.isawaitable(resolved) else resolved
        if pipeline is not None:
            self._known[record.pipeline] = pipeline
        return pipeline

    async def _renew_forever(self) -> None:
        while True:
            try:
                await renew_worker(self.store, self.runner.owner, self.queues, self.concurrency)
            except StoreError:
                log.warning("recording this worker as alive failed; retrying", exc_info=True)
            await anyio.sleep(self.renew_s)

    async def _forget(self) -> None:
        try:
            await forget_worker(self.store, self.runner.owner)
        except StoreError:
            log.warning("removing this worker from the live ones failed", exc_info=True)

    async def _recover_forever(self) -> None:
        while True:
            try:
                outcomes = await recover_expired_runs(
                    self.store, self._known.get, runner=self.runner, subscribers=self.subscribers
                )
            except Exception:
                log.exception("recovering orphaned runs failed")
            else:
                for o in outcomes:
                    log.info("recovered run %s of %s: %s %s", o.run_id, o.pipeline, o.action, o.detail)
            await anyio.sleep(self.runner.lease_ttl / 2)

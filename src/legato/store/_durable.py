"""Durable runs: create or find the run, hold its lease, checkpoint, resume.

Semantics (see docs/durable-runs.md): a finished step is committed before any
step that depends on it starts and is never executed again for that run; each
finished item of a map step is committed before its worker takes the next item,
and a resume runs only the items not committed. A step (or item) in flight when
the process died runs again on resume (at-least-once), with the same
:attr:`StepContext.idempotency_key` (``"{run_id}/{step}"``, plus ``/{index}`` for
an item), which it may hand to a provider or tool to make its side effect happen once.

While a run executes, its worker holds a lease on it and renews it every
``lease_ttl / 3`` seconds; every checkpoint is fenced by that lease. A run whose
lease expired (or whose holder provably died) is taken over by
:meth:`DurableRunner.resume` or :func:`recover_expired_runs`; a run whose worker
died more than ``max_recoveries`` times while executing it alone is dead-lettered
instead (see :mod:`legato.store._leases` for how deaths are charged).

A cancel recorded in the store (``legato runs cancel``, the runs API, the
dashboard) reaches the worker within a fraction of a second
(:meth:`RunStore.wait_cancel`): its running steps are cancelled, and no step
starts after a checkpoint that saw the request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from legato.engine import SKIPPED, Pipeline, RunControl, RunResult, RunStatus, StepStatus, StepTiming, Subscriber
from legato.errors import LeaseLost, PipelineChanged, RunCancelled, RunError, StoreError
from legato.resilience import Clock, SystemClock
from legato.store._checkpoint import Checkpointer, journals_from_rows
from legato.store._ids import new_owner_id
from legato.store._records import CancelRequest, RunRecord, StepRecord, StoredStatus
from legato.store._reflection import reflect_on_run
from legato.store._retention import PayloadState, explain_payloads
from legato.store._run_writes import NewRun
from legato.store._runs import RunStore

__all__ = ["DurableRunner", "pipeline_version", "result_from_record", "run_durably"]

log = logging.getLogger("legato.store")

Reflector = Callable[[RunStore, RunRecord], Awaitable[Any]]


def pipeline_version(pipeline: Pipeline) -> str:
    """A hash of what the pipeline computes: its name, each step's name and code
    version (``version=`` or a hash of the function source) and, for YAML
    pipelines, the spec. Stored on each run; resuming under another version is refused."""
    h = hashlib.sha256(pipeline.name.encode())
    for name in sorted(pipeline.steps):
        d = pipeline.steps[name]
        h.update(f"\0{name}\0{d.code_version}\0{d.map}\0{sorted(d.depends_on)}".encode())
        if d.continue_on_error or d.map_errors != "fail":  # only when set: older runs keep their version
            h.update(f"\0tolerate\0{d.continue_on_error}\0{d.default!r}\0{d.map_errors}".encode())
    spec = pipeline.spec
    if spec is not None:
        dump = getattr(spec, "model_dump_json", None)
        h.update(b"\0spec\0" + (dump() if callable(dump) else repr(spec)).encode())
    return h.hexdigest()[:16]


class DurableRunner:
    """Runs pipelines so that they survive the process: see the module docstring.

    Args:
        store: an open :class:`RunStore`.
        owner: this worker's lease id (default: ``host:pid:random``).
        lease_ttl: seconds a lease lasts without renewal.
        max_recoveries: charged takeovers (deaths of a worker executing the run
            alone) after which :func:`recover_expired_runs` dead-letters it.
        reflect: called with each finished run's record; the default writes the
            journal's automatic reflection for failed or notable runs. None disables it.
        clock: what the heartbeat and the cancel polls sleep on (a ``VirtualClock``
            in tests); lease times themselves come from the store's clock.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        owner: str | None = None,
        lease_ttl: float = 30.0,
        max_recoveries: int = 3,
        reflect: Reflector | None = reflect_on_run,
        clock: Clock | None = None,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        self.store = store
        self.owner = owner or new_owner_id()
        self.lease_ttl = lease_ttl
        self.max_recoveries = max_recoveries
        self.reflect = reflect
        self.clock = clock or SystemClock()

    async def run(
        self,
        pipeline: Pipeline,
        inputs: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        tenant: str = "",
        run_id: str | None = None,
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
        estimated_cost: float | None = None,
        source: str | None = None,
        subject: str | None = None,
        tags: Iterable[str] = (),
    ) -> RunResult:
        """Start a run (or, with an ``idempotency_key`` already used for the same
        request, return that run: its stored result when finished, a ``RUNNING``
        result when another live worker executes it, and a resumed run when its
        worker died). Raises ``IdempotencyConflict`` for a reused key with other inputs.
        ``source`` (a YAML path) is stored so ``legato runs resume`` can reload the pipeline.
        ``subject`` names the run's data subject (default: the input ``retention:`` names);
        ``tags`` label the run for finding it later."""
        values = dict(inputs or {})
        pipeline.check_inputs(values)  # bad inputs raise InputError here, before any run is recorded
        record, created = await self.store.create_run(
            NewRun(
                pipeline=pipeline.name,
                version_hash=pipeline_version(pipeline),
                inputs=values,
                idempotency_key=idempotency_key,
                tenant=tenant,
                owner=self.owner,
                lease_ttl=self.lease_ttl,
                run_id=run_id,
                estimated_cost=estimated_cost,
                source=source,
                subject=subject,
                tags=tags,
            )
        )
        if created:
            return await self._execute(pipeline, record, {}, subscribers, control)
        if record.terminal:
            return await result_from_record(self.store, record)
        try:
            return await self.resume(pipeline, record.id, subscribers=subscribers, control=control)
        except LeaseLost:  # another live worker executes it
            return await result_from_record(self.store, await self.store.get_run(record.id))
        except StoreError:
            latest = await self.store.get_run(record.id)
            if latest.terminal:  # it finished between our read and our takeover
                return await result_from_record(self.store, latest)
            raise

    async def resume(
        self,
        pipeline: Pipeline,
        run_id: str,
        *,
        force: bool = False,
        allow_changed: bool = False,
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
        charge: bool | None = None,
    ) -> RunResult:
        """Take over run ``run_id`` and finish it: finished steps are reused, the rest run.

        Raises ``LeaseLost`` while another live worker holds it (``force`` takes it
        anyway), ``RunNotResumable`` if it already succeeded or was cancelled or
        dead-lettered (unless ``force``), ``PipelineChanged`` if another version of
        the pipeline started it (unless ``allow_changed``). ``charge``: see
        :meth:`RunStore.acquire`. Attempt numbers continue from the stored ones."""
        current = await self.store.get_run(run_id)
        if current.pipeline != pipeline.name:
            raise StoreError(f"run {current.id} belongs to pipeline {current.pipeline!r}, not {pipeline.name!r}")
        version = pipeline_version(pipeline)
        if current.version_hash != version and not allow_changed:
            raise PipelineChanged(
                f"run {current.id} was started by version {current.version_hash} of pipeline {pipeline.name!r}, "
                f"which is now version {version} (a step's code or the spec changed); its finished steps may not "
                "match the new code",
                started=current.version_hash,
                current=version,
            )
        record = await self.store.acquire(current.id, self.owner, lease_ttl=self.lease_ttl, force=force, charge=charge)
        if record.payloads in (PayloadState.EXPIRED, PayloadState.ERASED):
            await self._release_quietly(record.id)
            raise StoreError(f"run {record.id} cannot be resumed: {explain_payloads(record.payloads)}")
        if record.payloads == PayloadState.METADATA:  # nothing was kept to resume from
            return await self._execute(
                pipeline, record, {}, subscribers, control, await self.store.last_attempts(record.id)
            )
        finished = await self.store.completed_steps(record.id)
        completed = {name: (SKIPPED if s.status == "skipped" else s.output) for name, s in finished.items()}
        completed = {k: v for k, v in completed.items() if k in pipeline.steps}
        attempts = await self.store.last_attempts(record.id)
        rows = await self.store.map_items(record.id)
        items = {k: v for k, v in rows.items() if k not in completed and k in pipeline.steps and pipeline.steps[k].map}
        journals = journals_from_rows(rows, [s for s in pipeline.steps if s not in completed])
        return await self._execute(pipeline, record, completed, subscribers, control, attempts, items, journals)

    async def rerun(
        self,
        pipeline: Pipeline,
        run_id: str,
        from_step: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        source: str | None = None,
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
    ) -> RunResult:
        """Run ``run_id`` again from ``from_step`` as a new run (``rerun_of`` names the
        original): the steps it does not affect keep their stored outputs, it and its
        downstream run (with ``inputs`` overriding the original's). See
        :mod:`legato.store._rerun`."""
        from legato.store._rerun import prepare_rerun

        record = await prepare_rerun(
            self.store, pipeline, run_id, from_step, inputs=inputs, tenant=tenant, source=source
        )
        return await self.resume(pipeline, record.id, subscribers=subscribers, control=control)

    async def respond(
        self,
        pipeline: Pipeline,
        run_id: str,
        step: str,
        answer: Any,
        *,
        by: str = "",
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
    ) -> RunResult:
        """Answer wait step ``step`` of the waiting run ``run_id`` and resume the run in
        this process (see :func:`legato.store.respond` for what is checked)."""
        from legato.store._waits import respond

        record = await respond(self.store, run_id, step, answer, by=by)
        return await self.resume(pipeline, record.id, subscribers=subscribers, control=control)

    async def _execute(
        self,
        pipeline: Pipeline,
        record: RunRecord,
        completed: dict[str, Any],
        subscribers: Iterable[Subscriber],
        control: RunControl | None,
        attempts_before: Mapping[str, int] | None = None,
        map_items: dict[str, dict[int, Any]] | None = None,
        journals: dict[str, list[Any]] | None = None,
    ) -> RunResult:
        control = control or RunControl()
        stop = _Stop(control)
        checkpointer = Checkpointer(
            self.store,
            record.id,
            self.owner,
            lease_ttl=self.lease_ttl,
            on_cancel=stop.cancel,
            attempts_before=attempts_before,
            mapped=frozenset(map_items or ()),
            journaled=tuple(journals or ()),
            keep_payloads=record.payloads != PayloadState.METADATA,
        )
        finished = False
        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat, record.id, stop, checkpointer)
                    tg.start_soon(self._watch_cancel, record.id, stop)
                    try:
                        result = await pipeline.run(
                            record.inputs,
                            run_id=record.id,
                            completed=completed,
                            map_items=map_items,
                            journals=journals,
                            subscribers=[checkpointer, *subscribers],
                            control=control,
                        )
                    finally:
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:  # the heartbeat never raises: this is the run's own error
                    raise group.exceptions[0] from group.exceptions[0].__cause__
                raise
            if checkpointer.lost is not None:
                raise checkpointer.lost
            attempts, events = checkpointer.take_pending()
            status = _stored_status(result)
            error, cancelled_by = result.error, None
            if status is StoredStatus.CANCELLED:
                request = stop.request or await self._cancelled_by(record.id, control)
                error, cancelled_by = request.describe(), request.by or None
            await self.store.finish_run(
                record.id,
                self.owner,
                status=status,
                outputs=result.result if result.ok else None,
                error=error,
                failed_step=result.failed_step,
                cost=checkpointer.cost or result.cost or None,
                attempts=attempts,
                new_events=events,
                cancelled_by=cancelled_by,
            )
            finished = True
        finally:
            if not finished and checkpointer.lost is None:
                with anyio.CancelScope(shield=True):
                    await self._release_quietly(record.id)
        if (
            self.reflect is not None
            and result.status is not RunStatus.WAITING
            and (checkpointer.notable or not result.ok or record.recoveries or record.estimated_cost is not None)
        ):
            final = await self.store.get_run(record.id)
            try:
                await self.reflect(self.store, final)
            except Exception:
                log.exception("writing the reflection of run %s failed", record.id)
        return result

    async def _cancelled_by(self, run_id: str, control: RunControl) -> CancelRequest:
        """Who cancelled a run whose control was cancelled directly (Ctrl-C, the gateway
        that executes it): the recorded request if there is one, else the control's reason."""
        recorded = await self.store.cancel_request(run_id)
        return recorded or CancelRequest(control.reason or "", time.time())

    async def _release_quietly(self, run_id: str) -> None:
        try:
            await self.store.release(run_id, self.owner)
        except StoreError as exc:  # the store itself failed (full disk, lost connection): the caller reports that
            log.info("releasing the lease of run %s failed (%s); it will expire", run_id, exc)
        except Exception:
            log.exception("releasing the lease of run %s failed; it will expire", run_id)

    async def _heartbeat(self, run_id: str, stop: _Stop, checkpointer: Checkpointer) -> None:
        interval = self.lease_ttl / 3
        while True:
            await self.clock.sleep(interval)
            try:
                request = await self.store.heartbeat(run_id, self.owner, lease_ttl=self.lease_ttl)
            except LeaseLost as exc:
                checkpointer.lost = exc
                stop.control.cancel(f"lease lost: {exc}")
                return
            except StoreError:
                log.warning("heartbeat of run %s failed; retrying", run_id, exc_info=True)
                continue
            if request is not None:
                stop.cancel(request)

    async def _watch_cancel(self, run_id: str, stop: _Stop) -> None:
        while True:
            try:
                request = await self.store.wait_cancel(run_id, sleep=self.clock.sleep)
            except StoreError:
                log.warning("watching run %s for cancellation failed; retrying", run_id, exc_info=True)
                await self.clock.sleep(self.lease_ttl / 3)
                continue
            stop.cancel(request)
            return


class _Stop:
    """Cancels one run's control for a recorded cancel request, remembering the first."""

    __slots__ = ("control", "request")

    def __init__(self, control: RunControl) -> None:
        self.control = control
        self.request: CancelRequest | None = None

    def cancel(self, request: CancelRequest) -> None:
        if self.request is None and not self.control.cancelled:
            self.request = request
        self.control.cancel(request.describe())


_STEP_STATUSES = frozenset(s.value for s in StepStatus)


def _stored_status(result: RunResult) -> StoredStatus:
    if result.status is RunStatus.CANCELLED or isinstance(result.exception, RunCancelled):
        return StoredStatus.CANCELLED
    if result.status is RunStatus.WAITING:
        return StoredStatus.WAITING
    return StoredStatus.SUCCEEDED if result.ok else StoredStatus.FAILED


async def result_from_record(store: RunStore, record: RunRecord) -> RunResult:
    """A :class:`RunResult` describing a stored run (no step runs)."""
    steps = await store.steps(record.id)
    latest: dict[str, StepRecord] = {}
    for s in steps:
        latest[s.step] = s
    status = {
        StoredStatus.SUCCEEDED: RunStatus.SUCCEEDED,
        StoredStatus.FAILED: RunStatus.FAILED,
        StoredStatus.DEAD: RunStatus.FAILED,
        StoredStatus.CANCELLED: RunStatus.CANCELLED,
        StoredStatus.PENDING: RunStatus.PENDING,
        StoredStatus.WAITING: RunStatus.WAITING,
    }.get(record.status, RunStatus.RUNNING)
    timings = {
        name: StepTiming(
            status=StepStatus(s.status) if s.status in _STEP_STATUSES else StepStatus.PENDING, attempts=s.attempt
        )
        for name, s in latest.items()
    }
    outputs = {name: s.output for name, s in latest.items() if s.status == "succeeded"}
    error = record.error or (f"dead-lettered: {record.dead_reason}" if record.status is StoredStatus.DEAD else None)
    if status is RunStatus.RUNNING and record.lease_owner:
        error = f"run {record.id} is being executed by {record.lease_owner}; follow it with `legato runs show`"
    exception = RunError(error) if error and status is RunStatus.FAILED else None
    return RunResult(
        status=status,
        run_id=record.id,
        pipeline=record.pipeline,
        outputs=outputs,
        result=dict(record.outputs or {}),
        timings=timings,
        duration_s=(record.finished_at or record.updated_at) - (record.started_at or record.created_at),
        error=error,
        exception=exception,
        failed_step=record.failed_step,
        skipped={name: "skipped" for name, s in latest.items() if s.status == "skipped"},
        waiting={name: dict(s.meta.get("request") or {}) for name, s in latest.items() if s.status == "waiting"},
        errors={
            name: f"{s.error_type}: {s.error}"
            for name, s in latest.items()
            if s.status == "failed" and status is RunStatus.SUCCEEDED
        },
        cost=record.cost or 0.0,
    )


async def run_durably(
    pipeline: Pipeline,
    inputs: Mapping[str, Any] | None = None,
    *,
    store: RunStore,
    idempotency_key: str | None = None,
    tenant: str = "",
    subscribers: Iterable[Subscriber] = (),
    lease_ttl: float = 30.0,
) -> RunResult:
    """Run ``pipeline`` once, durably (a :class:`DurableRunner` with default settings)."""
    runner = DurableRunner(store, lease_ttl=lease_ttl)
    return await runner.run(pipeline, inputs, idempotency_key=idempotency_key, tenant=tenant, subscribers=subscribers)

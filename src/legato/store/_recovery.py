"""Taking over runs whose worker died: :func:`recover_expired_runs`.

Runs whose worker stopped cleanly (released lease) resume together; runs whose
worker died resume one at a time, least-charged first, so that a run that kills
its worker is charged with its own deaths only and dead-lettered alone (see
:mod:`legato.store._leases` for when a death is charged, and docs/durable-runs.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from legato.engine import Pipeline, RunResult, Subscriber
from legato.errors import LeaseLost, LegatoError, StoreError
from legato.store._durable import DurableRunner
from legato.store._records import RecoveryAction, RunRecord
from legato.store._runs import RunStore
from legato.store._waits import expire_waits

__all__ = ["PipelineResolver", "Recovery", "load_source", "recover_expired_runs"]

PipelineResolver = Callable[[str], "Pipeline | Awaitable[Pipeline | None] | None"]


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :func:`recover_expired_runs` did with one orphaned run (see
    :class:`RecoveryAction`); ``result`` says how a resumed run ended, ``detail`` why
    a run was dead-lettered or could not be resumed."""

    run_id: str
    pipeline: str
    action: RecoveryAction
    result: RunResult | None = None
    detail: str = ""


async def recover_expired_runs(
    store: RunStore,
    pipelines_resolver: PipelineResolver | None = None,
    *,
    runner: DurableRunner | None = None,
    limit: int = 100,
    subscribers: Iterable[Subscriber] = (),
) -> list[Recovery]:
    """Take over every run whose worker died (lease expired, released, or holder gone)
    and finish it; call on start of ``legato serve`` or a worker (e.g. in its task
    group), or from cron with ``legato runs recover``.

    Runs whose worker stopped cleanly (released lease) resume concurrently. Runs
    whose worker died resume **one at a time**, those charged least often first: if
    one of them kills this worker too, no other run was in flight, so the death is
    charged to it alone. A run whose worker died more than ``runner.max_recoveries``
    times while executing it alone is dead-lettered instead of resumed.

    ``pipelines_resolver(name)`` returns the :class:`Pipeline` for a stored pipeline
    name, or None if this process does not serve it (it may be async). Without a
    resolver, each run's pipeline is reloaded from its stored YAML ``source``.
    Waits whose timeout passed are answered with their default first (those runs
    resume here too). Returns when all have finished. ``subscribers`` get the events of every resumed
    run (metrics, spans, a dashboard's live view).
    """
    runner = runner or DurableRunner(store)
    await expire_waits(store, limit=limit)  # waits past their timeout take their default and resume below
    orphans = await store.orphaned_runs(limit=limit)
    charged = await store.sole_holders(orphans)  # decided before any takeover changes the holders
    recovering = _Recovering(store, pipelines_resolver, runner, list(subscribers))
    suspects: list[RunRecord] = []
    async with anyio.create_task_group() as tg:
        for record in orphans:
            if record.lease_owner is None:  # released by a worker that stopped cleanly
                tg.start_soon(recovering.one, record, False)
            elif record.id in charged and record.recoveries >= runner.max_recoveries:
                await recovering.bury(record)
            else:
                suspects.append(record)
    for record in sorted(suspects, key=lambda r: (r.recoveries, r.created_at)):
        await recovering.one(record, record.id in charged)
    return recovering.outcomes


class _Recovering:
    """One pass of :func:`recover_expired_runs`: resumes runs and collects outcomes."""

    def __init__(
        self,
        store: RunStore,
        resolver: PipelineResolver | None,
        runner: DurableRunner,
        subscribers: list[Subscriber],
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.runner = runner
        self.subscribers = subscribers
        self.outcomes: list[Recovery] = []

    def note(self, record: RunRecord, action: RecoveryAction, **kw: Any) -> None:
        self.outcomes.append(Recovery(record.id, record.pipeline, action, **kw))

    async def bury(self, record: RunRecord) -> None:
        deaths = record.recoveries + 1
        reason = (
            f"its worker died {deaths} times while executing it with no other run in flight "
            f"(last holder {record.lease_owner}; max_recoveries={self.runner.max_recoveries})"
        )
        await self.store.dead_letter(record.id, reason)
        self.note(record, RecoveryAction.DEAD_LETTERED, detail=reason)

    async def one(self, record: RunRecord, charge: bool) -> None:
        try:
            pipeline = await self.pipeline(record)
        except LegatoError as exc:
            self.note(record, RecoveryAction.ERROR, detail=str(exc))
            return
        if pipeline is None:
            self.note(record, RecoveryAction.UNKNOWN_PIPELINE)
            return
        try:
            result = await self.runner.resume(pipeline, record.id, subscribers=self.subscribers, charge=charge)
        except LeaseLost as exc:
            self.note(record, RecoveryAction.TAKEN, detail=str(exc))
        except StoreError as exc:
            finished_meanwhile = (await self.store.get_run(record.id)).terminal
            self.note(record, RecoveryAction.TAKEN if finished_meanwhile else RecoveryAction.ERROR, detail=str(exc))
        else:
            self.note(record, RecoveryAction.RESUMED, result=result)

    async def pipeline(self, record: RunRecord) -> Pipeline | None:
        if self.resolver is None:
            return await load_source(record)
        resolved = self.resolver(record.pipeline)
        return await resolved if inspect.isawaitable(resolved) else resolved


async def load_source(record: RunRecord) -> Pipeline | None:
    """The pipeline of ``record`` reloaded from its stored YAML ``source`` (None when
    the run was started from Python code and has no source)."""
    if not record.source:
        return None
    from legato.config import LegatoConfig
    from legato.spec import load_pipeline

    source = record.source

    def load() -> Pipeline:
        return load_pipeline(Path(source), config=LegatoConfig.load())

    return await anyio.to_thread.run_sync(load)

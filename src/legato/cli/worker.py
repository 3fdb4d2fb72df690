"""``legato worker``: claim queued runs and execute them (see docs/workers.md).

Exit codes: 0 after a drain (SIGTERM or Ctrl-C), 2 for invalid configuration or usage.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from legato.cli._app import app
from legato.cli._console import fail, new_console
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, open_store

if TYPE_CHECKING:
    from legato.config import LegatoConfig
    from legato.engine import Pipeline
    from legato.store import QueueSettings, QueuesSection, RunRecord, SchedulesSection

__all__ = ["worker"]

_err = new_console(stderr=True)


@app.command()
def worker(
    queue: list[str] = typer.Option(
        [], "--queue", "-q", help="Queue to serve (repeatable; default: every queue of the `queues:` section)."
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Runs this worker executes at once."),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    lease_ttl: float = typer.Option(30.0, "--lease-ttl", min=1.0, help="Seconds a run's lease lasts unrenewed."),
    grace: float = typer.Option(
        30.0,
        "--grace",
        min=0.0,
        help="On SIGTERM: seconds runs in flight get before going back on the queue.",
    ),
) -> None:
    """Claim queued runs and execute them durably until SIGTERM (then drain).

    Queue limits (`concurrency:`, `rate:`) come from the `queues:` section of
    legato.yaml and hold across every worker; pipelines come from its `pipelines:`
    section or, for runs enqueued with `legato run --queue`, from the file the run was
    started from. The `schedules:` of legato.yaml fire from every worker, once per tick."""

    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.server._runs import load_pipelines
    from legato.store import QueuesSection, SchedulesSection

    try:
        cfg = LegatoConfig.load(config)
        queues = cfg.section("queues", QueuesSection)
        schedules = cfg.section("schedules", SchedulesSection)
        pipelines = load_pipelines(cfg)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    names = list(dict.fromkeys(queue)) or list(queues.root)
    if not names:
        raise fail("no queue to serve: pass --queue NAME or declare queues in the `queues:` section of legato.yaml", 2)
    if any(not n.strip() or len(n) > 255 for n in names):
        raise fail(f"--queue: a queue name is 1 to 255 characters, got {names!r}", 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    plan = _Plan(names, queues, schedules, pipelines, cfg)
    run_loop(_serve, plan, database_url, concurrency, lease_ttl, grace)
    from legato.cli._interrupt import exit_now

    exit_now(0)  # a sync step stopped at the end of the grace may still hold its thread: bounded wait


@dataclass(frozen=True)
class _Plan:
    """What the worker serves, read from legato.yaml before the store opens."""

    names: list[str]
    queues: QueuesSection
    schedules: SchedulesSection
    pipelines: dict[str, Pipeline]
    cfg: LegatoConfig


async def _serve(plan: _Plan, database_url: str | None, concurrency: int, lease_ttl: float, grace: float) -> None:
    import anyio

    from legato.errors import ConfigError
    from legato.store import Scheduler, Worker

    settings = {n: plan.queues.root.get(n) for n in plan.names}
    async with open_store(database_url, create=True, migrate_in_child=True) as store:
        try:
            scheduler = (
                Scheduler(store, plan.schedules, plan.pipelines, queues=plan.queues) if plan.schedules.root else None
            )
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        w = Worker(
            store,
            settings,
            _resolver(plan.pipelines, plan.cfg),
            concurrency=concurrency,
            lease_ttl=lease_ttl,
            grace_s=grace,
            pipelines=plan.pipelines,
            scheduler=scheduler,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(w.serve)
            described = ", ".join(f"{n} ({_limits(settings[n])})" for n in plan.names)
            fires = f"; firing {len(plan.schedules.root)} schedules" if plan.schedules.root else ""
            _err.print(f"worker {w.runner.owner} serving {described}{fires}", soft_wrap=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _err.print(f"{signal.Signals(signum).name}: draining (grace {grace:g} s)", soft_wrap=True)
                    w.drain()
                    break
        _err.print(f"worker stopped after claiming {w.claimed} runs", soft_wrap=True)


def _limits(settings: QueueSettings | None) -> str:
    concurrency = settings.concurrency if settings is not None else None
    rate = f", rate {settings.rate}" if settings is not None and settings.rate else ""
    return f"concurrency {concurrency or 'unlimited'}{rate}"


def _resolver(pipelines: dict[str, Pipeline], cfg: LegatoConfig) -> Any:
    """A claimed run's pipeline: the configured one by name, else reloaded from the
    file it was enqueued from (with this worker's configuration)."""
    import anyio

    from legato.spec import load_pipeline

    async def resolve(record: RunRecord) -> Pipeline | None:
        known = pipelines.get(record.pipeline)
        if known is not None or not record.source:
            return known
        source = record.source
        return await anyio.to_thread.run_sync(lambda: load_pipeline(Path(source), config=cfg))

    return resolve

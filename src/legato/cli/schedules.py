"""``legato schedules list|pause|resume``: the ``schedules:`` of legato.yaml and their state.

The schedules are declared in legato.yaml; the store keeps whether each is paused and
its latest tick, so a pause or resume here holds for every ``legato worker`` at once.
Exit codes: 0, 1 for an unknown schedule, 2 for an invalid configuration or store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import fail, new_console, new_table
from legato.cli.runs import DATABASE_URL_HELP, open_store, operator
from legato.cli.runs._common import dump_json, when

if TYPE_CHECKING:
    from legato.store import QueuesSection, RunStore, SchedulesSection

__all__ = ["schedules_app"]

T = TypeVar("T")

schedules_app = typer.Typer(help="Schedules of legato.yaml: list, pause, resume.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

_CONFIG = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml).")
_DB = typer.Option(None, "--database-url", help=DATABASE_URL_HELP)
_NAME = typer.Argument(..., help="Schedule name (see `legato schedules list`).")


def _with_schedules(
    config: Path | None,
    database_url: str | None,
    action: Callable[[RunStore, SchedulesSection, QueuesSection], Awaitable[T]],
    *,
    create: bool = False,
) -> T:
    import anyio

    from legato.config import LegatoConfig
    from legato.errors import ConfigError, ScheduleNotFound
    from legato.store import QueuesSection, SchedulesSection

    try:
        cfg = LegatoConfig.load(config)
        section = cfg.section("schedules", SchedulesSection)
        queues = cfg.section("queues", QueuesSection)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None

    async def main() -> T:
        async with open_store(database_url, create=create) as store:
            return await action(store, section, queues)

    try:
        return anyio.run(main)
    except ScheduleNotFound as exc:
        raise fail(str(exc), 1) from None


@schedules_app.command("list")
def list_command(
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every schedule: pipeline, rule, queue, paused or not, next tick, latest run."""
    from dataclasses import asdict

    from legato.store import list_schedules

    views = _with_schedules(config, database_url, list_schedules)
    if as_json:
        dump_json([asdict(v) for v in views])
        return
    if not views:
        new_console().print("no schedules: declare them in the `schedules:` section of legato.yaml")
        return
    table = new_table("schedule", "pipeline", "rule", "queue", "state", "next tick", "last run")
    for v in views:
        state = f"paused by {v.paused_by}" if v.paused and v.paused_by else "paused" if v.paused else "active"
        last = f"{v.last_run_id} ({when(v.last_tick)})" if v.last_run_id else ""
        row = (v.name, v.pipeline, v.rule, v.queue, state, when(v.next_tick), last)
        table.add_row(*(escape(str(cell)) for cell in row))
    new_console().print(table)


@schedules_app.command("pause")
def pause(
    name: str = typer.Argument(..., help="Schedule name."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
) -> None:
    """Pause a schedule on every worker (no run is enqueued until it is resumed)."""
    _set(name, True, config, database_url)


@schedules_app.command("resume")
def resume(
    name: str = typer.Argument(..., help="Schedule name."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
) -> None:
    """Resume a paused schedule: it fires again from its next tick (the paused ones are skipped)."""
    _set(name, False, config, database_url)


def _set(name: str, paused: bool, config: Path | None, database_url: str | None) -> None:
    from legato.store import set_paused

    async def change(store: RunStore, section: SchedulesSection, _queues: QueuesSection) -> Any:
        return await set_paused(store, section, name, paused, by=f"legato schedules by {operator()}")

    _with_schedules(config, database_url, change, create=True)
    new_console().print(f"schedule {escape(name)} {'paused' if paused else 'resumed'}")

"""``legato runs resume``, ``cancel``, ``recover``, ``prune`` and ``erase``: acting on stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from legato.cli._loop import run_loop

if TYPE_CHECKING:
    from legato.engine import RunResult
    from legato.store import RunRecord
from legato.cli.runs._common import (
    DATABASE_URL_HELP,
    fail,
    load_pipeline_file,
    not_found,
    open_store,
    operator,
    parse_duration,
    report_result,
    runs_app,
)

__all__ = ["cancel", "erase", "prune", "recover", "resume", "who_cancels"]


@runs_app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Pipeline YAML (default: the file the run came from)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Take the run even if its lease looks live, and resume a cancelled or dead-lettered run.",
    ),
    allow_changed: bool = typer.Option(
        False, "--allow-changed", help="Resume even though the pipeline changed since the run started."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Resume a run after a crash or failure: finished steps are reused, the rest run.
    Ctrl-C cancels it, as on `legato run`."""

    from legato.cli._interrupt import Interrupt
    from legato.engine import RunControl
    from legato.errors import LeaseLost, PipelineChanged, RunNotFound, RunNotResumable, SpecError, StoreError
    from legato.store import DurableRunner, PayloadState, explain_payloads

    interrupt = Interrupt(RunControl(), run_id)

    async def main() -> RunResult:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(run_id)
            except RunNotFound as exc:
                raise not_found(exc) from None
            path = file or (Path(record.source) if record.source else None)
            if path is None:
                raise fail(f"run {record.id} was not started from a YAML file: pass --file PIPELINE.yaml", 2)
            pipeline = load_pipeline_file(path, config)
            interrupt.run_id = record.id
            if record.payloads == PayloadState.METADATA:
                typer.echo(f"{record.id}: {explain_payloads(record.payloads)}", err=True)
            try:
                with interrupt.installed():
                    return await DurableRunner(store).resume(
                        pipeline, record.id, force=force, allow_changed=allow_changed, control=interrupt.control
                    )
            except LeaseLost as exc:
                raise fail(f"{exc}: resume it after that, or with --force if that process is gone", 1) from None
            except PipelineChanged as exc:
                raise fail(f"{exc}. Start a new run, or resume with --allow-changed to keep them anyway", 2) from None
            except RunNotResumable as exc:
                hint = "" if exc.status == "succeeded" else ": resume it with --force once you mean to"
                raise fail(f"{exc}{hint}", 1) from None
            except StoreError as exc:
                raise fail(str(exc), 1) from None
            except SpecError as exc:
                raise fail(str(exc), 2) from None

    result = run_loop(main)
    report_result(result, as_json, interrupt)


@runs_app.command("cancel")
def cancel(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Cancel a run: its worker stops its steps within a second (a run nobody executes stops at once)."""

    from legato.errors import RunNotFound, StoreError

    async def main() -> RunRecord:
        async with open_store(database_url) as store:
            try:
                return await store.request_cancel(run_id, by=who_cancels())
            except RunNotFound as exc:
                raise not_found(exc) from None
            except StoreError as exc:
                raise fail(str(exc), 1) from None

    record = run_loop(main)
    if record.status == "cancelled":
        typer.echo(f"run {record.id} cancelled")
    else:
        typer.echo(f"run {record.id}: cancellation requested; {record.lease_owner} stops it within a second")


def who_cancels() -> str:
    """``legato runs cancel`` by ``user@host``: recorded as who cancelled the run."""
    return f"legato runs cancel by {operator()}"


@runs_app.command("recover")
def recover(
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    max_recoveries: int = typer.Option(3, "--max-recoveries", min=0, help="Dead-letter a run after this many."),
) -> None:
    """Resume every run whose worker died (expired lease); dead-letter the ones that keep dying."""

    from legato.store import DurableRunner, Recovery, recover_expired_runs

    async def main() -> list[Recovery]:
        async with open_store(database_url) as store:
            return await recover_expired_runs(store, runner=DurableRunner(store, max_recoveries=max_recoveries))

    outcomes = run_loop(main)
    for o in outcomes:
        status = f" -> {o.result.status}" if o.result is not None else ""
        typer.echo(f"{o.run_id} {o.pipeline}: {o.action}{status}{' (' + o.detail + ')' if o.detail else ''}")
    if not outcomes:
        typer.echo("no orphaned runs")
    failed = any(o.action == "error" or (o.result is not None and not o.result.ok) for o in outcomes)
    raise typer.Exit(1 if failed else 0)


@runs_app.command("prune")
def prune(
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        help="Delete finished runs older than this (e.g. 30d, 12h) instead of applying retention:.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted or reduced; change nothing."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Apply the retention: rules of legato.yaml (delete old runs, reduce older ones to
    metadata), or delete finished runs older than --older-than. Journal entries stay."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.store import RetentionConfig, RetentionReport, RetentionRule, apply_retention

    try:
        if older_than is not None:
            age_s = parse_duration(older_than)
            # A rule built here, not read from legato.yaml: "0s" (every finished run) is a fair
            # request on the command line, though a configured rule must keep runs a while.
            rules = RetentionConfig(default=RetentionRule.model_construct(keep_runs_days=age_s / 86_400))
        else:
            rules = LegatoConfig.load(config).section("retention", RetentionConfig)
    except (ValueError, ConfigError) as exc:
        raise fail(str(exc), 2) from None

    async def main() -> RetentionReport:
        async with open_store(database_url) as store:
            if older_than is not None and not dry_run:  # also drops gateway model calls that old
                return RetentionReport(await store.prune(older_than_s=age_s), 0)
            return await apply_retention(store, rules, dry_run=dry_run)

    report = run_loop(main)
    if older_than is not None and not dry_run:
        typer.echo(
            f"pruned {report.deleted} {'run' if report.deleted == 1 else 'runs'} finished more than {older_than} ago"
        )
        return
    verb = ("would delete", "would reduce") if dry_run else ("deleted", "reduced")
    runs = "run" if report.deleted == 1 else "runs"
    typer.echo(f"{verb[0]} {report.deleted} {runs}; {verb[1]} {report.expired} to metadata (payloads removed)")


@runs_app.command("erase")
def erase(
    subject: str = typer.Option(..., "--subject", help="The data subject (e.g. a customer id) whose data to erase."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Erase a data subject: the payloads of their runs, the journal entries about those
    runs and their response-cache entries (SQLite or Redis cache). Audited."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.server._retention import configured_cache, erase_everywhere
    from legato.store import ErasureReport

    try:
        cache = configured_cache(LegatoConfig.load(config))
    except ConfigError as exc:
        raise fail(str(exc), 2) from None

    async def main() -> ErasureReport:
        async with open_store(database_url) as store:
            try:
                return await erase_everywhere(store, subject, caches=[cache] if cache else [], actor="cli")
            finally:
                if cache is not None:
                    await cache.aclose()

    report = run_loop(main)
    typer.echo(
        f"erased the payloads of {report.runs} run{'s' if report.runs != 1 else ''}, "
        f"{report.journal_entries} journal entr{'ies' if report.journal_entries != 1 else 'y'} and "
        f"{report.cache_entries} cache entr{'ies' if report.cache_entries != 1 else 'y'}"
    )

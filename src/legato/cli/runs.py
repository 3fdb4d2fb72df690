"""``legato runs``: list, show, resume, cancel, recover and prune stored runs.

Also the durable path of ``legato run`` (:func:`stored_run`): the run is recorded
in the store (``./.legato/legato.db`` unless ``--database-url``), checkpointed
step by step, and can be resumed with ``legato runs resume RUN_ID`` after a crash.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import new_console, new_table, print_error, styled

if TYPE_CHECKING:
    from legato.cli._interrupt import Interrupt
    from legato.engine import Event, Pipeline, RunControl, RunResult, Subscriber
    from legato.errors import RunNotFound
    from legato.store import EventRecord, RunRecord, RunStore, StepRecord

__all__ = ["estimate_cost", "open_store", "parse_duration", "print_waiting", "stored_run"]

runs_app = typer.Typer(
    name="runs", help="Stored runs: list, show, resume, cancel, recover, prune.", no_args_is_help=True
)
app.add_typer(runs_app)

_err = new_console(stderr=True)
DATABASE_URL_HELP = (
    "Store database: a SQLite path, sqlite:///PATH or postgresql://HOST/DB (default ./.legato/legato.db)."
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w), e.g. 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _fail(message: str, code: int = 1) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


def _not_found(exc: RunNotFound) -> typer.Exit:
    """Exit 1 for an unknown run, 2 for a prefix that matches several (the message lists them)."""
    from legato.errors import AmbiguousRunId

    return _fail(str(exc), 2 if isinstance(exc, AmbiguousRunId) else 1)


@asynccontextmanager
async def open_store(
    database_url: str | None, *, create: bool = False, encryption_key: str | None = None
) -> AsyncIterator[RunStore]:
    """The run store, with store errors turned into CLI exits (2 for a bad URL, a
    foreign/damaged database or, unless ``create``, one that does not exist; 1 otherwise).

    Only commands that start work (``run``, ``journal add``, ``mcp``) create a store:
    a reader pointed at a mistyped path must say so rather than show an empty store.
    """
    from legato.errors import ConfigError, EncryptionKeyError, StoreCorrupt, StoreError, StoreNotFound
    from legato.store import RunStore

    try:
        store = RunStore(database_url, create=create, encryption_key=encryption_key)
        await store.open()
    except (ConfigError, EncryptionKeyError, StoreCorrupt, StoreNotFound) as exc:
        raise _fail(str(exc), 2) from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    try:
        yield store
    finally:
        await store.aclose()


async def stored_run(
    pipeline: Pipeline,
    inputs: dict[str, Any],
    *,
    subscribers: Iterable[Subscriber] = (),
    progress: Any = None,
    console: Console | None = None,
    database_url: str | None = None,
    idempotency_key: str | None = None,
    recall: bool = False,
    source: str | None = None,
    control: RunControl | None = None,
    run_id: str | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``pipeline`` durably for ``legato run``; ``progress`` is entered around the run,
    ``control`` cancels it (Ctrl-C), ``run_id`` names a new run.

    When ``idempotency_key`` names a run another live process is executing, ``wait``
    polls until it finishes and returns its result (taking the run over if its worker
    dies meanwhile); without ``wait`` the ``RUNNING`` result comes back at once.
    ``on_wait`` is told the id of the run waited for before the wait starts."""
    from legato.engine import RunStatus
    from legato.errors import IdempotencyConflict, StoreError
    from legato.store import DurableRunner

    console = console or new_console()
    started: list[str] = []

    def note_start(event: Event) -> None:
        if not started:
            started.append(event.run_id)

    async with open_store(database_url, create=True) as store:
        if recall:
            await print_recall(store, pipeline, inputs, console)
        runner = DurableRunner(store)

        async def submit() -> RunResult:
            return await runner.run(
                pipeline,
                inputs,
                idempotency_key=idempotency_key,
                subscribers=[note_start, *subscribers],
                source=source,
                estimated_cost=estimate_cost(pipeline),
                control=control,
                run_id=run_id,
            )

        try:
            with progress if progress is not None else nullcontext():
                result = await submit()
            if wait and result.status is RunStatus.RUNNING:
                if on_wait is not None:
                    on_wait(result.run_id)
                result = await _wait_for_other(result, submit, control)
            return result
        except IdempotencyConflict as exc:
            raise _fail(str(exc), 2) from None
        except StoreError as exc:
            resume = (
                f"; run {started[0]} keeps its finished steps: `legato runs resume {started[0]}`" if started else ""
            )
            raise _fail(f"{exc}{resume}") from None


_WAIT_POLL_S = (0.05, 1.0)  # first and longest pause between looks at a run executed elsewhere


async def _wait_for_other(
    result: RunResult, submit: Callable[[], Awaitable[RunResult]], control: RunControl | None
) -> RunResult:
    """Wait for the run another process executes under the same idempotency key.

    Each look submits again: a finished run returns its stored result, a live one
    ``RUNNING`` again, and one whose worker died is taken over and finished here."""
    import anyio

    from legato.engine import RunStatus

    _err.print(
        f"run {result.run_id} with this idempotency key is in progress in another process; "
        "waiting for its result (--no-wait returns at once)",
        soft_wrap=True,
    )
    pause = _WAIT_POLL_S[0]
    while result.status is RunStatus.RUNNING:
        if control is not None and control.cancelled:
            raise _fail(
                f"stopped waiting for run {result.run_id}; it goes on in the other process: "
                f"`legato runs show {result.run_id}`",
                130,
            )
        await anyio.sleep(pause)
        pause = min(pause * 1.5, _WAIT_POLL_S[1])
        result = await submit()
    return result


def estimate_cost(pipeline: Pipeline) -> float | None:
    """The pre-run cost estimate of a YAML pipeline's priced model calls (stored on the
    run; its reflection compares the real cost with it), or None when nothing is priced."""
    if pipeline.spec is None:
        return None
    from legato.cost import estimate_spec_cost

    try:
        plan = estimate_spec_cost(pipeline.spec)
    except (LookupError, TypeError, ValueError):
        return None  # an estimate is advisory: never a reason not to run
    return plan.total_usd if plan.total_usd > 0 else None


async def print_recall(store: RunStore, pipeline: Pipeline, inputs: dict[str, Any], console: Console) -> None:
    """Print the journal entries most related to this pipeline and these inputs."""
    from legato.store import Journal

    words = [pipeline.name.replace("_", " ").replace("-", " "), pipeline.description, *pipeline.steps]
    words += [str(v) for v in inputs.values() if isinstance(v, str | int | float) and len(str(v)) < 200]
    query = " ".join(w for w in words if w)
    journal = Journal(store)
    entries = await journal.search(query, limit=3, mode="text")
    if not entries:
        entries = await journal.recent(3, pipeline=pipeline.name)
    if not entries:
        console.print("[dim]journal: nothing recorded yet about this pipeline[/dim]")
        return
    console.print("[bold]journal: related entries[/bold]")
    for e in entries:
        console.print(f"  #{e.id} [bold]{escape(e.title)}[/bold] [dim]({_ago(e.created_at)}, {escape(e.author)})[/dim]")
        first = e.body.strip().splitlines()[0] if e.body.strip() else ""
        if first:
            console.print(f"      {escape(first[:160])}")


def _ago(at: float) -> str:
    delta = max(0.0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def _when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _record_dict(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "pipeline": r.pipeline,
        "status": r.status,
        "inputs": r.inputs,
        "outputs": r.outputs,
        "error": r.error,
        "failed_step": r.failed_step,
        "idempotency_key": r.idempotency_key,
        "tenant": r.tenant,
        "lease_owner": r.lease_owner,
        "lease_expires_at": r.lease_expires_at,
        "recoveries": r.recoveries,
        "dead_reason": r.dead_reason,
        "cancelled_by": r.cancelled_by,
        "cancel_requested_at": r.cancel_requested_at,
        "cost": r.cost,
        "version_hash": r.version_hash,
        "source": r.source,
        "rerun_of": r.rerun_of,
        "rerun_from": r.rerun_from,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    }


def _dump(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


@runs_app.command("list")
def list_runs(
    status: str | None = typer.Option(
        None,
        "--status",
        help="Only runs with this status: pending, queued, running, waiting, succeeded, failed, cancelled, dead "
        "or orphaned.",
    ),
    dead: bool = typer.Option(False, "--dead", help="Only dead-lettered runs (same as --status dead)."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="Only runs of this pipeline."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """List runs, newest first (--dead shows the dead-letter queue).

    The table shows each run's shortest unique id prefix (at least 8 characters), which
    every command taking a run id accepts; --json gives the full ids."""
    import difflib

    import anyio

    from legato.store import StoredStatus

    known = [*map(str, StoredStatus), "orphaned"]
    if status is not None and status not in known:
        hint = next(iter(difflib.get_close_matches(status, known, n=1)), None)
        raise _fail(
            f"unknown status {status!r}{f' (did you mean {hint!r}?)' if hint else ''}; one of: {', '.join(known)}",
            2,
        )
    only_orphans = status == "orphaned"
    wanted = "dead" if dead else ("running" if only_orphans else status)

    async def main() -> tuple[list[RunRecord], set[str], dict[str, str]]:
        async with open_store(database_url) as store:
            records = await store.list_runs(status=wanted, pipeline=pipeline, limit=limit)
            orphans = {r.id for r in await store.orphaned_runs()} if any(not r.terminal for r in records) else set()
            if only_orphans:
                records = [r for r in records if r.id in orphans]
            short = {} if as_json else await store.short_ids(r.id for r in records)
            return records, orphans, short

    records, orphans, short = anyio.run(main)
    if as_json:
        _dump([_record_dict(r) for r in records])
        return

    table = new_table(show_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("pipeline")
    table.add_column("status", no_wrap=True)
    for col in ("created", "duration", "recoveries", "detail"):
        table.add_column(col)
    for r in records:
        status = "orphaned" if r.id in orphans else r.status  # running, but its worker is gone
        duration = f"{r.finished_at - (r.started_at or r.created_at):.2f}s" if r.finished_at else ""
        detail = r.dead_reason or r.error or (f"key {r.idempotency_key}" if r.idempotency_key else "")
        table.add_row(
            short.get(r.id, r.id),
            escape(r.pipeline),
            styled(status),
            _when(r.created_at),
            duration,
            str(r.recoveries or ""),
            escape((detail or "")[:80]),
        )
    new_console().print(table if records else "[dim]no runs[/dim]")


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    events: bool = typer.Option(False, "--events", help="Also list the run's events."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Show a run: status, inputs, outputs, every step attempt and (--events) its events."""
    import anyio

    from legato.errors import RunNotFound

    async def main() -> tuple[Any, Any, Any]:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(run_id)
            except RunNotFound as exc:
                raise _not_found(exc) from None
            return record, await store.steps(record.id), await store.events(record.id)

    record, steps, evs = anyio.run(main)
    attempts = _attempts(steps, evs)
    if as_json:
        doc = _record_dict(record)
        doc["steps"] = attempts
        if events:
            doc["events"] = [{"type": e.type, "step": e.step, "at": e.at, "data": e.data} for e in evs]
        _dump(doc)
        return

    out = new_console()
    out.print(f"run [bold]{record.id}[/bold] · {escape(record.pipeline)} · {styled(record.status)}")
    out.print(f"created {_when(record.created_at)}, finished {_when(record.finished_at) or '-'}")
    if record.idempotency_key:
        out.print(f"idempotency key: {record.idempotency_key}")
    if record.lease_owner:
        out.print(f"lease: {record.lease_owner} until {_when(record.lease_expires_at)}")
    if record.recoveries:
        out.print(f"recoveries: {record.recoveries}")
    if record.dead_reason:
        out.print(f"[magenta]dead-lettered[/magenta]: {escape(record.dead_reason)}")
    request = record.cancel_request
    if request is not None:
        out.print(f"[yellow]{request.describe()}[/yellow]" + ("" if record.terminal else " (stopping)"))
    if record.error:
        out.print(f"[red]error[/red]: {escape(record.error)}")
    if record.rerun_of:
        out.print(f"re-run of {record.rerun_of} from step {escape(record.rerun_from or '?')}")
    latest = {s.step: s for s in steps}
    for name, s in latest.items():
        if s.status == "waiting" and str(record.status) == "waiting":
            request = s.meta.get("request") or {}
            how = "--approve or --reject" if request.get("kind") == "approval" else "--value JSON"
            out.print(f"waiting at {escape(name)}: {escape(str(request.get('question', '')))}", highlight=False)
            out.print(f"  answer: legato runs respond {record.id} {escape(name)} {how}", highlight=False)
    out.print("inputs: " + json.dumps(record.inputs, default=str)[:500], soft_wrap=True)
    table = new_table(show_edge=False)
    for col in ("step", "attempt", "status", "duration ms", "model", "detail"):
        table.add_column(col)
    for a in attempts:
        detail = a["error"] or json.dumps(a["output"], default=str)[:60]
        dur = "" if a["duration_s"] is None else f"{a['duration_s'] * 1000:.1f}"
        row = (escape(a["step"]), str(a["attempt"]), styled(a["status"]), dur, escape(a["model"] or ""), escape(detail))
        table.add_row(*row)
    out.print(table)
    if record.outputs is not None:
        out.print_json(json.dumps(record.outputs, default=str))
    for e in evs if events else ():
        out.print(f"[dim]{_when(e.at)}[/dim] {e.type} {e.step or ''} {json.dumps(e.data, default=str)[:100]}")


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
    import anyio

    from legato.cli._interrupt import Interrupt
    from legato.engine import RunControl
    from legato.errors import LeaseLost, PipelineChanged, RunNotFound, RunNotResumable, SpecError, StoreError
    from legato.store import DurableRunner

    interrupt = Interrupt(RunControl(), run_id)

    async def main() -> RunResult:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(run_id)
            except RunNotFound as exc:
                raise _not_found(exc) from None
            path = file or (Path(record.source) if record.source else None)
            if path is None:
                raise _fail(f"run {record.id} was not started from a YAML file: pass --file PIPELINE.yaml", 2)
            pipeline = _load_pipeline(path, config)
            interrupt.run_id = record.id
            try:
                with interrupt.installed():
                    return await DurableRunner(store).resume(
                        pipeline, record.id, force=force, allow_changed=allow_changed, control=interrupt.control
                    )
            except LeaseLost as exc:
                raise _fail(f"{exc}: resume it after that, or with --force if that process is gone") from None
            except PipelineChanged as exc:
                raise _fail(f"{exc}. Start a new run, or resume with --allow-changed to keep them anyway", 2) from None
            except RunNotResumable as exc:
                hint = "" if exc.status == "succeeded" else ": resume it with --force once you mean to"
                raise _fail(f"{exc}{hint}") from None
            except StoreError as exc:
                raise _fail(str(exc)) from None
            except SpecError as exc:
                raise _fail(str(exc), 2) from None

    result = anyio.run(main)
    _report(result, as_json, interrupt)


def _attempts(steps: list[StepRecord], evs: list[EventRecord]) -> list[dict[str, Any]]:
    """Every attempt of every step, in the order they ended: the stored attempts plus
    the ones the step's retry policy retried within a run (``StepRetried`` events)."""
    rows = [
        (
            s.finished_at or 0.0,
            {
                "step": s.step,
                "attempt": s.attempt,
                "status": s.status,
                "output": s.output,
                "error": f"{s.error_type}: {s.error}" if s.error_type else None,
                "duration_s": s.duration_s,
                "model": s.model,
                "cost": s.cost,
            },
        )
        for s in steps
    ]
    for e in evs:
        if e.type == "StepRetried" and e.step:
            error = f"{e.data.get('error_type', 'Error')}: {e.data.get('message', '')}"
            row = {"step": e.step, "attempt": e.data.get("attempt"), "status": "retried", "output": None}
            rows.append((e.at, {**row, "error": error, "duration_s": None, "model": None, "cost": None}))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def _load_pipeline(path: Path, config: Path | None) -> Pipeline:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import load_pipeline

    try:
        return load_pipeline(path, config=LegatoConfig.load(config, spec=path))
    except (ConfigError, SpecError) as exc:
        raise _fail(str(exc), 2) from None


def _report(result: RunResult, as_json: bool, interrupt: Interrupt) -> None:
    from legato.cli._interrupt import EXIT_INTERRUPTED, exit_now

    if as_json:
        _dump(result.to_dict())
    else:
        out = new_console()
        if result.ok:
            out.print_json(json.dumps(result.result, default=str))
            out.print(f"[green]succeeded[/green] run {result.run_id} in {result.duration_s:.3f}s")
        elif result.waiting:
            print_waiting(out, result)
        else:
            out.print(f"[red]{result.status}[/red] run {result.run_id}: {escape(result.error or '')}")
    code = 0 if result.ok or result.waiting else 1
    if interrupt.interrupted and str(result.status) == "cancelled":
        _err.print(interrupt.resume_hint(result.run_id), soft_wrap=True)
        code = EXIT_INTERRUPTED
    exit_now(code)  # abandoned sync steps delay the exit a bounded time
    raise typer.Exit(code)


def print_waiting(out: Console, result: RunResult) -> None:
    """A paused run: each question, and the command that answers it."""
    out.print(f"[yellow]waiting[/yellow] run {result.run_id}: paused for an answer (no process holds it)")
    for step, request in result.waiting.items():
        kind = request.get("kind", "answer")
        how = "--approve or --reject" if kind == "approval" else "--value JSON"
        out.print(f"  {escape(step)} ({kind}): {escape(str(request.get('question', '')))}", highlight=False)
        out.print(f"  answer: legato runs respond {result.run_id} {escape(step)} {how}", highlight=False)


@runs_app.command("cancel")
def cancel(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Cancel a run: its worker stops its steps within a second (a run nobody executes stops at once)."""
    import anyio

    from legato.errors import RunNotFound, StoreError

    async def main() -> RunRecord:
        async with open_store(database_url) as store:
            try:
                return await store.request_cancel(run_id, by=who_cancels())
            except RunNotFound as exc:
                raise _not_found(exc) from None
            except StoreError as exc:
                raise _fail(str(exc)) from None

    record = anyio.run(main)
    if record.status == "cancelled":
        typer.echo(f"run {record.id} cancelled")
    else:
        typer.echo(f"run {record.id}: cancellation requested; {record.lease_owner} stops it within a second")


def who_cancels() -> str:
    """``legato runs cancel`` by ``user@host``: recorded as who cancelled the run."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "uid " + str(os.getuid()) if hasattr(os, "getuid") else "unknown user"
    return f"legato runs cancel by {user}@{socket.gethostname()}"


@runs_app.command("recover")
def recover(
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    max_recoveries: int = typer.Option(3, "--max-recoveries", min=0, help="Dead-letter a run after this many."),
) -> None:
    """Resume every run whose worker died (expired lease); dead-letter the ones that keep dying."""
    import anyio

    from legato.store import DurableRunner, Recovery, recover_expired_runs

    async def main() -> list[Recovery]:
        async with open_store(database_url) as store:
            return await recover_expired_runs(store, runner=DurableRunner(store, max_recoveries=max_recoveries))

    outcomes = anyio.run(main)
    for o in outcomes:
        status = f" -> {o.result.status}" if o.result is not None else ""
        typer.echo(f"{o.run_id} {o.pipeline}: {o.action}{status}{' (' + o.detail + ')' if o.detail else ''}")
    if not outcomes:
        typer.echo("no orphaned runs")
    failed = any(o.action == "error" or (o.result is not None and not o.result.ok) for o in outcomes)
    raise typer.Exit(1 if failed else 0)


@runs_app.command("prune")
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Delete finished runs older than this (e.g. 30d, 12h)."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Delete finished runs (with their steps and events) older than a duration. Journal entries stay."""
    import anyio

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None

    async def main() -> int:
        async with open_store(database_url) as store:
            return await store.prune(older_than_s=seconds)

    n = anyio.run(main)
    typer.echo(f"pruned {n} run{'s' if n != 1 else ''} finished more than {older_than} ago")

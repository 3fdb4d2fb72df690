"""``legato runs list`` and ``legato runs show``: reading stored runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from legato.cli._console import new_console, new_table, styled
from legato.cli._loop import run_loop

if TYPE_CHECKING:
    from legato.store import EventRecord, RunRecord, StepRecord
from legato.cli.runs._common import DATABASE_URL_HELP, dump_json, fail, not_found, open_store, runs_app, when

__all__ = ["list_runs", "show"]


def _record_dict(r: RunRecord) -> dict[str, Any]:
    """Every stored field of a run but its request hash (an internal idempotency digest)."""
    data = asdict(r)
    data.pop("request_hash")
    data["tags"] = list(r.tags)
    return data


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
    search: str = typer.Option(
        "", "--search", "-q", help="Only runs holding these words in their inputs, outputs or error (or an id prefix)."
    ),
    tag: list[str] = typer.Option([], "--tag", help="Only runs carrying this tag (repeatable: all must match)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """List runs, newest first (--dead shows the dead-letter queue).

    The table shows each run's shortest unique id prefix (at least 8 characters), which
    every command taking a run id accepts; --json gives the full ids."""
    import difflib

    from legato.store import RunFilter, StoredStatus
    from legato.store._search import check_tags

    known = [*map(str, StoredStatus), "orphaned"]
    if status is not None and status not in known:
        hint = next(iter(difflib.get_close_matches(status, known, n=1)), None)
        raise fail(
            f"unknown status {status!r}{f' (did you mean {hint!r}?)' if hint else ''}; one of: {', '.join(known)}",
            2,
        )
    only_orphans = status == "orphaned"
    wanted = "dead" if dead else ("running" if only_orphans else status)
    try:
        where = RunFilter(text=search, tags=check_tags(tag))
    except ValueError as exc:
        raise fail(f"--tag: {exc}", 2) from None

    async def main() -> tuple[list[RunRecord], set[str], dict[str, str]]:
        async with open_store(database_url) as store:
            records = await store.list_runs(where, status=wanted, pipeline=pipeline, limit=limit)
            orphans = {r.id for r in await store.orphaned_runs()} if any(not r.terminal for r in records) else set()
            if only_orphans:
                records = [r for r in records if r.id in orphans]
            short = {} if as_json else await store.short_ids(r.id for r in records)
            return records, orphans, short

    records, orphans, short = run_loop(main)
    if as_json:
        dump_json([_record_dict(r) for r in records])
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
            when(r.created_at),
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

    from legato.errors import RunNotFound
    from legato.store import explain_payloads

    async def main() -> tuple[Any, Any, Any]:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(run_id)
            except RunNotFound as exc:
                raise not_found(exc) from None
            return record, await store.steps(record.id), await store.events(record.id)

    record, steps, evs = run_loop(main)
    attempts = _attempts(steps, evs)
    if as_json:
        doc = _record_dict(record)
        doc["steps"] = attempts
        if events:
            doc["events"] = [{"type": e.type, "step": e.step, "at": e.at, "data": e.data} for e in evs]
        dump_json(doc)
        return

    out = new_console()
    out.print(f"run [bold]{record.id}[/bold] · {escape(record.pipeline)} · {styled(record.status)}")
    out.print(f"created {when(record.created_at)}, finished {when(record.finished_at) or '-'}")
    if record.idempotency_key:
        out.print(f"idempotency key: {record.idempotency_key}")
    if record.lease_owner:
        out.print(f"lease: {record.lease_owner} until {when(record.lease_expires_at)}")
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
    gone = explain_payloads(record.payloads)
    if gone:
        out.print(f"[yellow]{gone}[/yellow]", highlight=False)
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
        out.print(f"[dim]{when(e.at)}[/dim] {e.type} {e.step or ''} {json.dumps(e.data, default=str)[:100]}")


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

"""``legato journal``: write, search and read the journal (search before work, reflect after)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import fail, new_console, read_stdin
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, open_store

if TYPE_CHECKING:
    from legato.store import JournalEntry

__all__ = ["journal_app"]

journal_app = typer.Typer(name="journal", help="The journal: add, search, recent, show.", no_args_is_help=True)
app.add_typer(journal_app)

_err = new_console(stderr=True)


def _print_entries(entries: list[JournalEntry], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps([e.to_dict() for e in entries], indent=2) + "\n")
        return
    out = new_console()
    if not entries:
        out.print("[dim]no entries[/dim]")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created_at))
        tags = f" [cyan]{escape(' '.join('#' + t for t in e.tags))}[/cyan]" if e.tags else ""
        out.print(f"[bold]#{e.id}[/bold] {escape(e.title)} [dim]({when}, {escape(e.author)})[/dim]{tags}")
        first = e.body.strip().splitlines()[0] if e.body.strip() else ""
        if first:
            out.print(f"    {escape(first[:200])}")


@journal_app.command("add")
def add(
    title: str = typer.Argument(..., help="One line: what was learned."),
    body: str | None = typer.Option(None, "--body", "-b", help="The details (default: read from stdin when piped)."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Tag (repeatable)."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="The pipeline it concerns."),
    run_id: str | None = typer.Option(None, "--run", help="The run it concerns."),
    as_json: bool = typer.Option(False, "--json", help="Print the entry as JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Write an entry (author: human)."""

    from legato.store import Journal

    text = body if body is not None else ("" if sys.stdin.isatty() else read_stdin())
    if not title.strip():
        raise fail("the title must not be empty", 2)

    async def main() -> JournalEntry:
        async with open_store(database_url, create=True) as store:
            return await Journal(store).add(title, text, tags=tag, pipeline=pipeline, run_id=run_id)

    entry = run_loop(main)
    if as_json:
        sys.stdout.write(json.dumps(entry.to_dict(), indent=2) + "\n")
    else:
        typer.echo(f"added journal entry #{entry.id}")


@journal_app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for, in plain words."),
    limit: int = typer.Option(5, "--limit", "-n", min=1, help="How many entries."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="Only entries about this pipeline."),
    semantic: bool = typer.Option(
        False, "--semantic", help="Also rank by meaning with the local embedding model (hybrid search)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Search the journal, best match first."""

    from legato.errors import StoreError
    from legato.store import Journal, LocalEmbedder

    async def main() -> list[JournalEntry]:
        async with open_store(database_url) as store:
            journal = Journal(store, embedder=LocalEmbedder() if semantic else None)
            try:
                return await journal.search(query, limit=limit, pipeline=pipeline)
            except StoreError as exc:
                raise fail(str(exc), 1) from None

    _print_entries(run_loop(main), as_json)


@journal_app.command("recent")
def recent(
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many entries."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="Only entries about this pipeline."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """The newest entries."""

    from legato.store import Journal

    async def main() -> list[JournalEntry]:
        async with open_store(database_url) as store:
            return await Journal(store).recent(limit, pipeline=pipeline)

    _print_entries(run_loop(main), as_json)


@journal_app.command("show")
def show(
    entry_id: int = typer.Argument(..., help="Entry number."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
) -> None:
    """Print one entry in full."""

    from legato.errors import StoreError
    from legato.store import Journal

    async def main() -> JournalEntry:
        async with open_store(database_url) as store:
            try:
                return await Journal(store).get(entry_id)
            except StoreError as exc:
                raise fail(str(exc), 1) from None

    entry = run_loop(main)
    if as_json:
        sys.stdout.write(json.dumps(entry.to_dict(), indent=2) + "\n")
        return
    out = new_console()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created_at))
    out.print(f"[bold]#{entry.id} {escape(entry.title)}[/bold]")
    meta: list[Any] = [when, entry.author]
    if entry.pipeline:
        meta.append(f"pipeline {entry.pipeline}")
    if entry.run_id:
        meta.append(f"run {entry.run_id}")
    if entry.tags:
        meta.append(" ".join("#" + t for t in entry.tags))
    out.print("[dim]" + escape(" · ".join(map(str, meta))) + "[/dim]")
    out.print(entry.body, markup=False)

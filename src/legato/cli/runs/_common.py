"""What the ``legato runs`` commands (and ``run``, ``rerun``, ``respond``) share: the
``runs`` group, the store opener, the pipeline loader and how a result is reported."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import fail, new_console
from legato.cli._load import load_pipeline_file

if TYPE_CHECKING:
    from legato.cli._interrupt import Interrupt
    from legato.engine import RunResult
    from legato.errors import RunNotFound
    from legato.store import RunStore

__all__ = [
    "DATABASE_URL_HELP",
    "dump_json",
    "err_console",
    "fail",
    "load_pipeline_file",
    "not_found",
    "open_store",
    "operator",
    "parse_duration",
    "print_waiting",
    "report_result",
    "runs_app",
    "when",
]

runs_app = typer.Typer(
    name="runs", help="Stored runs: list, show, resume, cancel, recover, prune, erase.", no_args_is_help=True
)
app.add_typer(runs_app)

err_console = new_console(stderr=True)
DATABASE_URL_HELP = (
    "Store database: a SQLite path, sqlite:///PATH or postgresql://HOST/DB "
    "(default $LEGATO_DATABASE_URL, store.url of legato.yaml, ./.legato/legato.db)."
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w), e.g. 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def operator() -> str:
    """``user@host`` of whoever runs this command (recorded with a cancel or a pause)."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "uid " + str(os.getuid()) if hasattr(os, "getuid") else "unknown user"
    return f"{user}@{socket.gethostname()}"


def not_found(exc: RunNotFound) -> typer.Exit:
    """Exit 1 for an unknown run, 2 for a prefix that matches several (the message lists them)."""
    from legato.errors import AmbiguousRunId

    return fail(str(exc), 2 if isinstance(exc, AmbiguousRunId) else 1)


@asynccontextmanager
async def open_store(
    database_url: str | None,
    *,
    create: bool = False,
    encryption_key: str | None = None,
    migrate_in_child: bool = False,
) -> AsyncIterator[RunStore]:
    """The run store, with store errors turned into CLI exits (2 for a bad URL, a
    foreign/damaged database or, unless ``create``, one that does not exist; 1 otherwise).

    Only commands that start work (``run``, ``journal add``, ``mcp``) create a store:
    a reader pointed at a mistyped path must say so rather than show an empty store.
    ``migrate_in_child``: for the commands that serve for long (``worker``, ``mcp``), a
    store to create or upgrade is migrated by a child process (see ``RunStore.open``).
    """
    from legato.errors import ConfigError, EncryptionKeyError, StoreCorrupt, StoreError, StoreNotFound
    from legato.store import RunStore

    try:
        store = RunStore(database_url, create=create, encryption_key=encryption_key)
        await store.open(migrate_in_child=migrate_in_child)
    except (ConfigError, EncryptionKeyError, StoreCorrupt, StoreNotFound) as exc:
        raise fail(str(exc), 2) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    try:
        yield store
    finally:
        await store.aclose()


def when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def dump_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def report_result(result: RunResult, as_json: bool, interrupt: Interrupt) -> None:
    from legato.cli._interrupt import EXIT_INTERRUPTED, exit_now

    if as_json:
        dump_json(result.to_dict())
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
        err_console.print(interrupt.resume_hint(result.run_id), soft_wrap=True)
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

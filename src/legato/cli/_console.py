"""The CLI's consoles: terminal output fits the terminal, anything else is never wrapped.

On a terminal Rich adapts to its width. Anywhere else (a pipe, a file, a CI log)
Rich assumes 80 columns: error messages break mid-sentence, ``plan`` lines wrap and
tables squeeze names to ``entiti…``. Off a terminal these consoles are unbounded
instead, so every line comes out whole, and :func:`new_table` drops the box drawing:
tables keep their natural width as plain aligned text a script can cut. Text printed with them is soft-wrapped on a
terminal too: the terminal folds a long error, nothing inserts line breaks into it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TextIO, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

E = TypeVar("E", bound=StrEnum)

__all__ = ["STATUS_STYLE", "UNBOUNDED", "fail", "new_console", "new_table", "print_error", "read_stdin", "styled"]

UNBOUNDED = 1_000_000  # columns: wider than any line legato prints

STATUS_STYLE = {  # one palette for run and step statuses, in every command
    "succeeded": "green",
    "failed": "red",
    "dead": "magenta",
    "cancelled": "yellow",
    "orphaned": "yellow",
    "retried": "yellow",
    "running": "cyan",
    "waiting": "blue",
    "pending": "dim",
    "queued": "dim",
    "skipped": "dim",
}


def styled(status: str) -> str:
    """``status`` as markup in its palette colour (plain text when it has none)."""
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def new_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) following the rules of the module docstring."""
    terminal = _is_terminal(sys.stderr if stderr else sys.stdout)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if terminal else UNBOUNDED)


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr ("error" in red on a terminal). The message is plain
    text, never markup: ``list[str]`` or ``[/]`` in it print as written."""
    new_console(stderr=True).print(Text.assemble(("error", "red"), ": ", message))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise (2: the user's mistake)."""
    print_error(message)
    return typer.Exit(code)


def enum_parser(enum: type[E], option: str) -> Callable[[str], E]:
    """The ``parser=`` of an option taking one value of a ``StrEnum``: the member comes
    back; a typo is the usual one-line error with a suggestion (exit 2)."""

    def parse(value: str) -> E:
        if isinstance(value, enum):
            return value
        try:
            return enum(value)
        except ValueError:
            import difflib

            choices = [m.value for m in enum]
            match = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise fail(f"{option} must be one of {', '.join(choices)}, got {value!r}{hint}", 2) from None

    return parse


def read_stdin() -> str:
    """Standard input as text, without the line break(s) that end it (``echo`` and a
    heredoc add one; the shell's ``$(...)`` drops them the same way)."""
    return sys.stdin.read().rstrip("\r\n")


def new_table(*headers: str, **options: Any) -> Table:
    """A rich ``Table``; off a terminal, without box drawing (plain aligned columns)."""
    if not _is_terminal(sys.stdout):
        options.update(box=None, show_edge=False, pad_edge=False)
    return Table(*headers, **options)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False

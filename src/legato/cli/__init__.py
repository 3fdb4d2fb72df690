"""The ``legato`` command line (typer + rich).

Exit codes: 0 success, 1 the run (or operation) failed, 2 invalid spec, config or usage.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.core
import typer.main

# Command modules register themselves on `app` when imported (one module per group).
# e.g. `from legato.cli import run as _run` below this line.
from legato.cli import analyze as _analyze  # noqa: F401
from legato.cli import bench as _bench  # noqa: F401
from legato.cli import health as _health  # noqa: F401
from legato.cli import journal as _journal  # noqa: F401
from legato.cli import keys as _keys  # noqa: F401
from legato.cli import mcp as _mcp  # noqa: F401
from legato.cli import models as _models  # noqa: F401
from legato.cli import rerun as _rerun  # noqa: F401
from legato.cli import respond as _respond  # noqa: F401
from legato.cli import run as _run  # noqa: F401
from legato.cli import runs as _runs  # noqa: F401
from legato.cli import schedules as _schedules  # noqa: F401
from legato.cli import serve as _serve  # noqa: F401
from legato.cli import store as _store  # noqa: F401
from legato.cli import worker as _worker  # noqa: F401
from legato.cli._app import app


def main() -> None:
    from legato.cli._console import print_error
    from legato.errors import EncryptionKeyError

    try:
        command()(prog_name="legato")
    except KeyboardInterrupt:
        sys.exit(130)
    except EncryptionKeyError as exc:  # a sealed value read without its key, from any command
        print_error(str(exc))
        sys.exit(2)


def command() -> typer.core.TyperGroup:
    """The click command tree of :data:`app`, with flags shown without a type in
    ``--help`` (typer labels every flag ``<bool>``, as if it took a value)."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    _untype_flags(root)
    return root


def _untype_flags(cmd: Any) -> None:
    help_option = cmd.get_help_option(typer._click.Context(cmd))  # cached on the command
    for param in [*cmd.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, typer.core.TyperOption) and param.is_flag:
            param.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _untype_flags(sub)


__all__ = ["app", "command", "main"]

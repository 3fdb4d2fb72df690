"""The root typer application. Command modules register on it; keep their
module-level imports light (typer, rich) and import heavy parts inside commands."""

from __future__ import annotations

import typer

from legato._version import __version__

app = typer.Typer(
    name="legato",
    help="Production AI orchestration: parallel pipelines, one model interface, a gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"legato {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """legato command line."""

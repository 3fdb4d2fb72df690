"""The one way a command loads a pipeline: :func:`load_pipeline_file`.

A spec file or ``module:pipeline``, with the ``legato.yaml`` found for it. A mistake
in either is the user's: printed (a spec's issues one per line, with their
``file:line:column``) and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from legato.cli._console import fail, new_console, print_error

if TYPE_CHECKING:
    from legato.engine import Pipeline
    from legato.errors import SpecError

__all__ = ["fail_spec", "load_pipeline_file"]


def fail_spec(exc: SpecError) -> typer.Exit:
    """Print each issue of a spec error and a count; return the exit (2) to raise."""
    for issue in exc.issues:
        print_error(str(issue))
    n = len(exc.issues)
    new_console(stderr=True).print(f"{n} error{'s' if n != 1 else ''}", style="red")
    return typer.Exit(2)


def load_pipeline_file(file: Path, config: Path | None, *, check_secrets: bool = False) -> Pipeline:
    """Load ``file`` with the config found for it (``config``, else beside the file, else
    ``./legato.yaml``); ``check_secrets`` when the pipeline is about to run (or ``--strict``)."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import load_pipeline

    try:
        return load_pipeline(file, config=LegatoConfig.load(config, spec=file), check_secrets=check_secrets)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    except SpecError as exc:
        raise fail_spec(exc) from None

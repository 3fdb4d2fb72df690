"""The ``legato`` command line (typer + rich).

Exit codes: 0 success, 1 the run (or operation) failed, 2 invalid spec, config or usage.
"""

from __future__ import annotations

import sys

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
from legato.cli import serve as _serve  # noqa: F401
from legato.cli import store as _store  # noqa: F401
from legato.cli import worker as _worker  # noqa: F401
from legato.cli._app import app


def main() -> None:
    from legato.cli._console import print_error
    from legato.errors import EncryptionKeyError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except EncryptionKeyError as exc:  # a sealed value read without its key, from any command
        print_error(str(exc))
        sys.exit(2)


__all__ = ["app", "main"]

"""The schema check and upgrade of :func:`legato.store._database.migrate` in a
short-lived child process, so that a long-lived serving process never imports alembic.

Alembic, with Mako and Pygments, costs a process about 10 MB that it keeps for its
lifetime (removing the modules from ``sys.modules`` gives nothing back). A store at the
newest revision is recognised without it; a new or older one needs it once. A process
that serves for days (``legato serve``, ``legato worker``, ``legato mcp``) hands that
once to a child: ``sys.executable -P -m legato._store_upgrade`` (decision 0050).

The protocol, one line each way:

- the parent writes one JSON object on the child's stdin: ``target`` (the URL to
  connect to, as :func:`~legato.store._database.prepare` made it), ``url`` (the
  store's URL, which error messages name), ``create`` and ``readonly``. The URL goes
  through the pipe, not the command line, where other users could read a PostgreSQL
  password in the process list.
- the child runs the same ``migrate`` as the parent would (the same lock: the SQLite
  write lock, the PostgreSQL advisory lock; so processes opening a new database at
  once still migrate it exactly once) and writes one JSON object as the last line of
  its stdout: ``{"upgraded": true|false}`` with exit status 0, or ``{"error": CLASS,
  "message": TEXT}`` with exit status 1 for a store error, ``CLASS`` one of
  :data:`ERRORS` (another store error is reported as ``StoreError``). The parent raises
  that class with that message.
- anything else (no reply, another status, a crash, a signal) is a
  :class:`~legato.errors.StoreError` naming the exit status and the end of the child's
  stderr, with the URL's password blanked out. No failure is swallowed.

The child runs in the parent's working directory (a relative SQLite path means the
same file), with the parent's environment, and imports the parent's own legato (its
directory is put first on ``PYTHONPATH`` unless it is an installed one, which the same
interpreter finds anyway); ``-P`` keeps the working directory itself off the child's
module path. It runs in a session of its own: a Ctrl-C at the terminal reaches the
parent only, which, when cancelled while the child runs, kills the child and waits for
it, so no child outlives the call.

This module sits outside ``legato.store`` and the child registers that package without
running its ``__init__``: the child needs only ``_database``, ``_schema`` and the
migrations, while the package's ``__init__`` imports the whole store (runner, engine,
configuration), which took a third of the child's CPU time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import sysconfig
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from anyio.abc import ByteReceiveStream

from legato.errors import StoreCorrupt, StoreError, StoreFull, StoreNotFound

__all__ = ["ERRORS", "migrate_in_child"]

MODULE = "legato._store_upgrade"
ERRORS: dict[str, type[StoreError]] = {c.__name__: c for c in (StoreError, StoreCorrupt, StoreNotFound, StoreFull)}
_TAIL_CHARS = 1000  # how much of the child's stderr an unexpected failure quotes


async def migrate_in_child(target: str, url: str, *, create: bool, readonly: bool) -> bool:
    """Run ``migrate`` on the database of ``url`` (connecting to ``target``) in a child
    process; whether it created or upgraded the schema. Raises what ``migrate`` would."""
    from legato.store._database import _describe

    request = json.dumps({"target": target, "url": url, "create": create, "readonly": readonly}) + "\n"
    try:
        process = await anyio.open_process(
            [sys.executable, "-P", "-m", MODULE], cwd=os.getcwd(), env=child_environment(), start_new_session=True
        )
    except OSError as exc:  # no interpreter at sys.executable, a working directory deleted, no processes left
        raise StoreError(
            f"{_describe(url)}: cannot start a child process to check and upgrade its schema: {exc}"
        ) from exc
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = bytearray(), bytearray()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process.stdout, out)
            tg.start_soon(_drain, process.stderr, err)
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await process.stdin.send(request.encode())  # a child that died first: its status says why
            await process.stdin.aclose()
        status = await process.wait()
    finally:  # cancelled (Ctrl-C, shutdown) or failed: the child does not outlive the call
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.aclose()
    return outcome(url, status, bytes(out), bytes(err))


def child_environment() -> dict[str, str]:
    """The parent's environment, with the directory of the parent's legato first on
    ``PYTHONPATH`` unless it is where this interpreter installs packages."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent  # the directory holding the package legato
    installed = {Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    return env


async def _drain(stream: ByteReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


def outcome(url: str, status: int, out: bytes, err: bytes) -> bool:
    """What the child's exit ``status`` and output mean: whether it upgraded, or the
    error it reported, raised; anything unexpected is a :class:`StoreError`."""
    from legato.store._database import _describe

    reply = _last_json_line(out)
    if reply is not None:
        if status == 0 and isinstance(reply.get("upgraded"), bool):
            return bool(reply["upgraded"])
        error, message = reply.get("error"), reply.get("message")
        if status == 1 and isinstance(error, str) and error in ERRORS and isinstance(message, str):
            raise ERRORS[error](message)
    tail = _hide_password(err.decode(errors="replace"), url).strip()[-_TAIL_CHARS:]
    raise StoreError(
        f"{_describe(url)}: checking and upgrading its schema in a child process failed ({_exit(status)})"
        + (f"; its stderr ends: {tail}" if tail else "; it wrote nothing on stderr")
    )


def _last_json_line(out: bytes) -> dict[str, Any] | None:
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        return None
    try:
        reply = json.loads(lines[-1])
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _hide_password(text: str, url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    for secret in (parsed.password, parsed.query.get("password")):
        for form in {str(secret), quote(str(secret), safe="")} if secret else ():
            text = text.replace(form, "***")
    return text


# -- the child -------------------------------------------------------------------


def main() -> int:
    """Read the request from stdin, migrate, write the reply as the last line of stdout."""
    _bare_store_package()
    from legato.store._database import connect, migrate

    request = json.loads(sys.stdin.readline())

    async def run() -> bool:
        readonly = bool(request["readonly"])
        engine = connect(str(request["target"]), readonly=readonly)
        try:
            return await migrate(engine, str(request["url"]), create=bool(request["create"]), readonly=readonly)
        finally:
            await engine.dispose()

    try:
        reply: dict[str, Any] = {"upgraded": anyio.run(run)}
    except StoreError as exc:
        reply = {"error": type(exc).__name__ if type(exc).__name__ in ERRORS else "StoreError", "message": str(exc)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 1 if "error" in reply else 0


def _bare_store_package() -> None:
    """Make ``legato.store`` importable as a package without running its ``__init__``."""
    spec = importlib.util.find_spec("legato.store")
    assert spec is not None
    sys.modules["legato.store"] = importlib.util.module_from_spec(spec)


if __name__ == "__main__":
    sys.exit(main())

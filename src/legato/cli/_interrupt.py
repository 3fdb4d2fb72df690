"""Ctrl-C on ``legato run``, and not waiting forever for steps that ignore cancellation.

The first SIGINT cancels the run: running steps are cancelled, their events and the
``cancelled`` status (with who cancelled and when) are stored, and the command prints
the run id with the command that resumes it. A second SIGINT exits at once (status
130) without waiting for anything; the run then stays ``running`` until its lease
expires or its process is seen gone, and ``legato runs recover`` finishes it.

Sync steps run in worker threads, and Python cannot stop a thread: a cancelled or
timed-out sync step is abandoned and its thread runs on. Such a thread would keep
the interpreter alive at exit (it is not a daemon), so :func:`exit_now` waits at most
:data:`STRAGGLER_GRACE_S` for it and then ends the process. The handler talks to
the event loop through ``loop.call_soon_threadsafe``, the one asyncio call that is
safe from a signal handler; anyio's signal receiver would need a task group around
the run only for this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from legato.engine import RunControl

__all__ = ["STRAGGLER_GRACE_S", "Interrupt", "exit_now"]

STRAGGLER_GRACE_S = 2.0  # how long an abandoned sync step's thread may delay the exit
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C


class Interrupt:
    """SIGINT handling around one ``legato run`` (see the module docstring).
    ``run_id`` is the id the run is stored under, for the messages."""

    def __init__(self, control: RunControl, run_id: str) -> None:
        self.control = control
        self.run_id = run_id
        self.hits = 0
        self.waiting_for: str | None = None  # another process's run this command only waits for

    def waiting(self, run_id: str) -> None:
        """This command now waits for ``run_id``, which another process executes: Ctrl-C
        stops the wait and leaves that run alone."""
        self.waiting_for = run_id

    @property
    def interrupted(self) -> bool:
        return self.hits > 0

    @contextmanager
    def installed(self) -> Iterator[Interrupt]:
        """Handle SIGINT while the block runs (in the event loop's thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only: nothing to install
            return
        loop = asyncio.get_running_loop()

        def on_sigint(_signum: int, _frame: FrameType | None) -> None:
            self.hits += 1
            if self.hits == 1:
                loop.call_soon_threadsafe(self._cancel)
                return
            if self.waiting_for is None:
                _say(f"\nexiting at once: run {self.run_id} is left running; `legato runs recover` finishes it\n")
            os._exit(EXIT_INTERRUPTED)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _cancel(self) -> None:
        if self.waiting_for is None:  # waiting: the wait loop says what happens to the other run
            _say(f"\ncancelling run {self.run_id} (Ctrl-C again to exit at once)\n")
        self.control.cancel(f"Ctrl-C (SIGINT) on legato run, pid {os.getpid()}")

    def resume_hint(self, run_id: str) -> str:
        return f"run {run_id} cancelled by Ctrl-C; resume it with: legato runs resume {run_id} --force"


def exit_now(code: int) -> None:
    """Exit with ``code`` once the abandoned step threads finished, or after
    :data:`STRAGGLER_GRACE_S` seconds without them (their work is lost with the process)."""
    deadline = time.monotonic() + STRAGGLER_GRACE_S
    for thread in _stragglers():
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in _stragglers()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stragglers() -> list[threading.Thread]:
    # anyio's worker threads are not daemons; idle ones stopped when the run's loop
    # closed, so the ones left alive still run abandoned step code.
    return [t for t in threading.enumerate() if t.name == "AnyIO worker thread" and t.is_alive() and not t.daemon]


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # stderr closed: the exit status still tells
        os.write(2, text.encode())

"""Things a run's steps build once and share, owned by the run.

A step that needs an expensive object (a model with its connection pool, say) asks
:func:`run_resources` for the run's table and gets the object built once per key
for the whole run; the run closes every object it holds when it ends, whatever the
outcome, before :class:`RunFinished`. A cycle's body runs inside its run and shares
its table. Outside a run (a step function called directly, a step on a remote
executor's worker) there is no table: the caller builds and closes its own.

The engine knows nothing of what is kept: a key, a build function and a close
function are all it sees.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio

__all__ = ["RunResources", "run_resources"]

T = TypeVar("T")


class RunResources:
    """The objects one run shares among its steps (see the module docstring)."""

    __slots__ = ("_closers", "_values")

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    def get(self, key: Hashable, build: Callable[[], T], close: Callable[[T], Awaitable[Any]]) -> T:
        """The object of ``key``, built by ``build()`` on first use and handed to
        ``close`` when the run ends. ``build`` is synchronous, so two steps asking at
        once get the same object; an exception from it reaches the caller and nothing
        is kept."""
        try:
            return self._values[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._values[key] = build()
            self._closers.append(lambda: close(value))
            return value

    def __len__(self) -> int:
        return len(self._values)

    async def aclose(self) -> None:
        """Close every object, the last built first; shielded from cancellation. The
        first error from a close is raised after every object had its turn."""
        closers, self._closers, self._values = self._closers, [], {}
        error: BaseException | None = None
        with anyio.CancelScope(shield=True):
            for close in reversed(closers):
                try:
                    await close()
                except Exception as exc:  # close the rest first
                    error = error or exc
        if error is not None:
            raise error


_current: contextvars.ContextVar[RunResources | None] = contextvars.ContextVar("legato_run_resources", default=None)


def run_resources() -> RunResources | None:
    """The table of the run this code runs in, or None outside a run."""
    return _current.get()

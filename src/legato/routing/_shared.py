"""The groups ``legato.models.get`` shares, and their owner.

One :class:`Groups` per event loop and configuration content, so every lookup of a
group name shares the same routers (health, breakers, budget) and connection pools,
and no pool is used from a loop other than the one that opened it. Groups looked up
outside a running loop (loading a pipeline, a synchronous command) are shared among
such callers; their pools open on the loop that first calls them.

:class:`SharedGroups` owns both tables for the process. Its :meth:`~SharedGroups.aclose`
is what the owner of an event loop calls before the loop ends (the CLI does at the
end of every command, the gateway at shutdown): it closes and forgets the loop's
groups, and closes the pools the loop-less groups opened on it (those groups stay:
their pools reopen on their next call).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.lowlevel

from legato.providers import Model
from legato.routing._groups import Groups, build_groups

if TYPE_CHECKING:
    from legato.config import LegatoConfig

__all__ = ["SharedGroups", "aclose_shared_groups", "groups_for", "shared_groups"]


def _event_loop() -> object | None:
    """The running event loop (whatever anyio backend runs it), or None outside one."""
    try:
        return anyio.lowlevel.current_token().native_token
    except RuntimeError:  # no async library is running here
        return None


class SharedGroups:
    """The process-wide owner of the groups :func:`groups_for` shares."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[object, dict[str, Groups]] = weakref.WeakKeyDictionary()
        self._loopless: dict[str, Groups] = {}
        self._lock = threading.Lock()

    def get(self, config: LegatoConfig, resolve_model: Callable[[str], Model]) -> Groups:
        """The shared groups of ``config`` for the running event loop (built on first use)."""
        key = json.dumps(
            [config.source, config.raw("groups"), config.raw("routing"), config.raw("models")],
            sort_keys=True,
            default=str,
        )
        loop = _event_loop()
        with self._lock:
            table = self._loopless if loop is None else self._by_loop.setdefault(loop, {})
            groups = table.get(key)
            if groups is None:
                groups = table[key] = build_groups(config, resolve_model)
            return groups

    async def aclose(self) -> None:
        """Close what the running loop opened: its own groups (forgotten; a later
        lookup builds new ones) and the pools loop-less groups opened on it."""
        loop = _event_loop()
        with self._lock:
            own = list(self._by_loop.pop(loop, {}).values()) if loop is not None else []
            loopless = list(self._loopless.values())
        for groups in (*own, *loopless):
            await groups.aclose()


shared_groups = SharedGroups()
"""The one owner of the process's shared groups."""


def groups_for(config: LegatoConfig, resolve_model: Callable[[str], Model]) -> Groups:
    """The shared :class:`Groups` of ``config`` for the running event loop.

    This is what ``legato.models.get(name)`` uses for group names: two lookups of
    the same group on one loop return the same Model, so health, breakers and
    connection pools are shared. Outside a running loop (loading a pipeline, a
    synchronous CLI) the groups are shared among such callers only.
    """
    return shared_groups.get(config, resolve_model)


async def aclose_shared_groups() -> None:
    """Close the connection pools the shared groups opened on the running event loop.

    The loop's owner calls this before the loop ends (``anyio.run``'s main function,
    a server's shutdown): the pools are bound to that loop and nothing else closes
    them. A later lookup on the same loop builds new groups.
    """
    await shared_groups.aclose()

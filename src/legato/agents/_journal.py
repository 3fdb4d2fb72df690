"""Where an agent records each model turn and tool call, so that a resumed agent
continues from the last recorded one instead of paying for a call twice.

An :class:`AgentJournal` is an append-only list of JSON entries. The agent appends a
``turn`` entry when a model call returns (before any of its tools runs) and a
``tool`` entry when a tool call returns (before the next model call); ``append``
returns once the entry is durable. On start, :meth:`AgentJournal.load` gives the
entries of an earlier attempt and the agent replays them: recorded model answers
and tool results are used as they are, and only what is missing runs.

In a durable pipeline run the ``agent:`` step journals into the run store; in
Python, pass any implementation (for example :class:`MemoryJournal`) to
:meth:`legato.agents.Agent.run`.

A journal may also say how many of its entries were ``inherited`` from another
process (a resumed run): the model calls of those turns were never counted in this
process, so the agent charges them to the current ledger when it replays them, and
the run's cost includes what the turns before the crash spent.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

__all__ = ["AgentJournal", "MemoryJournal"]


@runtime_checkable
class AgentJournal(Protocol):
    async def load(self) -> list[dict[str, Any]]:
        """The entries recorded so far, oldest first."""
        ...

    async def append(self, entry: dict[str, Any]) -> None:
        """Record ``entry`` durably (it is plain JSON)."""
        ...


class MemoryJournal:
    """A journal in memory: resumes within one process (tests, retries of a step)."""

    inherited = 0  # every entry was appended in this process

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def load(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.entries)

    async def append(self, entry: dict[str, Any]) -> None:
        self.entries.append(copy.deepcopy(entry))

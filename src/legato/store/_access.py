"""Who may see what: one ownership rule for every record a caller can reach.

Every run (with its steps and events) and every journal entry carries the tenant
that created it: the id of the API key that started the run or wrote the entry
(``""`` for runs and entries written locally, by the CLI or the stdio MCP server).
A :class:`Principal` is the caller as the store sees it: its tenant, and whether it
sees every tenant's records (keys with the ``admin`` scope, the master key, and the
single local owner of the CLI and stdio MCP server).

The REST API, the MCP tools and the dashboard all go through :func:`visible_run`
and the ``viewer=`` arguments of :class:`legato.store.Journal`, which put the
tenant into the query itself. A record of another tenant is answered exactly like
a record that does not exist, so ids never reveal that something exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from legato.store._records import RunRecord
from legato.store._runs import RunStore

__all__ = ["LOCAL", "Principal", "visible_run"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: ``tenant`` owns what it creates; ``sees_all`` reads every tenant's records."""

    tenant: str
    sees_all: bool = False

    def can_see(self, owner: str) -> bool:
        """Whether a record owned by ``owner`` is visible to this caller."""
        return self.sees_all or owner == self.tenant

    @property
    def tenant_filter(self) -> str | None:
        """The tenant a query must be restricted to; None when every tenant is visible."""
        return None if self.sees_all else self.tenant


LOCAL = Principal(tenant="", sees_all=True)
"""The single local owner: the CLI and the stdio MCP server (they hold the database itself)."""


async def visible_run(store: RunStore, viewer: Principal, run_id: str) -> RunRecord:
    """The run ``run_id`` (or a unique prefix of it) if ``viewer`` may see it.

    :class:`legato.errors.RunNotFound` when there is no such run *or* it belongs to
    another tenant: the two answers are identical."""
    return await store.get_run(run_id, tenant=viewer.tenant_filter)

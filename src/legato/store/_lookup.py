"""Run ids from what people type: prefixes resolved, and the shortest prefixes worth printing.

Run ids are time-ordered (:func:`legato.store.new_run_id`), so runs started close
together share their first 8-12 characters: a fixed-length short id would not be
unique. :func:`short_ids` computes, per id, the shortest prefix no other run shares
(two indexed look-ups: the neighbours in id order), and :func:`resolve` turns any
unique prefix back into the id. Both take a tenant so that, for an API key, neither
answers nor candidate lists mention another tenant's runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.errors import AmbiguousRunId, RunNotFound
from legato.store._schema import runs

__all__ = ["resolve", "short_ids"]

_SHOWN_CANDIDATES = 10


def resolve(conn: Connection, prefix: str, tenant: str | None) -> str:
    """The id that is ``prefix`` or the only one starting with it (see the module docstring)."""
    if not prefix:
        raise RunNotFound("no run with id '': give a run id or a prefix of one")
    exact = sa.select(runs.c.id).where(runs.c.id == prefix, *_tenant_is(tenant))
    if conn.execute(exact).first() is not None:
        return prefix
    query = sa.select(runs.c.id).where(runs.c.id.startswith(prefix, autoescape=True), *_tenant_is(tenant))
    if conn.dialect.name == "sqlite":  # SQLite's LIKE cannot use the key's index; this range can
        query = query.where(runs.c.id >= prefix, runs.c.id < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    found = [r[0] for r in conn.execute(query.order_by(runs.c.id.desc()).limit(_SHOWN_CANDIDATES + 1)).all()]
    if not found:
        raise RunNotFound(f"no run with id {prefix!r}")
    if len(found) == 1:
        return str(found[0])
    shown = found[:_SHOWN_CANDIDATES]
    how_many = f"more than {_SHOWN_CANDIDATES}" if len(found) > _SHOWN_CANDIDATES else str(len(found))
    listed = ", ".join(shown) + (", ..." if len(found) > _SHOWN_CANDIDATES else "")
    raise AmbiguousRunId(
        f"run id prefix {prefix!r} matches {how_many} runs ({listed}): give more characters", candidates=shown
    )


def short_ids(conn: Connection, ids: list[str], tenant: str | None, minimum: int) -> dict[str, str]:
    """Each id's shortest prefix (at least ``minimum`` long) shared with no other run of the scope."""
    shown: dict[str, str] = {}
    for run_id in ids:
        before = conn.execute(sa.select(sa.func.max(runs.c.id)).where(runs.c.id < run_id, *_tenant_is(tenant)))
        after = conn.execute(sa.select(sa.func.min(runs.c.id)).where(runs.c.id > run_id, *_tenant_is(tenant)))
        shared = max(_common_prefix(run_id, before.scalar()), _common_prefix(run_id, after.scalar()))
        shown[run_id] = run_id[: max(minimum, shared + 1)]
    return shown


def _tenant_is(tenant: str | None) -> tuple[sa.ColumnElement[bool], ...]:
    return () if tenant is None else (runs.c.tenant == tenant,)


def _common_prefix(a: str, b: str | None) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    if b is None:
        return 0
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

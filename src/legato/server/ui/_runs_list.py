"""The runs list: filters and search kept in the URL, keyset pages, live rows.

The query string is read by the runs API's own reader
(:mod:`legato.store._query`), leniently: a malformed value is dropped and the
page still renders, so a hand-edited URL never fails. The same ownership rule
applies as everywhere (a key lists its own runs; admins may narrow to one key).
The live list sends only the rows that changed (:class:`RowPatches`), and reads
the store again only when its runs changed (:meth:`RunStore.run_changes`: PostgreSQL
``NOTIFY`` from any replica, SQLite ``data_version``), or every few seconds while a
shown run is running (its duration moves on). An idle list costs the server a
keep-alive every 15 s.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from legato.server.ui._access import Viewer
from legato.server.ui._dashboard import Dashboard, dashboard
from legato.server.ui._live import RowPatches
from legato.store._query import STATUSES, RunQuery, next_cursor, resolve_key, run_query

__all__ = ["LIMITS", "list_runs", "router"]

router = APIRouter()

LIMITS = (25, 50, 100, 200, 500)
# Filters shown under "More filters" (the form opens it when one of them is set).
MORE = ("key", "tags", "min_cost", "max_cost", "min_duration_s", "max_duration_s")
TICK_S = 5.0  # how often a list showing running runs refreshes their durations
FORM = ("q", "pipeline", "status", "since", "until", "sort", *MORE)


async def list_runs(d: Dashboard, viewer: Viewer, params: dict[str, str]) -> tuple[RunQuery, list[Any], str | None]:
    """The query the URL asks for, one page of runs under it, and the next page's cursor."""
    query = run_query(params, tenant=viewer.principal.tenant_filter, strict=False)
    query = await resolve_key(query, d.keys())
    page = await d.store().list_runs(
        query.where, limit=query.limit + 1, oldest_first=query.oldest_first, cursor=query.cursor
    )
    return query, page[: query.limit], next_cursor(page, query.limit)


async def key_choices(d: Dashboard, viewer: Viewer) -> list[tuple[str, str]]:
    """``(key id, label)`` of every key an admin may narrow the list to."""
    if not viewer.admin:
        return []
    keys = d.keys()
    listed = await keys.list(include_revoked=True) if keys is not None else []
    choices = [(k.id, f"{k.name} ({k.prefix}…)") for k in listed]
    return ([("master", "master key")] if d.admin_key() else []) + choices


@router.get("/")
async def runs_page(request: Request) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    query, runs, cursor = await list_runs(d, viewer, dict(request.query_params))
    kept = {**query.params, "limit": str(query.limit)}
    here = {**kept, **({"cursor": request.query_params["cursor"]} if query.cursor is not None else {})}
    filters: dict[str, Any] = {**dict.fromkeys(FORM, ""), **query.params, "limit": query.limit}
    pipelines = await d.pipelines(viewer)
    return d.page(
        "runs.html", request, nav="runs", runs=runs, filters=filters, query=urlencode(here),
        limits=sorted({*LIMITS, query.limit}), pipelines=pipelines, statuses=STATUSES,
        startable=[p for p in pipelines if d.startable(p)], keys=await key_choices(d, viewer),
        more_open=any(filters[f] for f in MORE), encrypted=bool(getattr(d.store(), "encrypted", False)),
        next_url=f"{d.base}/?{urlencode({**kept, 'cursor': cursor})}" if cursor else None,
    )  # fmt: skip


@router.get("/live/runs")
async def live_runs(request: Request) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request, page=False), Viewer):
        return viewer
    params = dict(request.query_params)
    patches = RowPatches("runs-body")
    changes = d.store().run_changes()
    seen, ticking = changes.count, False

    async def produce() -> tuple[dict[str, Any], bool]:
        nonlocal ticking
        _, runs, _ = await list_runs(d, viewer, params)
        now = d.sources.clock()
        ticking = any(r.started_at is not None and r.finished_at is None for r in runs)
        rows = {r.id: d.render.fragment("_run_row.html", r=r, now=now) for r in runs}
        return {"rows": patches.update(rows)}, False

    async def wait(at_most: float) -> None:
        """Until the runs change (or, while a shown run is running, its duration
        moves on), at most until the next keep-alive."""
        nonlocal seen
        seen = await changes.wait(seen, min(at_most, TICK_S) if ticking else at_most)

    return await d.live(request, produce, wait)

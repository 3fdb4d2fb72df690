"""The model-call view and the charts: ``/calls``, ``/charts`` and a run's calls.

- ``/calls``: the newest gateway calls the viewer may see (its own key's; an admin
  sees every key's and may pick one), each with its route, timings, tokens, cost,
  trace link and the redacted prompt and answer. Older pages by call id.
- ``/charts``: spend per day by model and by key, key budgets against their limits,
  error rate and latency per model, run durations per pipeline, over 1 to 30 days.
  The numbers come from SQL aggregates in the store (:mod:`legato.store._call_stats`),
  restricted to the viewer's tenant unless it sees all; budgets are read from the
  same spend records the gateway enforces them with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from legato.server._limits import period_start
from legato.server.ui._access import Viewer
from legato.server.ui._charts import budget_chart, duration_chart, latency_chart, spend_chart, utc_day
from legato.server.ui._dashboard import Dashboard, dashboard
from legato.server.ui._render import _usd as usd
from legato.store import gateway_calls, model_stats, run_durations, spend_by_day

__all__ = ["router"]

router = APIRouter()

PAGE = 50
DAY_CHOICES = (1, 7, 14, 30)


async def _keys(d: Dashboard) -> list[Any]:
    keys = d.keys()
    return list(await keys.list(include_revoked=True)) if keys is not None else []


def _labels(keys: list[Any]) -> dict[str, str]:
    labels = {"": "local", "master": "master key"}
    labels.update({k.id: f"{k.name} ({k.prefix}…)" if k.name else f"{k.prefix}…" for k in keys})
    return labels


@router.get("/calls")
async def calls_page(request: Request, key: str = "", before: int | None = None) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    keys = await _keys(d) if viewer.admin else []
    labels = _labels(keys)
    chosen = key if viewer.admin and key and key in labels else None
    store = d.store()
    calls = await gateway_calls(store, viewer.principal, key_id=chosen, limit=PAGE, before=before)
    older = None
    if len(calls) == PAGE:
        older = f"{d.base}/calls?" + urlencode({**({"key": chosen} if chosen else {}), "before": calls[-1].id})
    choices = [{"id": k.id, "label": labels[k.id]} for k in keys]
    return d.page("calls.html", request, nav="calls", calls=calls, keys=choices, key=chosen or "",
                  labels=labels, older=older, trace_url=d.sources.trace_url,
                  encrypted=bool(getattr(store, "encrypted", False)))  # fmt: skip


@router.get("/charts")
async def charts_page(request: Request, days: int = 7) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    days = days if days in DAY_CHOICES else 7
    now = d.sources.clock()
    today = utc_day(now)
    since = today.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() - (days - 1) * 86400
    store, who = d.store(), viewer.principal
    keys = await _keys(d)
    labels = _labels(keys)
    by_model = await spend_by_day(store, who, since=since)
    by_key = await spend_by_day(store, who, since=since, by="tenant")
    errors, latency = latency_chart(await model_stats(store, who, since=since))
    return d.page(
        "charts.html", request, nav="charts", days=days,
        spend_model=spend_chart(by_model, days=days, today=today, usd=usd),
        spend_key=spend_chart(by_key, days=days, today=today, usd=usd, label=_namer(labels), by="key"),
        budgets=await _budgets(d, viewer, keys, labels, now),
        errors=errors, latency=latency,
        durations=duration_chart(await run_durations(store, who, since=since)),
    )  # fmt: skip


def _namer(labels: dict[str, str]) -> Callable[[str], str]:
    return lambda tenant: labels.get(tenant, tenant)


async def _budgets(d: Dashboard, viewer: Viewer, keys: list[Any], labels: dict[str, str], now: float) -> Any:
    """Keys with a budget (the viewer's own unless it sees all), spent this period against the limit."""
    store = d.keys()
    if store is None:
        return None
    rows = []
    for k in keys:
        if k.budget_usd is None or k.revoked or not viewer.principal.can_see(k.id):
            continue
        spent = await store.spend_since(k.id, period_start(k.budget_period, now))
        rows.append((labels[k.id], spent, float(k.budget_usd), str(k.budget_period)))
    return budget_chart(rows, usd)

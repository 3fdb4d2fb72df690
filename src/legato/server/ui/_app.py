"""The dashboard's routes: server-rendered pages, live fragments over SSE.

Every page is rendered on the server with Jinja2 (autoescaped); a small script
swaps in fragments that the live endpoints push as Server-Sent Events. The live
endpoints poll the run store (every ``poll_s``) and send only what changed, so any
replica can serve any browser: nothing depends on the run executing in the process
that serves the page.

Who gets in and what they see is decided in :mod:`legato.server.ui._access`
(keys, server-side sessions, the one ownership rule); failed sign-ins are throttled
per client (:mod:`legato.server.ui._throttle`) and sign-in and sign-out are written
to the audit log when the dashboard has one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from legato.errors import RunNotFound
from legato.server._audit import AuditAction
from legato.server._body import parse_form
from legato.server.ui import _actions, _insights, _runs_list, _schedules
from legato.server.ui._access import COOKIE, Viewer, client_address, same_origin
from legato.server.ui._dashboard import DashboardSources, dashboard, maybe_await
from legato.server.ui._view import by_step, gantt
from legato.store import run_calls, visible_run

if TYPE_CHECKING:
    from legato.providers import Model

__all__ = ["router"]

_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = _STATIC / name
    if path.parent != _STATIC or path.suffix not in _STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix],
                    headers={"cache-control": "public, max-age=300"})  # fmt: skip


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    d = dashboard(request)
    return d.page("login.html", request, next=_safe_next(next, d.base), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    d = dashboard(request)
    if not same_origin(request):  # no signing a browser in (or out) from another site
        return d.page("error.html", request, status=403, title="Forbidden", message="Cross-site request refused.")
    client = client_address(request)
    form = parse_form(await request.body())
    target = _safe_next((form.get("next") or [""])[0], d.base)
    wait = await d.throttle.retry_after(client)
    if wait is not None:
        message = f"Too many failed sign-ins from this address: try again in {wait} s."
        response = d.page("login.html", request, status=429, next=target, error=message)
        response.headers["retry-after"] = str(wait)
        return response
    given = (form.get("key") or [""])[0].strip()
    viewer = await d.access.from_secret(given) if given else None
    if viewer is None or viewer.key is None:
        await d.throttle.failed(client)
        await d.audit(
            AuditAction.SIGN_IN_REFUSED, request, None, prefix=given[:12] if given.startswith("lg_") else None
        )
        return d.page("login.html", request, status=401, next=target, error="That key cannot sign in here.")
    token = await d.session_store().create(viewer.key.id, client)
    await d.audit(AuditAction.SIGN_IN, request, viewer)
    redirect = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    redirect.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path=d.base or "/",
                        max_age=int(d.sources.session_ttl_s))  # fmt: skip
    return redirect


@router.post("/logout")
async def logout(request: Request) -> Response:
    d = dashboard(request)
    if not same_origin(request):
        return d.page("error.html", request, status=403, title="Forbidden", message="Cross-site request refused.")
    token = request.cookies.get(COOKIE)
    session = await d.session_store().revoke(token) if token else None
    if session is not None:
        await d.audit(AuditAction.SIGN_OUT, request, await d.access.from_key_id(session.key_id))
    response = RedirectResponse(f"{d.base}/login", status_code=303)
    response.delete_cookie(COOKIE, path=d.base or "/")
    return response


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    try:
        view = await d.run_view(viewer, run_id)
    except RunNotFound:
        return d.page("error.html", request, status=404, title="Run not found", message=f"No run {run_id!r}.")
    now = d.sources.clock()
    bars, span = gantt(view, now)
    notes = await d.journal().recent(5, run_id=view.id, viewer=viewer.principal)
    calls = await run_calls(d.store(), view.id)
    return d.page("run.html", request, nav="runs", notes=notes, calls=calls, trace_url=d.sources.trace_url,
                  calls_by_step=by_step(calls), **d.render.run_context(view, now, bars, span))  # fmt: skip


@router.get("/live/runs/{run_id}")
async def live_run(request: Request, run_id: str) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request, page=False), Viewer):
        return viewer
    try:
        run_id = (await visible_run(d.store(), viewer.principal, run_id)).id
    except RunNotFound:
        return Response(f"no run {run_id!r}", status_code=404, media_type="text/plain")

    async def produce() -> tuple[dict[str, Any], bool]:
        view = await d.run_view(viewer, run_id)
        calls = await run_calls(d.store(), run_id)
        return {"status": view.status, "fragments": d.run_fragments(view, calls)}, view.terminal

    return await d.live(request, produce)


@router.get("/models")
async def models_page(request: Request) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.admin_gate(request, "Model health"), Viewer):
        return viewer
    rows = await _health_rows(d.sources)
    columns = _columns(rows or [])
    return d.page("models.html", request, nav="models", rows=rows, columns=columns)


@router.get("/spend")
async def spend_page(request: Request, since: str = "") -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    now = d.sources.clock()
    since_day = _valid_day(since) or (datetime.fromtimestamp(now, UTC) - timedelta(days=30)).strftime("%Y-%m-%d")
    key_rows = await d.sources.spend(since_day) if d.sources.spend is not None else None
    if key_rows is not None and not viewer.admin:  # a key's spend rows belong to that key
        own = viewer.key.prefix if viewer.key is not None else None
        key_rows = [r for r in key_rows if r.get("prefix") == own]
    runs = await d.store().list_runs(tenant=viewer.principal.tenant_filter, limit=5000)
    run_rows = _runs_by_day(runs, since_day)
    return d.page("spend.html", request, nav="spend", since=since_day, key_rows=key_rows,
                  by_model=_by_model(key_rows or []), key_total=sum(r.get("cost") or 0 for r in key_rows or []),
                  run_rows=run_rows, run_total=sum(r["cost"] for r in run_rows))  # fmt: skip


@router.get("/sessions")
async def sessions_page(request: Request) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.admin_gate(request, "Who is signed in"), Viewer):
        return viewer
    rows = []
    for session in await d.session_store().active():
        who = await d.access.from_key_id(session.key_id)
        if who is not None:  # a session whose key was revoked is already closed
            rows.append({"who": who.label, "admin": who.admin, "client": session.client,
                         "since": session.created_at, "until": session.expires_at})  # fmt: skip
    return d.page("sessions.html", request, nav="sessions", rows=rows)


@router.get("/journal")
async def journal_page(request: Request, q: str = "") -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    journal = d.journal()
    q = q.strip()
    who = viewer.principal
    entries = list(await journal.search(q, limit=30, viewer=who) if q else await journal.recent(30, viewer=who))
    return d.page("journal.html", request, nav="journal", q=q, entries=entries, unavailable=False)


COLUMN_ORDER = ("group", "deployment", "model", "provider", "state", "health", "breaker", "in_flight",
                "latency_ewma", "latency_ms", "successes", "failures", "consecutive_failures", "error_rate",
                "ejected_for", "last_error")  # fmt: skip


def _row(item: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return dict(item)


async def _health_rows(sources: DashboardSources) -> list[dict[str, Any]] | None:
    if sources.health is not None:
        return [_row(r) for r in await maybe_await(sources.health())]
    catalog = sources.models
    if catalog is None:
        return None
    ready_of, health_of = getattr(catalog, "ready", None), getattr(catalog, "health", None)  # a full catalog's
    ready = await maybe_await(ready_of()) if callable(ready_of) else {}
    built: dict[str, Model | Exception] = {}
    for name in catalog.names():
        try:
            built[name] = catalog.get(name)
        except Exception as exc:  # a model that cannot be built is shown as such, not a 500
            built[name] = exc
    deployments: dict[str, list[dict[str, Any]]] = {}
    for health in health_of() if callable(health_of) else []:
        deployments.setdefault(health.group, []).append(_row(health))
    rows: list[dict[str, Any]] = []
    for name, model in built.items():
        if isinstance(model, Exception):
            rows.append({"group": name, "deployment": name, "state": "unavailable", "last_error": type(model).__name__})
        elif name in deployments:
            rows.extend(deployments[name])
        else:  # no routing group: no breaker, served straight from its provider
            state = "ready" if ready.get(name, True) else "not_ready"
            rows.append({"group": "—", "deployment": name, "model": model.name, "state": state})
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen = {k for r in rows for k in r}
    cols = [c for c in COLUMN_ORDER if c in seen]
    return cols + sorted(seen - set(cols))


def _valid_day(value: str) -> str | None:
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        return None


def _runs_by_day(runs: Sequence[Any], since_day: str) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        day = datetime.fromtimestamp(r.created_at, UTC).strftime("%Y-%m-%d")
        if day < since_day:
            continue
        row = totals.setdefault((day, r.pipeline), {"day": day, "pipeline": r.pipeline, "runs": 0, "cost": 0.0})
        row["runs"] += 1
        row["cost"] += r.cost or 0.0
    return sorted(totals.values(), key=lambda x: (x["day"], x["pipeline"]), reverse=True)


def _by_model(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = out.setdefault(
            str(r.get("model")),
            {"model": r.get("model"), "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0},
        )
        for k in ("requests", "input_tokens", "output_tokens", "cost"):
            m[k] += r.get(k) or 0
    return sorted(out.values(), key=lambda x: -x["cost"])


def _safe_next(target: str, base: str) -> str:
    """Only same-site paths under the dashboard: never an open redirect."""
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


for _part in (_runs_list.router, _actions.router, _insights.router, _schedules.router):
    router.include_router(_part)

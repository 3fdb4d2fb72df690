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
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from legato.errors import RunNotFound
from legato.server._audit import AuditAction
from legato.server._body import parse_form
from legato.server.ui._access import COOKIE, Access, Viewer, client_address, same_origin
from legato.server.ui._actions import action_routes
from legato.server.ui._insights import by_step, calls_of_run, insight_routes
from legato.server.ui._live import LiveEvents, merge_events
from legato.server.ui._render import Renderer
from legato.server.ui._runs_list import runs_list_routes
from legato.server.ui._schedules import schedule_routes
from legato.server.ui._sessions import SessionStore
from legato.server.ui._throttle import LoginThrottle
from legato.server.ui._view import build_run_view, gantt
from legato.store import interrupted, visible_run

__all__ = ["DashboardSources", "dashboard_router"]
_STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0  # an idle live stream sends a comment this often (proxies close silent streams)
# Pages load only their own script and stylesheet; nothing may frame them.
PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}

Source = Any  # an object, or a zero-argument callable returning it (resolved per request)


@dataclass
class DashboardSources:
    """Where the dashboard reads from. Each may be the object itself or a zero-argument
    callable returning it (for parts the app builds at start-up).

    - ``store``: a :class:`legato.store.RunStore` (runs, steps, events; sign-in
      sessions are kept in its database).
    - ``admin_key``: the key that opens the dashboard and sees everything.
    - ``keys``: a :class:`legato.server.KeyStore`: its keys with ``runs:read`` may sign
      in and see their own records (``admin`` keys: everything). With neither
      ``admin_key`` nor ``keys`` the dashboard answers loopback clients only.
    - ``audit``: a :class:`legato.server.AuditLog` for sign-in and sign-out records.
    - ``throttle``: a :class:`LoginThrottle` (default: 5 failures per 5 minutes per
      client, counted in this process).
    - ``session_ttl_s``: how long a sign-in lasts.
    - ``graphs``: ``pipeline name -> {step: [dependencies]}`` or None when unknown.
    - ``health``: routing health rows (mappings or dataclasses such as
      :class:`legato.routing.DeploymentHealth`: ``group``, ``deployment``, ``state``,
      ``in_flight``...), sync or async. Without it, ``models`` is used.
    - ``models``: a model catalog (``names()``, ``get(name)`` and, for routing groups,
      ``health()``: the deployments of every group, as :class:`legato.routing.DeploymentHealth`);
      a served name without deployments is one row of its own.
      Default: the catalog of the gateway the dashboard is mounted on, if any.
    - ``spend``: ``async (since_day) -> rows`` of key spend (prefix, name, day, model,
      requests, input_tokens, output_tokens, cost); None: not recorded here.
    - ``journal``: a :class:`legato.store.Journal`; default: a journal on ``store``.
    - ``live``: a :class:`LiveEvents` subscribed to the runs this process executes, so
      running steps show the moment they start (without it: at the next checkpoint).
    - ``pipelines``: the names of the pipelines configured here (listed in the runs
      filter even before they have a run).
    - ``inputs``: ``pipeline name -> {input: InputDecl}`` (the pipeline's ``inputs``),
      from which the Start form is generated; None when the pipeline is not served here.
    - ``start``: ``async (pipeline, inputs, tenant) -> record`` behind the Start form
      (the runs API's own start: input checks, ownership by the signed-in key).
    - ``respond``: ``async (run_record, step, answer, *, by) -> record`` behind the answer
      form of a waiting step (the runs API's own respond: checked against the step's
      schema, the run resumes).
    - ``rerun``: ``async (run_record, from_step, inputs, *, tenant) -> new record``
      behind "Retry from the failed step" and "Re-run from this step" (the runs API's
      own rerun: a new run that keeps the outputs of the steps before).
    - ``resume``: ``async (run_record) -> record`` behind "Resume" on a run whose worker
      stopped (the runs API's own resume: the run continues from its last checkpoint
      on this server).
    - ``cancel``: ``async (run_id, by) -> record`` behind the run page's Cancel button;
      default: ``store.request_cancel`` (the run's worker stops it within a second).
    - ``schedules``: ``async () -> [ScheduleView]``: the schedules of legato.yaml with
      their state, for the Schedules page; None: no such page.
    - ``pause_schedule``: ``async (name, paused, by) -> state`` behind the page's Pause
      and Resume buttons (admin keys only).
    - ``trace_url``: the link from a model call to its trace, ``{trace_id}`` replaced
      (e.g. ``https://jaeger.example/trace/{trace_id}``); None: the id is shown unlinked.
    """

    store: Source
    admin_key: Source = None
    keys: Source = None
    audit: Source = None
    throttle: LoginThrottle | None = None
    session_ttl_s: float = 12 * 3600
    graphs: Callable[[str], Mapping[str, Sequence[str]] | None] | None = None
    health: Callable[[], Any] | None = None
    models: Source = None
    spend: Callable[[str | None], Awaitable[list[dict[str, Any]]]] | None = None
    journal: Source = None
    live: LiveEvents | None = None
    cancel: Callable[[str, str], Awaitable[Any]] | None = None
    pipelines: Source = None
    inputs: Callable[[str], Mapping[str, Any] | None] | None = None
    start: Callable[[str, dict[str, Any], str], Awaitable[Any]] | None = None
    respond: Callable[..., Awaitable[Any]] | None = None
    rerun: Callable[..., Awaitable[Any]] | None = None
    resume: Callable[[Any], Awaitable[Any]] | None = None
    poll_s: float = 0.5
    clock: Callable[[], float] = time.time
    trace_url: str | None = None
    schedules: Callable[[], Awaitable[list[Any]]] | None = None
    pause_schedule: Callable[[str, bool, str], Awaitable[Any]] | None = None


def _resolve(value: Source) -> Any:
    if callable(value) and not any(hasattr(value, a) for a in ("list_runs", "search", "authenticate", "record")):
        return value()
    return value


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Dashboard:
    def __init__(self, sources: DashboardSources, base: str) -> None:
        self.sources = sources
        self.base = base.rstrip("/")
        self.render = Renderer(self.base)
        self.render.env.globals["can_rerun"] = sources.rerun is not None
        self.render.env.globals["can_resume"] = sources.resume is not None
        self.throttle = sources.throttle or LoginThrottle()
        self._sessions: SessionStore | None = None
        self.access = Access(self.admin_key, lambda: _resolve(sources.keys), self.session_store)

    # -- access ------------------------------------------------------------------------

    def admin_key(self) -> str | None:
        key = _resolve(self.sources.admin_key)
        if key is not None and hasattr(key, "get_secret_value"):
            key = key.get_secret_value()
        return str(key) if key else None

    def session_store(self) -> SessionStore:
        store = self.store()
        if self._sessions is None or self._sessions.engine is not store.engine:
            self._sessions = SessionStore(store.engine, ttl_s=self.sources.session_ttl_s, clock=self.sources.clock)
        return self._sessions

    async def gate(self, request: Request, *, page: bool = True) -> Viewer | Response:
        """The signed-in viewer, or the response that turns the request away."""
        viewer = await self.access.viewer(request)
        if viewer is not None:
            request.state.viewer = viewer
            return viewer
        if self.access.open_to_loopback:
            message = "No admin key is configured: the dashboard answers local clients only."
            return self.page("error.html", request, status=403, title="Forbidden", message=message)
        if not page:
            return Response("sign-in required", status_code=401, media_type="text/plain")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{self.base}/login?next={quote(target)}", status_code=303)

    async def audit(
        self, action: AuditAction, request: Request, viewer: Viewer | None, target: str | None = None, **detail: Any
    ) -> None:
        log = _resolve(self.sources.audit)
        if log is None:
            return
        key = viewer.key if viewer is not None else None
        await log.record(action, actor=key.id if key else None, actor_prefix=key.prefix if key else None,
                         target=target, client=client_address(request), detail=detail)  # fmt: skip

    def page(self, template: str, request: Request, *, status: int = 200, **ctx: Any) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        ctx.setdefault("viewer", viewer)
        ctx.setdefault("logged_in", viewer is not None and COOKIE in request.cookies)
        ctx.setdefault("now", self.sources.clock())
        html = self.render.page(template, **ctx)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def journal(self) -> Any:
        journal = _resolve(self.sources.journal)
        if journal is None:
            from legato.store import Journal

            journal = Journal(self.store())
        return journal

    async def cancel(self, run_id: str, by: str) -> Any:
        if self.sources.cancel is not None:
            return await self.sources.cancel(run_id, by)
        return await self.store().request_cancel(run_id, by=by)

    def startable(self, pipeline: str) -> bool:
        """Whether the Start form can start runs of ``pipeline`` here."""
        sources = self.sources
        return sources.start is not None and sources.inputs is not None and sources.inputs(pipeline) is not None

    def keys(self) -> Any:
        """The key store (None: only the admin key signs in)."""
        return _resolve(self.sources.keys)

    def store(self) -> Any:
        store = _resolve(self.sources.store)
        if store is None:
            raise RuntimeError("the run store is not open")
        return store

    # -- runs --------------------------------------------------------------------------

    async def pipelines(self, viewer: Viewer) -> list[str]:
        """Every pipeline the viewer has runs of, and every pipeline configured here."""
        stored = await self.store().pipelines(tenant=viewer.principal.tenant_filter)
        configured = _maybe_names(_resolve(self.sources.pipelines))
        return sorted({*stored, *configured})

    async def run_view(self, viewer: Viewer, run_id: str) -> Any:
        store = self.store()
        run = await visible_run(store, viewer.principal, run_id)
        steps = await store.steps(run.id)
        events = await store.events(run.id)
        if self.sources.live is not None:
            events = merge_events(events, self.sources.live.events(run.id))
        graph = self.sources.graphs(run.pipeline) if self.sources.graphs else None
        in_flight = None
        if run.status not in ("succeeded", "failed", "cancelled", "dead"):  # items of map steps still running
            in_flight = await store.map_item_times(run.id)
        view = build_run_view(run, steps, events, graph, in_flight)
        view.interrupted = interrupted(run, store.clock())
        return view

    def run_fragments(self, view: Any, calls: Sequence[Any] = ()) -> dict[str, str]:
        now = self.sources.clock()
        bars, span = gantt(view, now)
        ctx = self.render.run_context(view, now, bars, span)
        return {
            "run-header": self.render.fragment("_run_header.html", **ctx),
            "graph-box": self.render.fragment("_graph.html", **ctx),
            "gantt-box": self.render.fragment("_gantt.html", **ctx),
            "steps-box": self.render.fragment("_steps.html", calls_by_step=by_step(calls), **ctx),
            "calls-box": self.render.fragment("_run_calls.html", calls=calls, trace_url=self.sources.trace_url),
        }

    async def live(
        self,
        request: Request,
        produce: Callable[[], Awaitable[tuple[dict[str, Any], bool]]],
        wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> Any:
        """An SSE stream of what ``produce`` returns, sent when it changed (a keep-alive
        comment every 15 s otherwise) until it says it is done. Between two calls the
        stream waits ``wait(at_most_s)`` (default: ``poll_s``)."""
        pause = wait or (lambda _at_most: anyio.sleep(self.sources.poll_s))

        async def stream() -> AsyncIterator[bytes]:
            last = ""
            quiet_since = anyio.current_time()
            while True:
                payload, done = await produce()
                body = json.dumps(payload, separators=(",", ":"))
                if body != last:
                    last, quiet_since = body, anyio.current_time()
                    yield f"event: update\ndata: {body}\n\n".encode()
                elif anyio.current_time() - quiet_since >= KEEPALIVE_S:
                    quiet_since = anyio.current_time()
                    yield b": ping\n\n"
                if done:
                    yield b"event: done\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await pause(max(0.0, KEEPALIVE_S - (anyio.current_time() - quiet_since)))

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _maybe_names(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value]


def dashboard_router(sources: DashboardSources, *, prefix: str = "/ui") -> APIRouter:
    """The dashboard as a FastAPI router; ``app.include_router(dashboard_router(...))``."""
    d = Dashboard(sources, prefix)
    router = APIRouter(prefix=prefix, include_in_schema=False)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        path = _STATIC / name
        if path.parent != _STATIC or path.suffix not in _STATIC_TYPES or not path.is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix],
                        headers={"cache-control": "public, max-age=300"})  # fmt: skip

    _sign_in_routes(router, d)
    runs_list_routes(router, d)
    _run_routes(router, d)
    _other_pages(router, d)
    action_routes(router, d)
    insight_routes(router, d)
    schedule_routes(router, d)
    return router


def _sign_in_routes(router: APIRouter, d: Dashboard) -> None:
    @router.get("/login")
    async def login_form(request: Request, next: str = "") -> Response:
        return d.page("login.html", request, next=_safe_next(next, d.base), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
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
        if not same_origin(request):
            return d.page("error.html", request, status=403, title="Forbidden", message="Cross-site request refused.")
        token = request.cookies.get(COOKIE)
        session = await d.session_store().revoke(token) if token else None
        if session is not None:
            await d.audit(AuditAction.SIGN_OUT, request, await d.access.from_key_id(session.key_id))
        response = RedirectResponse(f"{d.base}/login", status_code=303)
        response.delete_cookie(COOKIE, path=d.base or "/")
        return response


def _run_routes(router: APIRouter, d: Dashboard) -> None:
    sources = d.sources

    @router.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        if not isinstance(viewer := await d.gate(request), Viewer):
            return viewer
        try:
            view = await d.run_view(viewer, run_id)
        except RunNotFound:
            return d.page("error.html", request, status=404, title="Run not found", message=f"No run {run_id!r}.")
        now = sources.clock()
        bars, span = gantt(view, now)
        notes = await d.journal().recent(5, run_id=view.id, viewer=viewer.principal)
        calls = await calls_of_run(d.store(), view.id)
        return d.page("run.html", request, nav="runs", notes=notes, calls=calls, trace_url=sources.trace_url,
                      calls_by_step=by_step(calls), **d.render.run_context(view, now, bars, span))  # fmt: skip

    @router.get("/live/runs/{run_id}")
    async def live_run(request: Request, run_id: str) -> Response:
        if not isinstance(viewer := await d.gate(request, page=False), Viewer):
            return viewer
        try:
            run_id = (await visible_run(d.store(), viewer.principal, run_id)).id
        except RunNotFound:
            return Response(f"no run {run_id!r}", status_code=404, media_type="text/plain")

        async def produce() -> tuple[dict[str, Any], bool]:
            view = await d.run_view(viewer, run_id)
            calls = await calls_of_run(d.store(), run_id)
            return {"status": view.status, "fragments": d.run_fragments(view, calls)}, view.terminal

        return await d.live(request, produce)  # type: ignore[no-any-return]


def _other_pages(router: APIRouter, d: Dashboard) -> None:
    sources = d.sources

    @router.get("/models")
    async def models_page(request: Request) -> Response:
        if not isinstance(viewer := await d.gate(request), Viewer):
            return viewer
        if not viewer.admin:
            message = "Model health is shown to admin keys only."
            return d.page("error.html", request, status=403, title="Forbidden", message=message)
        rows = await _health_rows(sources, request)
        columns = _columns(rows or [])
        return d.page("models.html", request, nav="models", rows=rows, columns=columns)

    @router.get("/spend")
    async def spend_page(request: Request, since: str = "") -> Response:
        if not isinstance(viewer := await d.gate(request), Viewer):
            return viewer
        now = sources.clock()
        since_day = _valid_day(since) or (datetime.fromtimestamp(now, UTC) - timedelta(days=30)).strftime("%Y-%m-%d")
        key_rows = await sources.spend(since_day) if sources.spend is not None else None
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
        if not isinstance(viewer := await d.gate(request), Viewer):
            return viewer
        if not viewer.admin:
            message = "Who is signed in is shown to admin keys only."
            return d.page("error.html", request, status=403, title="Forbidden", message=message)
        rows = []
        for session in await d.session_store().active():
            who = await d.access.from_key_id(session.key_id)
            if who is not None:  # a session whose key was revoked is already closed
                rows.append({"who": who.label, "admin": who.admin, "client": session.client,
                             "since": session.created_at, "until": session.expires_at})  # fmt: skip
        return d.page("sessions.html", request, nav="sessions", rows=rows)

    @router.get("/journal")
    async def journal_page(request: Request, q: str = "") -> Response:
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


async def _health_rows(sources: DashboardSources, request: Request) -> list[dict[str, Any]] | None:
    if sources.health is not None:
        return [_row(r) for r in await _maybe_await(sources.health())]
    catalog = _resolve(sources.models)
    if catalog is None:  # mounted on the gateway: its model catalog
        catalog = getattr(getattr(request.app.state, "gateway", None), "catalog", None)
    if catalog is None:
        return None
    ready = await _maybe_await(catalog.ready()) if callable(getattr(catalog, "ready", None)) else {}
    built: dict[str, Any] = {}
    for name in catalog.names():
        try:
            built[name] = catalog.get(name)
        except Exception as exc:  # a model that cannot be built is shown as such, not a 500
            built[name] = exc
    deployments: dict[str, list[dict[str, Any]]] = {}
    for health in catalog.health() if callable(getattr(catalog, "health", None)) else []:
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

"""What the dashboard reads from (:class:`DashboardSources`) and what every page
shares (:class:`Dashboard`: sign-in gate, rendering, the run view, live streams).

The dashboard's routers are module-level; each request finds its :class:`Dashboard`
in the app's state (:func:`dashboard`), put there by :func:`legato.server.ui.mount_dashboard`
or, on the gateway, by the lifespan once the gateway's parts are open.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias
from urllib.parse import quote

import anyio
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import SecretStr

from legato.server._audit import AuditAction
from legato.server.ui._access import COOKIE, Access, Viewer, client_address
from legato.server.ui._live import LiveEvents, merge_events
from legato.server.ui._render import Renderer
from legato.server.ui._sessions import SessionStore
from legato.server.ui._throttle import LoginThrottle
from legato.server.ui._view import RunView, build_run_view, by_step, gantt
from legato.store import RunRecord, interrupted, visible_run

if TYPE_CHECKING:
    from legato.engine import InputDecl
    from legato.providers import Model
    from legato.routing import DeploymentHealth
    from legato.server._audit import AuditLog
    from legato.server._keys import KeyStore
    from legato.store import CallRow, Journal, RunStore, ScheduleState, ScheduleView

__all__ = ["Dashboard", "DashboardSources", "Rerun", "Respond", "ServedModels", "dashboard", "maybe_await"]
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


class Respond(Protocol):
    """``DashboardSources.respond``: answer the waiting ``step`` of a run (as ``POST
    /v1/runs/{id}/steps/{step}/respond``); returns the run's record."""

    def __call__(self, record: RunRecord, step: str, answer: Any, *, by: str) -> Awaitable[RunRecord]: ...


class Rerun(Protocol):
    """``DashboardSources.rerun``: a new run of ``record``'s pipeline from ``from_step``
    owned by ``tenant`` (as ``POST /v1/runs/{id}/rerun``); returns the new run's record."""

    def __call__(
        self, record: RunRecord, from_step: str, inputs: dict[str, Any], *, tenant: str
    ) -> Awaitable[RunRecord]: ...


class ServedModels(Protocol):
    """``DashboardSources.models``: the served names and their models. A
    :class:`legato.server.ModelCatalog` also has ``ready()`` and ``health()``, which
    the Models page reads when present."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Model: ...


HealthRows: TypeAlias = "Iterable[Mapping[str, Any] | DeploymentHealth]"


@dataclass
class DashboardSources:
    """Where the dashboard reads from.

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
    - ``health``: routing health rows (mappings or :class:`legato.routing.DeploymentHealth`:
      ``group``, ``deployment``, ``state``, ``in_flight``...), sync or async. Without
      it, ``models`` is used.
    - ``models``: a model catalog (``names()``, ``get(name)`` and, when it has them,
      ``ready()`` and ``health()``: the deployments of every routing group); a served
      name without deployments is one row of its own.
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

    store: RunStore
    admin_key: str | SecretStr | None = None
    keys: KeyStore | None = None
    audit: AuditLog | None = None
    throttle: LoginThrottle | None = None
    session_ttl_s: float = 12 * 3600
    graphs: Callable[[str], Mapping[str, Sequence[str]] | None] | None = None
    health: Callable[[], HealthRows | Awaitable[HealthRows]] | None = None
    models: ServedModels | None = None
    spend: Callable[[str | None], Awaitable[list[dict[str, Any]]]] | None = None
    journal: Journal | None = None
    live: LiveEvents | None = None
    cancel: Callable[[str, str], Awaitable[RunRecord]] | None = None
    pipelines: Sequence[str] = ()
    inputs: Callable[[str], Mapping[str, InputDecl] | None] | None = None
    start: Callable[[str, dict[str, Any], str], Awaitable[RunRecord]] | None = None
    respond: Respond | None = None
    rerun: Rerun | None = None
    resume: Callable[[RunRecord], Awaitable[RunRecord]] | None = None
    poll_s: float = 0.5
    clock: Callable[[], float] = time.time
    trace_url: str | None = None
    schedules: Callable[[], Awaitable[list[ScheduleView]]] | None = None
    pause_schedule: Callable[[str, bool, str], Awaitable[ScheduleState]] | None = None


async def maybe_await(value: Any) -> Any:
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
        self.access = Access(self.admin_key, self.keys, self.session_store)

    # -- access ------------------------------------------------------------------------

    def admin_key(self) -> str | None:
        key = self.sources.admin_key
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        return key or None

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

    async def admin_gate(self, request: Request, shown: str) -> Viewer | Response:
        """:meth:`gate` for a page shown to admin keys only (``shown`` names what it shows);
        a signed-in key that is not an admin key gets a 403 page saying so."""
        viewer = await self.gate(request)
        if isinstance(viewer, Viewer) and not viewer.admin:
            message = f"{shown} is shown to admin keys only."
            return self.page("error.html", request, status=403, title="Forbidden", message=message)
        return viewer

    async def audit(
        self, action: AuditAction, request: Request, viewer: Viewer | None, target: str | None = None, **detail: Any
    ) -> None:
        log = self.sources.audit
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

    def journal(self) -> Journal:
        if self.sources.journal is not None:
            return self.sources.journal
        from legato.store import Journal

        return Journal(self.store())

    async def cancel(self, run_id: str, by: str) -> RunRecord:
        if self.sources.cancel is not None:
            return await self.sources.cancel(run_id, by)
        return await self.store().request_cancel(run_id, by=by)

    def startable(self, pipeline: str) -> bool:
        """Whether the Start form can start runs of ``pipeline`` here."""
        sources = self.sources
        return sources.start is not None and sources.inputs is not None and sources.inputs(pipeline) is not None

    def keys(self) -> KeyStore | None:
        """The key store (None: only the admin key signs in)."""
        return self.sources.keys

    def store(self) -> RunStore:
        return self.sources.store

    # -- runs --------------------------------------------------------------------------

    async def pipelines(self, viewer: Viewer) -> list[str]:
        """Every pipeline the viewer has runs of, and every pipeline configured here."""
        stored = await self.store().pipelines(tenant=viewer.principal.tenant_filter)
        configured = self.sources.pipelines
        return sorted({*stored, *configured})

    async def run_view(self, viewer: Viewer, run_id: str) -> RunView:
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

    def run_fragments(self, view: RunView, calls: Sequence[CallRow] = ()) -> dict[str, str]:
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
    ) -> StreamingResponse:
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


def dashboard(request: Request) -> Dashboard:
    """The dashboard of the app serving ``request``."""
    d: Dashboard | None = getattr(request.app.state, "dashboard", None)
    if d is None:
        raise RuntimeError("no dashboard on this app: mount it with legato.server.ui.mount_dashboard")
    return d

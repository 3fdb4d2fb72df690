"""The app factory: :func:`create_app` builds the FastAPI application.

Construction only stores configuration; the lifespan opens what costs something
(database engine and migrations, Redis, the model catalog, background tasks owned
by one task group) and closes it in reverse order at shutdown, after uvicorn has
stopped accepting and drained in-flight requests (see :mod:`legato.server._serve`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from legato._version import __version__
from legato.config import LegatoConfig
from legato.cost import BudgetStore, MemoryBudgetStore, RedisBudgetStore
from legato.errors import LegatoError
from legato.server._admission import Admission
from legato.server._audit import AuditLog
from legato.server._auth import Authenticator
from legato.server._calls import CallRecorder
from legato.server._catalog import ModelCatalog, catalog_from_config
from legato.server._errors import GatewayError, error_response, from_exception, invalid_request
from legato.server._keys import KeyStore
from legato.server._limits import KeyLimiter, MemoryCounters, RedisCounters
from legato.server._protect import Load, Protection
from legato.server._revocation import Revocations, channel_for
from legato.server._settings import ServerSettings
from legato.server._spend import SpendRecorder
from legato.server._ssrf import SSRFPolicy
from legato.server._state import Gateway
from legato.server._throttle import FailureThrottle

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from redis.asyncio import Redis

    from legato.engine import InputDecl, Pipeline, Subscriber
    from legato.server._mcp_mount import McpOnDemand
    from legato.server.ui import DashboardSources, LiveEvents
    from legato.store import RunRecord, RunStore, ScheduleState

__all__ = ["create_app", "open_gateway"]

log = logging.getLogger("legato.server")

_HTTP_KIND = {401: "authentication", 403: "permission", 404: "not_found", 413: "too_large", 429: "rate_limit"}


@asynccontextmanager
async def open_gateway(
    settings: ServerSettings,
    *,
    config: LegatoConfig | None = None,
    catalog: ModelCatalog | None = None,
    store: RunStore | None = None,
    pipelines: dict[str, Pipeline] | None = None,
    run_subscribers: list[Subscriber] | None = None,
    migrate_in_child: bool = False,
) -> AsyncIterator[Gateway]:
    """Open every shared resource of a gateway replica; close them on exit.

    ``store`` (a :class:`legato.store.RunStore`, not yet open) and ``pipelines`` are
    built from the settings and config when not given. ``migrate_in_child``: a store
    to create or upgrade is migrated by a child process, which keeps alembic out of a
    process ``legato serve`` owns (decision 0050)."""
    from legato.routing import aclose_shared_groups
    from legato.server._runs import load_pipelines

    config = config or LegatoConfig()
    if pipelines is None:
        pipelines = load_pipelines(config)
    if store is None:
        store = _store(settings, config)
    async with AsyncExitStack() as stack:
        await store.open(migrate_in_child=migrate_in_child)
        stack.push_async_callback(store.aclose)
        stack.push_async_callback(aclose_shared_groups)  # the pools pipelines' groups opened on this loop
        keys = KeyStore(store.engine, cache_ttl_s=settings.key_cache_ttl_s)
        shared = _shared_state(settings, keys, stack)
        if catalog is None:
            catalog = catalog_from_config(config, settings.models, sealing=store.cache_sealing())
        stack.push_async_callback(catalog.aclose)
        gw = _assemble(settings, config, store, pipelines, catalog, keys, shared, run_subscribers)
        async with _background_tasks(gw, store, config, shared.revocations):
            yield gw


@dataclass(frozen=True, slots=True)
class _SharedState:
    """Where replicas share counters, budgets and key revocations: Redis when
    configured, else this process's memory (no revocations to hear of)."""

    redis: Redis | None
    counters: MemoryCounters | RedisCounters
    budgets: BudgetStore
    revocations: Revocations | None


def _shared_state(settings: ServerSettings, keys: KeyStore, stack: AsyncExitStack) -> _SharedState:
    if not settings.redis_url:
        return _SharedState(None, MemoryCounters(), MemoryBudgetStore(), None)
    from redis.asyncio import Redis

    timeout = settings.redis_timeout_s
    redis = Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    stack.push_async_callback(redis.aclose)
    budgets = RedisBudgetStore(
        client=redis, prefix=f"{settings.redis_prefix}budget:", on_unavailable=settings.limits_failure_mode
    )
    channel = channel_for(settings.redis_prefix)
    revocations = Revocations(settings.redis_url, channel, keys, publisher=redis, connect_timeout_s=timeout)
    keys.on_change = revocations.publish
    return _SharedState(redis, RedisCounters(redis), budgets, revocations)


def _assemble(
    settings: ServerSettings,
    config: LegatoConfig,
    store: RunStore,
    pipelines: dict[str, Pipeline],
    catalog: ModelCatalog,
    keys: KeyStore,
    shared: _SharedState,
    run_subscribers: list[Subscriber] | None,
) -> Gateway:
    """The gateway's parts over an open store (nothing started yet)."""
    from legato.server._runs import RunsService
    from legato.store import QueuesSection, SchedulesSection

    engine = store.engine
    master = settings.master_key.get_secret_value() if settings.master_key else None
    limiter = KeyLimiter(
        shared.counters,
        shared.budgets,
        prefix=settings.redis_prefix,
        seed=keys.spend_since,
        failure_mode=settings.limits_failure_mode,
        budget_wait_s=settings.budget_wait_s,
    )
    runs = RunsService(
        store,
        pipelines,
        subscribers=run_subscribers,
        execute=settings.execute_runs,
        queues=config.section("queues", QueuesSection),
        schedules=config.section("schedules", SchedulesSection),
    )
    return Gateway(
        settings=settings, catalog=catalog, keys=keys, auth=Authenticator(keys, master), limiter=limiter,
        spend=SpendRecorder(engine), ssrf=SSRFPolicy(settings.ssrf), audit=AuditLog(engine), engine=engine,
        runs=runs, calls=CallRecorder(store), redis=shared.redis,
    )  # fmt: skip


@asynccontextmanager
async def _background_tasks(
    gw: Gateway, store: RunStore, config: LegatoConfig, revocations: Revocations | None
) -> AsyncIterator[None]:
    """The replica's background work, owned by one task group: spend and call records
    flushed, retention, revocations heard, runs served. On exit the runs drain, then
    the last records are written."""
    from legato.server._retention import RetentionTask
    from legato.store import RetentionConfig

    async with anyio.create_task_group() as tg:
        tg.start_soon(gw.spend.run)
        tg.start_soon(gw.calls.run)
        tg.start_soon(RetentionTask(store, config.section("retention", RetentionConfig)).run)
        if revocations is not None:
            tg.start_soon(revocations.listen)
        await tg.start(gw.runs.serve)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await gw.runs.drain(gw.settings.drain_timeout_s)
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await gw.spend.flush()
        await gw.calls.flush()


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(LegatoError)
    async def _legato_error(request: Request, exc: LegatoError) -> Response:
        return error_response(request, from_exception(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, invalid_request(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        kind = _HTTP_KIND.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
        headers = dict(exc.headers or {})
        return error_response(request, GatewayError(exc.status_code, kind, str(exc.detail), headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(request, GatewayError(500, "internal", "internal error"))


def _dashboard_sources(gw: Gateway, live: LiveEvents) -> DashboardSources:
    """What the dashboard at ``/ui`` reads from: the gateway's own store, keys, audit log,
    spend records, models and runs service (its actions are the runs API's own)."""
    from legato.server.ui import DashboardSources, LoginThrottle, pipeline_graph

    runs, settings, dash = gw.runs, gw.settings, gw.settings.dashboard

    def graph(name: str) -> dict[str, list[str]] | None:
        pipeline = runs.pipelines.get(name)
        return pipeline_graph(pipeline) if pipeline is not None else None

    async def spend(since_day: str | None) -> list[dict[str, Any]]:
        await gw.spend.flush()
        return await gw.keys.spend_report(since_day=since_day)

    def inputs(name: str) -> Mapping[str, InputDecl] | None:
        pipeline = runs.pipelines.get(name)
        return pipeline.inputs if pipeline is not None else None

    async def start(name: str, given: dict[str, Any], tenant: str) -> RunRecord:
        record, _ = await runs.start(name, given, tenant=tenant, idempotency_key=None)  # as POST .../runs
        return record

    async def cancel(run_id: str, by: str) -> RunRecord:
        return await runs.cancel(run_id, by=by)  # a run this replica executes stops at once

    async def pause_schedule(name: str, paused: bool, by: str) -> ScheduleState:
        return await runs.pause_schedule(name, paused, by=by)  # as POST /v1/schedules/{name}/pause|resume

    master = settings.master_key.get_secret_value() if settings.master_key else None
    throttle = LoginThrottle(limit=dash.login_attempts, window_s=dash.login_window_s, redis=lambda: gw.redis,
                             prefix=settings.redis_prefix)  # fmt: skip
    return DashboardSources(
        store=runs.store, admin_key=master, keys=gw.keys, audit=gw.audit, throttle=throttle, models=gw.catalog,
        session_ttl_s=dash.session_ttl_s, graphs=graph, spend=spend, live=live, cancel=cancel,
        pipelines=sorted(runs.pipelines), inputs=inputs, start=start, respond=runs.respond, rerun=runs.rerun,
        resume=runs.resume, trace_url=dash.trace_url, schedules=runs.list_schedules,
        pause_schedule=pause_schedule,
    )  # fmt: skip


def _mount_mcp(
    app: FastAPI,
    store: RunStore,
    pipelines: dict[str, Pipeline],
    subscribers: list[Subscriber],
    settings: ServerSettings,
) -> McpOnDemand | None:
    """The MCP server (journal and run tools) over streamable HTTP at ``/mcp``, for keys
    with ``runs:write``; each tool answers for the key of its request (the same ownership
    rule as the runs API); the runs its tools start feed ``subscribers`` like the runs
    API's. Built on the first authorised request (:mod:`legato.server._mcp_mount`).
    None when the ``mcp`` extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        return None
    from starlette.routing import Route

    from legato.server._mcp_guard import McpGuard
    from legato.server._mcp_mount import McpOnDemand

    def build() -> MCPServer[Any]:
        from legato.mcp import create_mcp_server, mcp_http_app
        from legato.server._auth import request_principal

        server = create_mcp_server(store, pipelines=pipelines, subscribers=subscribers, identify=request_principal)
        mcp_http_app(server)  # creates the server's session manager, run by McpOnDemand.run
        guard.max_sessions = server.session_manager.max_sessions or 10_000  # no session exists before this
        return server

    on_demand = McpOnDemand(build)
    guard = McpGuard(on_demand, "runs:write", sessions_per_key=settings.mcp_sessions_per_key)
    app.router.routes.append(Route("/mcp", endpoint=guard, include_in_schema=False))
    return on_demand


def _store(settings: ServerSettings, config: LegatoConfig) -> RunStore:
    """The run store: ``server.database_url``, else ``store.url`` of ``legato.yaml``
    (where runs started from Python are recorded too), else SQLite beside the config."""
    from legato.store import RetentionConfig, RunStore, configured_url, store_key

    url = settings.database_url or configured_url(config) or settings.store_url(config.base_dir)
    retention = config.section("retention", RetentionConfig)
    return RunStore(url, encryption_key=store_key(config=config), retention=retention)


# FastAPI's own OpenTelemetry (newer releases) would add a second server span and its
# own HTTP metrics beside legato's (legato.observe), and it checks the providers on every
# request; legato's are the documented ones, so it is turned off where FastAPI has it.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    settings: ServerSettings | None = None,
    *,
    config: LegatoConfig | None = None,
    catalog: ModelCatalog | None = None,
) -> FastAPI:
    """The gateway application. ``catalog`` replaces the models of ``legato.yaml`` (tests, embedding)."""
    from legato.server._runs import load_pipelines
    from legato.server.ui import LiveEvents

    settings = settings or ServerSettings()
    config = config or LegatoConfig()
    pipelines = load_pipelines(config)
    store = _store(settings, config)  # opened by the lifespan
    live = LiveEvents()  # the dashboard's view of the runs this replica executes
    app = FastAPI(
        title="legato gateway",
        version=__version__,
        description="OpenAI- and Anthropic-compatible model gateway, runs API and admin API.",
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    app.state.load = _load(settings)
    app.openapi = _openapi_with_limits(app, settings)  # type: ignore[method-assign]
    _install_handlers(app)
    _include_routers(app)
    mcp = _mount_mcp(app, store, pipelines, [*_run_subscribers(), live], settings)
    gateway = partial(open_gateway, settings, config=config, catalog=catalog, store=store, pipelines=pipelines,
                      run_subscribers=[*_run_subscribers(), live])  # fmt: skip
    app.router.lifespan_context = _lifespan(gateway, live, mcp)
    _add_middleware(app, settings)
    return app


def _include_routers(app: FastAPI) -> None:
    """Every route module's router (each reads the gateway from the app's state), and
    the dashboard's at ``/ui``."""
    from legato.server import _admin, _gateway, _health, _retention, _runs, _schedules, _usage
    from legato.server.ui import include_dashboard

    for module in (_health, _gateway, _admin, _runs, _schedules, _retention, _usage):
        app.include_router(module.router)
    include_dashboard(app)


def _lifespan(
    gateway: Callable[..., AbstractAsyncContextManager[Gateway]], live: LiveEvents, mcp: McpOnDemand | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """Open the gateway (and the MCP sessions) and give the routes their state; on
    shutdown, drain on the signals, then close in reverse order. In a process ``legato
    serve`` owns, a store to create or upgrade is migrated by a child process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        from legato.server._serve import drain_on_signals, settle_heap
        from legato.server.ui import serve_dashboard

        load: Load = app.state.load
        owns_process = getattr(app.state, "owns_process", False)
        async with AsyncExitStack() as stack:
            gw = await stack.enter_async_context(gateway(migrate_in_child=owns_process))
            app.state.gateway = gw
            serve_dashboard(app, _dashboard_sources(gw, live))
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # unwound first: the task group then exits at once
            if mcp is not None:
                tg.start_soon(mcp.run)
            if load.admission is not None:
                tg.start_soon(load.admission.watch_loop)
            if owns_process:
                settle_heap()
            with drain_on_signals(load, delay_s=gw.settings.drain_delay_s):
                yield _early_answer(load, gw)

    return lifespan


def _add_middleware(app: FastAPI, settings: ServerSettings) -> None:
    from legato.observe import TraceMiddleware
    from legato.server._access import AccessLog

    def auth() -> Authenticator:
        gw: Gateway = app.state.gateway
        return gw.auth

    from legato.server._model_routes import ModelRoutes

    app.add_middleware(ModelRoutes)  # innermost: well-formed model calls skip FastAPI's routing
    app.add_middleware(Protection, load=app.state.load, auth=auth, throttle=_auth_throttle(app, settings))
    app.add_middleware(AccessLog)  # inside the span; outside everything that answers
    app.add_middleware(TraceMiddleware)  # outermost: refused requests are counted and traced too


def _auth_throttle(app: FastAPI, settings: ServerSettings) -> FailureThrottle | None:
    """Wrong API keys counted per client address (in Redis when configured)."""
    if not settings.auth_failures:
        return None

    def redis() -> Redis | None:
        gw: Gateway | None = getattr(app.state, "gateway", None)
        return gw.redis if gw is not None else None

    return FailureThrottle(
        "api-auth", limit=settings.auth_failures, window_s=settings.auth_failure_window_s, redis=redis,
        prefix=settings.redis_prefix,
    )  # fmt: skip


def _early_answer(load: Load, gw: Gateway) -> dict[str, Any]:
    """Lifespan state for the HTTP protocol: who refuses model calls at header time
    while admission is saturated (:mod:`legato.server._shed`)."""
    from legato.server._conn import EARLY_ANSWER
    from legato.server._shed import EarlyRefusal

    return {EARLY_ANSWER: EarlyRefusal(load.admission, gw.auth.known)} if load.admission is not None else {}


def _load(settings: ServerSettings) -> Load:
    admission = Admission(settings.admission, max_limit=settings.max_in_flight) if settings.admission.enabled else None
    return Load(
        max_in_flight=settings.max_in_flight,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        admission=admission,
    )


def _openapi_with_limits(app: FastAPI, settings: ServerSettings) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with this gateway's own request limits in the request schemas
    (``max_tokens`` up to ``max_output_tokens``, at most ``max_messages`` messages), so
    that what the schema allows is what the gateway accepts."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            models = schema.get("components", {}).get("schemas", {})
            for name, fields in (
                ("ChatCompletionRequest", ("max_tokens", "max_completion_tokens")),
                ("MessagesRequest", ("max_tokens",)),
            ):
                props = models.get(name, {}).get("properties", {})
                for field in fields:
                    if field in props:
                        props[field]["maximum"] = settings.max_output_tokens
                if "messages" in props:
                    props["messages"]["maxItems"] = settings.max_messages
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _run_subscribers() -> list[Subscriber]:
    """Run metrics and run/step spans (spans only once an OpenTelemetry SDK is installed)."""
    from legato.observe import MetricsSubscriber, TracingSubscriber

    return [MetricsSubscriber(), TracingSubscriber()]

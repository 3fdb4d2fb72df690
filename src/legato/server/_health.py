"""Liveness, readiness and Prometheus metrics.

``/healthz`` (liveness) answers 200 while the process serves HTTP, including the
drain window (status ``draining``), and 503 once it stops taking requests.
``/readyz`` answers 200 when the store answers, Redis answers (when configured,
unless ``limits_failure_mode`` is ``fail_open``: then it serves without) and
enough models can be served: at least one (``ready_when: any_model``, the default)
or every one (``all_models``). Its body lists each model's health (a group is
healthy while one of its deployments is) and the admission limit. It answers 503
from the first SIGTERM on (the drain window), so a load balancer stops sending new
connections while requests are still served. ``/metrics`` is the Prometheus
exposition of :mod:`legato.observe`'s metrics.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import Response

from legato.server._gateway import gateway, json_response
from legato.server._protect import Load, Phase

__all__ = ["router"]

log = logging.getLogger("legato.server")
router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness")
async def healthz(request: Request) -> Response:
    load: Load = request.app.state.load
    if load.phase is Phase.STOPPING:
        return json_response({"status": "stopping"}, status=503)
    return json_response({"status": "draining" if load.draining else "ok"})


async def _check_store(request: Request) -> str:
    from legato.store._database import READONLY

    engine = gateway(request).engine.execution_options(**READONLY)
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
    return "ok"


async def _check_models(request: Request, checks: dict[str, Any]) -> bool:
    """Per-model health into ``checks``; whether enough of them can be served."""
    gw = gateway(request)
    try:
        with anyio.fail_after(5.0):
            models = await gw.catalog.ready()
    except Exception as exc:
        log.warning("readiness: the model catalog did not answer: %s", type(exc).__name__, exc_info=exc)
        checks["models_error"] = f"failed: {type(exc).__name__}"
        return False
    checks["models"] = models
    unready = sorted(name for name, ok in models.items() if not ok)
    if unready:
        checks["models_not_ready"] = unready
    if not models:  # a gateway serving only pipelines
        return True
    return all(models.values()) if gw.settings.ready_when == "all_models" else any(models.values())


@router.get("/readyz", summary="Readiness: store, Redis and models")
async def readyz(request: Request) -> Response:
    load: Load = request.app.state.load
    checks: dict[str, Any] = {}
    ready = True
    for name, probe in (("store", _check_store), ("redis", _check_redis)):
        try:
            with anyio.fail_after(2.0):
                checks[name] = await probe(request)
        except Exception as exc:
            log.warning("readiness: %s check failed: %s", name, type(exc).__name__, exc_info=exc)
            checks[name] = f"failed: {type(exc).__name__}"
            ready = ready and _serves_without(name, request)
    ready = await _check_models(request, checks) and ready
    if load.admission is not None:
        checks["admission"] = load.admission.snapshot()
    if load.draining:
        checks["draining"] = True
        status = "draining"
    else:
        status = "ready" if ready else "not ready"
    ok = ready and not load.draining
    return json_response({"status": status, "checks": checks}, status=200 if ok else 503)


def _serves_without(dependency: str, request: Request) -> bool:
    """Whether the replica serves every request without ``dependency``: without Redis
    only under ``limits_failure_mode: fail_open`` (the limits go uncounted)."""
    return dependency == "redis" and gateway(request).settings.limits_failure_mode == "fail_open"


async def _check_redis(request: Request) -> str:
    redis = gateway(request).redis
    if redis is None:
        return "not configured"
    await redis.ping()
    return "ok"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    try:
        from legato.observe import default_metrics
    except ImportError:  # observability not installed in this build: the client's default registry
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest() + await _queue_metrics(request), media_type=CONTENT_TYPE_LATEST)
    body, content_type = default_metrics().render()
    return Response(body + await _queue_metrics(request), media_type=content_type)


async def _queue_metrics(request: Request) -> bytes:
    """Scale signals of the run queues, read from the store (the same on every replica):
    runs waiting, runs in flight and the age of the oldest waiting run, per queue; and
    the slots of each live ``legato worker`` with how many are busy."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from legato.errors import StoreError
    from legato.store import queue_stats, worker_stats

    runs = gateway(request).runs
    try:
        stats = await queue_stats(runs.store)
        fleet = await worker_stats(runs.store)
    except StoreError:
        log.warning("reading the queue depths for /metrics failed", exc_info=True)
        return b""
    registry = CollectorRegistry()
    depth = Gauge("legato_queue_depth", "Runs waiting in the queue.", ["queue"], registry=registry)
    flying = Gauge("legato_queue_in_flight", "Runs of the queue executing now.", ["queue"], registry=registry)
    oldest = Gauge(
        "legato_queue_oldest_age_seconds", "Age of the queue's oldest waiting run.", ["queue"], registry=registry
    )
    now = runs.store.clock()
    for q in stats:
        depth.labels(q.queue).set(q.queued)
        flying.labels(q.queue).set(q.running)
        oldest.labels(q.queue).set(0.0 if q.oldest_queued_at is None else max(0.0, now - q.oldest_queued_at))
    _worker_gauges(registry, fleet)
    return generate_latest(registry)


def _worker_gauges(registry: Any, fleet: list[Any]) -> None:
    from prometheus_client import Gauge

    slots = Gauge("legato_worker_slots", "Runs the worker may execute at once.", ["worker"], registry=registry)
    busy = Gauge("legato_worker_busy_slots", "Runs the worker executes now.", ["worker"], registry=registry)
    used = Gauge(
        "legato_worker_utilisation", "Busy slots / slots of the worker (0 to 1).", ["worker"], registry=registry
    )
    fleet_used = Gauge(
        "legato_workers_utilisation", "Busy slots / slots of all live workers (0 to 1).", registry=registry
    )
    live = Gauge("legato_workers", "Live workers (renewed in the last 30 s).", registry=registry)
    for w in fleet:
        slots.labels(w.owner).set(w.slots)
        busy.labels(w.owner).set(w.busy)
        used.labels(w.owner).set(w.utilisation)
    total = sum(w.slots for w in fleet)
    fleet_used.set(sum(w.busy for w in fleet) / total if total else 0.0)
    live.set(len(fleet))

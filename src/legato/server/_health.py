"""Liveness, readiness and Prometheus metrics.

``/healthz`` answers 200 while the process serves HTTP (it is not draining).
``/readyz`` answers 200 only when the store answers, Redis answers (when
configured) and every exposed model or group has a healthy deployment; otherwise
503 with what failed, so a load balancer takes the replica out. ``/metrics`` is
the Prometheus exposition of :mod:`legato.observe`'s metrics.
"""

from __future__ import annotations

from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import Response

from legato.server._gateway import gateway, json_response

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness")
async def healthz(request: Request) -> Response:
    if request.app.state.load.draining:
        return json_response({"status": "draining"}, status=503)
    return json_response({"status": "ok"})


async def _check_store(request: Request) -> str:
    from legato.store._database import READONLY

    engine = gateway(request).extras["engine"].execution_options(**READONLY)
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
    return "ok"


@router.get("/readyz", summary="Readiness: store, Redis and models")
async def readyz(request: Request) -> Response:
    gw = gateway(request)
    checks: dict[str, Any] = {}
    ready = not request.app.state.load.draining
    for name, probe in (("store", _check_store), ("redis", _check_redis)):
        try:
            with anyio.fail_after(2.0):
                checks[name] = await probe(request)
        except Exception as exc:
            checks[name] = f"failed: {type(exc).__name__}"
            ready = False
    try:
        with anyio.fail_after(5.0):
            models = await gw.catalog.ready()
    except Exception as exc:
        models = {}
        checks["models_error"] = f"failed: {type(exc).__name__}"
        ready = False
    checks["models"] = models
    if not models or not all(models.values()):
        ready = False
    if request.app.state.load.draining:
        checks["draining"] = True
    return json_response({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


async def _check_redis(request: Request) -> str:
    redis = gateway(request).redis
    if redis is None:
        return "not configured"
    await redis.ping()
    return "ok"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    try:
        from legato.observe import default_metrics
    except ImportError:  # observability not installed in this build: the client's default registry
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    body, content_type = default_metrics().render()
    return Response(body, media_type=content_type)

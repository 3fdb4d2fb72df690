"""Schedules API: list the ``schedules:`` of legato.yaml with their state, pause and resume them.

``GET /v1/schedules`` (scope ``runs:read``) lists every declared schedule: its
pipeline, rule, queue, whether it is paused (by whom, since when), its next tick and
its latest run. ``POST /v1/schedules/{name}/pause`` and ``/resume`` (scope ``admin``:
a schedule is the deployment's, not a tenant's) change it for every worker at once
and write an audit record. An unknown name is a 404 naming the declared ones.
Schedules fire from ``legato worker`` processes, never from a gateway replica.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from legato.errors import ScheduleNotFound
from legato.server._audit import AuditAction
from legato.server._auth import require
from legato.server._body import StrictJSONRoute
from legato.server._errors import GatewayError
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import ApiKey
from legato.server._runs import RunsService, runs_service

__all__ = ["router"]

router = APIRouter(route_class=StrictJSONRoute, tags=["Schedules"], responses=_ERRORS)


@router.get("/v1/schedules", summary="Schedules of legato.yaml with their state")
async def list_schedules(request: Request, _key: ApiKey = Depends(require("runs:read"))) -> Response:
    views = await runs_service(request).list_schedules()
    return json_response({"object": "list", "data": [asdict(v) for v in views]})


@router.post("/v1/schedules/{name}/pause", summary="Pause a schedule on every worker")
async def pause_schedule(name: str, request: Request, key: ApiKey = Depends(require("admin"))) -> Response:
    return await _set_paused(request, runs_service(request), name, True, key)


@router.post("/v1/schedules/{name}/resume", summary="Resume a schedule (from its next tick)")
async def resume_schedule(name: str, request: Request, key: ApiKey = Depends(require("admin"))) -> Response:
    return await _set_paused(request, runs_service(request), name, False, key)


async def _set_paused(request: Request, service: RunsService, name: str, paused: bool, key: ApiKey) -> Response:
    try:
        state = await service.pause_schedule(name, paused, by=f"API key {key.prefix or key.id}")
    except ScheduleNotFound as exc:
        raise GatewayError(404, "not_found", str(exc), code="schedule_not_found") from None
    action = AuditAction.SCHEDULE_PAUSED if paused else AuditAction.SCHEDULE_RESUMED
    client = request.client.host if request.client else None
    detail: dict[str, Any] = {"schedule": name}
    await gateway(request).audit.record(action, actor=key.id, actor_prefix=key.prefix, client=client, detail=detail)
    return json_response(asdict(state))

"""The dashboard's Schedules page: the ``schedules:`` of legato.yaml with their state
(rule, queue, paused or not, next tick, latest run), and Pause / Resume buttons for
admin keys. A pause holds for every worker at once; both are written to the audit log.
Requests from another site are refused, as for every dashboard action.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from legato.errors import ScheduleNotFound
from legato.server._audit import AuditAction
from legato.server.ui._access import Viewer, same_origin
from legato.server.ui._dashboard import dashboard

__all__ = ["router"]

router = APIRouter()


@router.get("/schedules")
async def schedules_page(request: Request) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    if d.sources.schedules is None:
        return d.page("error.html", request, status=404, title="Not available", message="No schedules here.")
    rows = await d.sources.schedules()
    can_pause = viewer.admin and d.sources.pause_schedule is not None
    return d.page("schedules.html", request, nav="schedules", rows=rows, can_pause=can_pause)


async def _change(request: Request, name: str, paused: bool) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    if not same_origin(request):
        return d.page("error.html", request, status=403, title="Forbidden", message="Cross-site request refused.")
    if not viewer.admin or d.sources.pause_schedule is None:
        message = "Pausing and resuming schedules needs an admin key."
        return d.page("error.html", request, status=403, title="Forbidden", message=message)
    try:
        await d.sources.pause_schedule(name, paused, f"dashboard {viewer.label}")
    except ScheduleNotFound as exc:
        return d.page("error.html", request, status=404, title="Schedule not found", message=str(exc))
    action = AuditAction.SCHEDULE_PAUSED if paused else AuditAction.SCHEDULE_RESUMED
    await d.audit(action, request, viewer, schedule=name)
    return RedirectResponse(f"{d.base}/schedules", status_code=303)


@router.post("/schedules/{name}/pause")
async def pause(request: Request, name: str) -> Response:
    return await _change(request, name, True)


@router.post("/schedules/{name}/resume")
async def resume(request: Request, name: str) -> Response:
    return await _change(request, name, False)

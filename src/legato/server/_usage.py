"""``GET /v1/spend``: a key's own spend, per day and model.

Spend rows belong to the key whose calls they record (the ownership rule of
:mod:`legato.server._auth`): any valid key reads its own rows; keys with the
``admin`` scope and the master key read everyone's (``/v1/admin/spend`` also
filters by key).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from legato.server._auth import principal_of, require
from legato.server._body import StrictJSONRoute
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import ApiKey

__all__ = ["router"]

router = APIRouter(route_class=StrictJSONRoute, tags=["Usage"], responses=_ERRORS)


@router.get("/v1/spend", summary="The calling key's spend per day and model (admin keys: every key's)")
async def own_spend(
    request: Request,
    since: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="First day, YYYY-MM-DD"),
    key: ApiKey = Depends(require(None)),
) -> Response:
    gw = gateway(request)
    await gw.spend.flush()
    rows = await gw.keys.spend_report(key_id=principal_of(key).tenant_filter, since_day=since)
    return json_response({"data": rows})

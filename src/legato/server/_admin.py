"""Admin API behind the master key (or a key with the ``admin`` scope): keys, spend and
deployment health."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from legato.server._auth import require
from legato.server._body import StrictJSONRoute
from legato.server._errors import GatewayError
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import INT32_MAX, MAX_BUDGET_USD, ApiKey

__all__ = ["KeyCreate", "router"]

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/admin", tags=["Admin"], responses=_ERRORS)

ScopeName = Literal["chat", "embed", "runs:read", "runs:write", "admin"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    scopes: list[ScopeName] = Field(min_length=1)
    models: list[str] | None = Field(None, description="Models the key may use; omitted: all.")
    rpm: int | None = Field(None, ge=0, le=INT32_MAX)
    tpm: int | None = Field(None, ge=0, le=INT32_MAX)
    budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD)
    budget_period: Literal["day", "month", "total"] = "month"


@router.post("/keys", status_code=201, summary="Create an API key (the secret is shown once)")
async def create_key(body: KeyCreate, request: Request, _: ApiKey = Depends(require("admin"))) -> Response:
    key, secret = await gateway(request).keys.create(
        body.name,
        body.scopes,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        budget_usd=body.budget_usd,
        budget_period=body.budget_period,
    )
    return json_response({**key.public(), "key": secret}, status=201)


@router.get("/keys", summary="List API keys")
async def list_keys(
    request: Request, include_revoked: bool = Query(False), _: ApiKey = Depends(require("admin"))
) -> Response:
    keys = await gateway(request).keys.list(include_revoked=include_revoked)
    return json_response({"data": [k.public() for k in keys]})


@router.get("/keys/{key_id}", summary="Show one API key (by id or prefix)")
async def get_key(key_id: str, request: Request, _: ApiKey = Depends(require("admin"))) -> Response:
    key = await gateway(request).keys.get(key_id)
    if key is None:
        raise GatewayError(404, "not_found", f"no API key {key_id!r}", code="key_not_found")
    return json_response(key.public())


@router.delete("/keys/{key_id}", summary="Revoke an API key (by id or prefix)")
async def revoke_key(key_id: str, request: Request, _: ApiKey = Depends(require("admin"))) -> Response:
    key = await gateway(request).keys.revoke(key_id)
    if key is None:
        raise GatewayError(404, "not_found", f"no API key {key_id!r}", code="key_not_found")
    return json_response(key.public())


@router.get("/spend", summary="Spend per key, day and model")
async def spend(
    request: Request,
    key: str | None = Query(None, description="Key id or prefix"),
    since: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="First day, YYYY-MM-DD"),
    _: ApiKey = Depends(require("admin")),
) -> Response:
    gw = gateway(request)
    await gw.spend.flush()
    key_id = None
    if key is not None:
        found = await gw.keys.get(key)
        if found is None:
            raise GatewayError(404, "not_found", f"no API key {key!r}", code="key_not_found")
        key_id = found.id
    rows = await gw.keys.spend_report(key_id=key_id, since_day=since)
    return json_response({"data": rows})


@router.get("/deployments", summary="Health of every deployment of the served routing groups")
async def deployments(request: Request, _: ApiKey = Depends(require("admin"))) -> Response:
    return json_response({"data": [asdict(h) for h in gateway(request).catalog.health()]})

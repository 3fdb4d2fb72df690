"""Admin API behind the master key (or a key with the ``admin`` scope): keys, spend,
deployment health and audit records.

Creating and revoking a key and changing its limits each write an audit record
(who, when, from where; :mod:`legato.server._audit`), listed by ``GET /v1/admin/audit``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ConfigDict, Field, field_validator
from starlette.responses import Response

from legato.server._audit import AuditAction
from legato.server._auth import require
from legato.server._body import StrictJSONRoute, WireModel
from legato.server._errors import GatewayError
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import INT32_MAX, MAX_BUDGET_USD, ApiKey

__all__ = ["KeyCreate", "router"]

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/admin", tags=["Admin"], responses=_ERRORS)

ScopeName = Literal["chat", "embed", "runs:read", "runs:write", "admin"]


def _guardrail_names(schema: dict[str, Any]) -> None:
    """In the schema: the guardrails registered when the schema is generated."""
    from legato.guardrails import names

    schema["anyOf"] = [{"type": "string", "enum": names()}, {"type": "null"}]


class KeyCreate(WireModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[ScopeName] = Field(min_length=1)
    models: list[str] | None = Field(None, description="Models the key may use; omitted: all.")
    rpm: int | None = Field(None, ge=0, le=INT32_MAX)
    tpm: int | None = Field(None, ge=0, le=INT32_MAX)
    budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD)
    budget_period: Literal["day", "month", "total"] = "month"
    guardrail: str | None = Field(
        None, description="A registered guardrail on every call of the key.", json_schema_extra=_guardrail_names
    )

    @field_validator("guardrail")
    @classmethod
    def _known_guardrail(cls, v: str | None) -> str | None:
        from legato.guardrails import names

        if v is not None and v not in names():
            raise ValueError(f"unknown guardrail {v!r}; known: {', '.join(names())}")
        return v


def _not_null(schema: dict[str, Any]) -> None:
    """In the schema: a value when given (``null`` is refused; leave the field out to keep it)."""
    schema["anyOf"] = [branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"]
    schema.pop("default", None)


class KeyLimits(WireModel):
    """New limits of a key: a field given as null clears that limit; a field left out keeps it."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, ge=0, le=INT32_MAX)
    tpm: int | None = Field(None, ge=0, le=INT32_MAX)
    budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD)
    budget_period: Literal["day", "month", "total"] | None = Field(None, json_schema_extra=_not_null)


async def _audit(request: Request, actor: ApiKey, action: AuditAction, target: ApiKey, **detail: Any) -> None:
    await gateway(request).audit.record(
        action, actor=actor.id, actor_prefix=actor.prefix, target=target.id,
        client=request.client.host if request.client else None, detail={"prefix": target.prefix, **detail},
    )  # fmt: skip


@router.post("/keys", status_code=201, summary="Create an API key (the secret is shown once)")
async def create_key(body: KeyCreate, request: Request, actor: ApiKey = Depends(require("admin"))) -> Response:
    key, secret = await gateway(request).keys.create(
        body.name,
        body.scopes,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        budget_usd=body.budget_usd,
        budget_period=body.budget_period,
        guardrail=body.guardrail,
    )
    await _audit(request, actor, AuditAction.KEY_CREATED, key, name=key.name, scopes=sorted(key.scopes))
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
async def revoke_key(key_id: str, request: Request, actor: ApiKey = Depends(require("admin"))) -> Response:
    key = await gateway(request).keys.revoke(key_id)
    if key is None:
        raise GatewayError(404, "not_found", f"no API key {key_id!r}", code="key_not_found")
    await _audit(request, actor, AuditAction.KEY_REVOKED, key)
    return json_response(key.public())


@router.patch("/keys/{key_id}", summary="Change a key's limits (rpm, tpm, budget)")
async def change_limits(
    key_id: str, body: KeyLimits, request: Request, actor: ApiKey = Depends(require("admin"))
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("budget_period", "month") is None:
        raise GatewayError(400, "invalid_request", "budget_period cannot be null", param="budget_period")
    found = await gateway(request).keys.update_limits(key_id, changes)
    if found is None:
        raise GatewayError(404, "not_found", f"no live API key {key_id!r}", code="key_not_found")
    before, after = found
    old = {k: getattr(before, k) for k in changes}
    await _audit(request, actor, AuditAction.KEY_LIMITS_CHANGED, after, before=old, after=changes)
    return json_response(after.public())


@router.get("/audit", summary="Audit records, newest first")
async def audit(
    request: Request,
    action: AuditAction | None = Query(None, description="Only this action"),
    since: float | None = Query(None, ge=0, le=1e11, description="Only records at or after this epoch time"),
    limit: int = Query(100, ge=1, le=1000),
    _: ApiKey = Depends(require("admin")),
) -> Response:
    records = await gateway(request).audit.list(since=since, action=action, limit=limit)
    return json_response({"data": [r.public() for r in records]})


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

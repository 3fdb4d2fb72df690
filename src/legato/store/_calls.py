"""Model calls kept with the runs: one row per call of a step or a gateway request.

A call's metadata (model, deployment, status, latency, time to first token, cache
hit, retries, routing moves, tokens, cost, trace id) is stored in the clear so that
the dashboard's aggregates run in SQL; what was said (the prompt, the answer, the
error message and the routing path) is redacted with the store's redactor and
sealed like every other payload when encryption at rest is on (decision 0032).

Calls of a run belong to the run's tenant and are read through the run (the caller
checks :func:`legato.store.visible_run` first); gateway calls belong to the key that
made them (its id is the tenant) and are read with a :class:`Principal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from legato.store._access import Principal
from legato.store._codec import decode, encode
from legato.store._rows import sealed
from legato.store._runs import RunStore
from legato.store._schema import model_calls, runs

__all__ = ["CallRow", "call_values", "gateway_calls", "record_calls", "run_calls"]

Source = Literal["step", "gateway"]
_DETAIL = ("prompt", "answer", "error", "path")


@dataclass(frozen=True, slots=True)
class CallRow:
    """A stored model call. ``detail`` holds ``prompt``, ``answer``, ``error`` and ``path``
    (the routing moves: ``failed``, ``target``, ``error``, ``kind``), already redacted."""

    id: int
    at: float
    source: str
    tenant: str
    run_id: str | None
    step: str | None
    item: int | None
    attempt: int | None
    request_id: str | None
    model: str
    deployment: str | None
    provider: str | None
    status: str
    latency_s: float
    ttft_s: float | None
    cached: bool
    retries: int
    fallbacks: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    trace_id: str | None
    detail: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def call_values(
    call: Mapping[str, Any],
    store: RunStore,
    *,
    source: Source,
    tenant: str | None = None,
    run_id: str | None = None,
    step: str | None = None,
    item: int | None = None,
    attempt: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The row of ``call`` (a :meth:`legato.observe.ModelCall.as_dict`): what was said is
    redacted and sealed; ``tenant`` None takes the run's when the row is written."""
    detail = store.redactor.value({k: call.get(k) for k in _DETAIL if call.get(k)})
    path = call.get("path") or ()
    cost = call.get("cost")
    ttft = call.get("ttft_s")
    return {
        "at": float(call.get("at") or store.clock()),
        "source": source,
        "tenant": tenant,
        "run_id": run_id,
        "step": step,
        "item": item,
        "attempt": attempt,
        "request_id": request_id,
        "model": str(call.get("model") or "")[:255],
        "deployment": (str(call["deployment"])[:255] if call.get("deployment") else None),
        "provider": (str(call["provider"])[:64] if call.get("provider") else None),
        "status": str(call.get("status") or "ok")[:64],
        "latency_s": float(call.get("latency_s") or 0.0),
        "ttft_s": float(ttft) if isinstance(ttft, int | float) else None,
        "cached": bool(call.get("cached")),
        "retries": _int(call.get("retries")),
        "fallbacks": len(path) if isinstance(path, list | tuple) else 0,
        "input_tokens": _int(call.get("input_tokens")),
        "output_tokens": _int(call.get("output_tokens")),
        "cost": float(cost) if isinstance(cost, int | float) else None,
        "trace_id": (str(call["trace_id"])[:32] if call.get("trace_id") else None),
        "detail": sealed(store.sealer, encode(detail)) if detail else None,
    }


async def record_calls(store: RunStore, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (from :func:`call_values`) in one transaction; a row without a
    tenant gets its run's."""
    if not rows:
        return

    def write(conn: Connection) -> None:
        owners: dict[str, str] = {}
        ready = []
        for row in rows:
            if row["tenant"] is None:
                run_id = row["run_id"]
                if run_id not in owners:
                    owner = conn.execute(sa.select(runs.c.tenant).where(runs.c.id == run_id)).scalar()
                    owners[run_id] = owner or ""
                row = {**row, "tenant": owners[run_id]}
            ready.append(row)
        conn.execute(model_calls.insert(), ready)

    await store.run_sync(write)


def _row(r: RowMapping) -> CallRow:
    values = dict(r)
    detail = decode(values.pop("detail"))
    return CallRow(**values, detail=detail if isinstance(detail, dict) else {})


async def run_calls(store: RunStore, run_id: str, *, limit: int = 500) -> list[CallRow]:
    """The model calls of a run, in the order they finished (the caller checked the run is visible)."""
    query = sa.select(model_calls).where(model_calls.c.run_id == run_id).order_by(model_calls.c.id).limit(limit)
    return await store.run_sync(lambda conn: [_row(r) for r in conn.execute(query).mappings()], readonly=True)


async def gateway_calls(
    store: RunStore, viewer: Principal, *, key_id: str | None = None, limit: int = 50, before: int | None = None
) -> list[CallRow]:
    """The newest gateway calls ``viewer`` may see (its own; every key's when it sees all,
    or those of ``key_id``), newest first; ``before``: the id of the last call of the previous page."""
    c = model_calls.c
    query = sa.select(model_calls).where(c.source == "gateway").order_by(c.id.desc()).limit(limit)
    tenant = viewer.tenant_filter
    if tenant is not None:
        query = query.where(c.tenant == tenant)
    elif key_id is not None:
        query = query.where(c.tenant == key_id)
    if before is not None:
        query = query.where(c.id < before)
    return await store.run_sync(lambda conn: [_row(r) for r in conn.execute(query).mappings()], readonly=True)

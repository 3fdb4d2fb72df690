"""Mapping between table rows and the store's records (values through the codec).

Rows are written through a :class:`~legato.redaction.Redactor`: error messages,
event data and step metadata lose anything secret-shaped on the way in. Step
outputs and run inputs are stored exactly as produced, because a resumed run
continues from them; a step must not return secrets.
"""

from __future__ import annotations

from typing import Any

from legato.redaction import Redactor
from legato.store._codec import decode, encode
from legato.store._crypto import Sealer
from legato.store._records import EventRecord, MapItemRecord, RunRecord, StepRecord, StoredStatus
from legato.store._search import decode_tags

__all__ = ["event_record", "event_row", "map_item_row", "run_record", "sealed", "step_record", "step_row"]


def sealed(sealer: Sealer | None, text: str) -> str:
    return text if sealer is None else sealer.seal(text)


def event_row(e: EventRecord, redactor: Redactor, sealer: Sealer | None) -> dict[str, Any]:
    data = sealed(sealer, encode(redactor.value(e.data))) if e.data else None
    return {"run_id": e.run_id, "type": e.type, "step": e.step, "at": e.at, "data": data}


def event_record(r: Any) -> EventRecord:
    return EventRecord(
        run_id=r["run_id"], type=r["type"], at=r["at"], step=r["step"], data=decode(r["data"]) or {}, id=r["id"]
    )


def step_row(a: StepRecord, redactor: Redactor, sealer: Sealer | None) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "step": a.step,
        "attempt": a.attempt,
        "status": a.status,
        "output": sealed(sealer, encode(a.output)) if a.status == "succeeded" else None,
        "error_type": a.error_type,
        "error": None if a.error is None else redactor.text(a.error),
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "duration_s": a.duration_s,
        "model": a.model,
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cost": a.cost,
        "meta": sealed(sealer, encode(redactor.value(a.meta))) if a.meta else None,
    }


def map_item_row(m: MapItemRecord, sealer: Sealer | None) -> dict[str, Any]:
    return {
        "run_id": m.run_id,
        "step": m.step,
        "item": m.index,
        "attempt": m.attempt,
        "output": sealed(sealer, encode(m.output)),
        "finished_at": m.finished_at,
        "duration_s": m.duration_s,
    }


def step_record(r: Any) -> StepRecord:
    return StepRecord(
        run_id=r["run_id"],
        step=r["step"],
        status=r["status"],
        attempt=r["attempt"],
        output=decode(r["output"]),
        error_type=r["error_type"],
        error=r["error"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        duration_s=r["duration_s"],
        model=r["model"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cost=r["cost"],
        meta=decode(r["meta"]) or {},
    )


def run_record(r: Any) -> RunRecord:
    return RunRecord(
        id=r["id"],
        pipeline=r["pipeline"],
        version_hash=r["version_hash"],
        inputs=decode(r["inputs"]) or {},
        status=StoredStatus(r["status"]),
        tenant=r["tenant"],
        idempotency_key=r["idempotency_key"],
        outputs=decode(r["outputs"]),
        error=r["error"],
        failed_step=r["failed_step"],
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        recoveries=r["recoveries"],
        cancel_requested=bool(r["cancel_requested"]),
        dead_reason=r["dead_reason"],
        cost=r["cost"],
        estimated_cost=r["estimated_cost"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        request_hash=r["request_hash"],
        source=r["source"],
        rerun_of=r.get("rerun_of"),
        rerun_from=r.get("rerun_from"),
        tags=decode_tags(r.get("tags")),
        subject=r.get("subject"),
        payloads=r.get("payloads"),
        cancelled_by=r["cancelled_by"],
        cancel_requested_at=r["cancel_requested_at"],
        queue=r["queue"],
        priority=r["priority"],
    )

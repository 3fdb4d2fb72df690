"""Audit records: who did what to access control, when, and from where.

Written for dashboard sign-in (successful and refused), sign-out, and every API key
creation, revocation and limit change; read by admins through
``GET /v1/admin/audit``. A record names the actor by key id and visible prefix
(``master`` for the master key), never by secret; ``client`` is the peer address.
Records are only ever inserted: nothing in legato updates or deletes them.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AuditAction", "AuditLog", "AuditRecord", "audit_table"]


class AuditAction(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_IN_REFUSED = "sign_in_refused"
    SIGN_OUT = "sign_out"
    KEY_CREATED = "key_created"
    KEY_REVOKED = "key_revoked"
    KEY_LIMITS_CHANGED = "key_limits_changed"
    RUN_STARTED = "run_started"
    STEP_ANSWERED = "step_answered"
    RUN_RERUN = "run_rerun"
    RUN_RESUMED = "run_resumed"
    RUN_CANCELLED = "run_cancelled"
    SCHEDULE_PAUSED = "schedule_paused"
    SCHEDULE_RESUMED = "schedule_resumed"
    SUBJECT_ERASED = "subject_erased"


audit_metadata = sa.MetaData()

audit_table = sa.Table(
    "audit_events",
    audit_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(32), nullable=True),
    sa.Column("actor_prefix", sa.String(16), nullable=True),
    sa.Column("target", sa.String(32), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_audit_events_at", "at"),
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: AuditAction
    at: float
    actor: str | None = None  # key id ("master" for the master key); None when nobody was identified
    actor_prefix: str | None = None
    target: str | None = None  # the key acted upon
    client: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "action": str(self.action),
            "actor": self.actor,
            "actor_prefix": self.actor_prefix,
            "target": self.target,
            "client": self.client,
            "detail": dict(self.detail),
        }


class AuditLog:
    """Audit records in table ``audit_events`` of ``engine``'s database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._reader = engine.execution_options(legato_readonly=True)

    async def record(
        self,
        action: AuditAction,
        *,
        actor: str | None = None,
        actor_prefix: str | None = None,
        target: str | None = None,
        client: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        rec = AuditRecord(action, self._clock(), actor, actor_prefix, target, (client or "")[:64] or None,
                          dict(detail or {}))  # fmt: skip
        values = {**rec.public(), "action": str(action), "detail": json.dumps(rec.detail, default=str)}
        values.pop("id")
        async with self.engine.begin() as conn:
            await conn.execute(audit_table.insert().values(values))
        return rec

    async def list(
        self, *, since: float | None = None, action: AuditAction | None = None, limit: int = 100
    ) -> builtins.list[AuditRecord]:
        """Records, newest first."""
        t = audit_table
        query = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(t.c.at >= since)
        if action is not None:
            query = query.where(t.c.action == str(action))
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditRecord(
                AuditAction(r.action),
                r.at,
                r.actor,
                r.actor_prefix,
                r.target,
                r.client,
                json.loads(r.detail) if r.detail else {},
                r.id,
            )
            for r in rows
        ]

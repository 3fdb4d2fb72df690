"""Retention and erasure in the gateway: the background task that applies the
``retention:`` rules, and ``DELETE /v1/subjects/{subject}`` (scope ``admin``).

Erasure removes the payloads of every run of the subject (runs carry it as a digest),
the journal entries about those runs and the response-cache entries tagged with it,
then writes one audit record naming the subject by digest only. The CLI's
``legato runs erase`` goes through :func:`erase_everywhere` too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from legato.config import LegatoConfig
from legato.server._audit import AuditAction, AuditLog
from legato.server._auth import require
from legato.server._body import StrictJSONRoute
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import ApiKey
from legato.store import ErasureReport, RetentionConfig, RunStore, apply_retention, erase_subject
from legato.store._retention import subject_key

__all__ = ["RetentionTask", "configured_cache", "erase_everywhere", "router"]

log = logging.getLogger("legato.server")
router = APIRouter(route_class=StrictJSONRoute, tags=["Data protection"], responses=_ERRORS)


class RetentionTask:
    """Applies the ``retention:`` rules every ``interval_s`` (at start, then periodically);
    owned by the gateway's task group. A failed pass is logged and retried next time."""

    def __init__(self, store: RunStore, config: RetentionConfig) -> None:
        self.store = store
        self.config = config

    @property
    def active(self) -> bool:
        rules = [self.config.default, *self.config.pipelines.values()]
        return any(r.keep_runs_days is not None or r.keep_payloads_days is not None for r in rules)

    async def run(self) -> None:
        while self.active:
            try:
                report = await apply_retention(self.store, self.config)
            except Exception as exc:  # the store is down for a while: try again next interval
                log.warning("retention pass failed: %s: %s", type(exc).__name__, exc)
            else:
                if report.deleted or report.expired:
                    log.info("retention: deleted %d runs, removed the payloads of %d", report.deleted, report.expired)
            await anyio.sleep(self.config.interval_s)


def configured_cache(config: LegatoConfig) -> Any:
    """A new backend for the ``cache:`` section when it is shared (SQLite, Redis); ``None``
    for none or the in-memory cache (which only its own process can reach)."""
    if not config.raw("cache"):
        return None
    from legato.cache import CacheConfig

    settings = CacheConfig.load(config)
    return None if settings.backend == "memory" else settings.backend_for(config.base_dir)


async def erase_everywhere(
    store: RunStore,
    subject: str,
    *,
    caches: list[Any],
    actor: str | None = None,
    actor_prefix: str | None = None,
    client: str | None = None,
) -> ErasureReport:
    """Erase ``subject`` from the store and ``caches``, and record it in the audit log."""
    report = await erase_subject(store, subject, caches=caches)
    await AuditLog(store.engine).record(
        AuditAction.SUBJECT_ERASED,
        actor=actor,
        actor_prefix=actor_prefix,
        target=subject_key(subject)[:32],
        client=client,
        detail=asdict(report),
    )
    return report


@router.delete("/v1/subjects/{subject}", summary="Erase a data subject's payloads, journal entries and cache entries")
async def erase(subject: str, request: Request, key: ApiKey = Depends(require("admin"))) -> Response:
    gw = gateway(request)
    shared = getattr(gw.catalog, "cache_backend", None)
    backend = shared() if shared is not None else None
    report = await erase_everywhere(
        gw.runs.store,
        subject,
        caches=[backend] if backend is not None else [],
        actor=key.id,
        actor_prefix=key.prefix,
        client=request.client.host if request.client else None,
    )
    return json_response({"object": "erasure", **asdict(report)})

"""Aggregates for the dashboard's charts, computed in SQL on SQLite and PostgreSQL alike.

- :func:`spend_by_day`: the cost of model calls per UTC day and model (or key).
- :func:`model_stats`: calls, failures and latency percentiles per model.
- :func:`run_durations`: finished runs per pipeline with duration percentiles.

Percentiles are nearest-rank (the smallest value with at least p% of the values at or
below it), computed with ``ROW_NUMBER``/``COUNT`` window functions and integer
arithmetic (``rank * 100 >= p * n``), which both databases run the same way; neither
SQLite nor a portable SQL has a percentile aggregate. Each is one query over the
indexed time range, restricted to the viewer's tenant unless it sees every tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.store._access import Principal
from legato.store._runs import RunStore
from legato.store._schema import model_calls, runs

__all__ = ["DurationStats", "ModelStats", "SpendPoint", "model_stats", "run_durations", "spend_by_day"]

DAY = 86400


@dataclass(frozen=True, slots=True)
class SpendPoint:
    day: str  # YYYY-MM-DD (UTC)
    series: str  # the model, or the key id ("" for local runs)
    cost: float
    calls: int


@dataclass(frozen=True, slots=True)
class ModelStats:
    model: str
    calls: int
    errors: int
    p50_s: float
    p95_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class DurationStats:
    pipeline: str
    runs: int
    failed: int
    p50_s: float
    p95_s: float
    max_s: float


def _day_number(store: RunStore, column: Any) -> Any:
    """Whole UTC days since the epoch (times are positive, so SQLite's truncating cast floors)."""
    if store.dialect == "postgresql":
        return sa.cast(sa.func.floor(column / DAY), sa.Integer)
    return sa.cast(column / DAY, sa.Integer)


def _own(query: Any, column: Any, viewer: Principal) -> Any:
    tenant = viewer.tenant_filter
    return query if tenant is None else query.where(column == tenant)


async def spend_by_day(
    store: RunStore, viewer: Principal, *, since: float, by: Literal["model", "tenant"] = "model"
) -> list[SpendPoint]:
    """Cost and calls per day and ``by`` (model or key) since ``since``, oldest day first."""
    c = model_calls.c
    day = _day_number(store, c.at).label("day")
    series = (c.model if by == "model" else c.tenant).label("series")
    query = (
        sa.select(day, series, sa.func.coalesce(sa.func.sum(c.cost), 0.0), sa.func.count())
        .where(c.at >= since)
        .group_by(day, series)
        .order_by(day, series)
    )
    query = _own(query, c.tenant, viewer)

    def read(conn: Connection) -> list[SpendPoint]:
        return [
            SpendPoint(datetime.fromtimestamp(int(d) * DAY, UTC).strftime("%Y-%m-%d"), str(s), float(cost), int(n))
            for d, s, cost, n in conn.execute(query)
        ]

    return await store.run_sync(read, readonly=True)


def _ranked(value: Any, partition: Any, *extra: Any) -> list[Any]:
    return [
        *extra,
        value.label("v"),
        sa.func.row_number().over(partition_by=partition, order_by=value).label("rn"),
        sa.func.count().over(partition_by=partition).label("n"),
    ]


def _percentile(ranked: Any, p: int) -> Any:
    return sa.func.min(sa.case((ranked.c.rn * 100 >= p * ranked.c.n, ranked.c.v)))


async def model_stats(store: RunStore, viewer: Principal, *, since: float) -> list[ModelStats]:
    """Per model since ``since``: calls, failed calls and p50/p95 latency (failures included)."""
    c = model_calls.c
    failed = sa.case((c.status != "ok", 1), else_=0).label("failed")
    inner = _own(sa.select(*_ranked(c.latency_s, c.model, c.model, failed)).where(c.at >= since), c.tenant, viewer)
    ranked = inner.subquery()
    query = (
        sa.select(
            ranked.c.model,
            sa.func.count(),
            sa.func.sum(ranked.c.failed),
            _percentile(ranked, 50),
            _percentile(ranked, 95),
        )
        .group_by(ranked.c.model)
        .order_by(ranked.c.model)
    )

    def read(conn: Connection) -> list[ModelStats]:
        return [
            ModelStats(str(m), int(n), int(e or 0), float(p50), float(p95)) for m, n, e, p50, p95 in conn.execute(query)
        ]

    return await store.run_sync(read, readonly=True)


async def run_durations(store: RunStore, viewer: Principal, *, since: float) -> list[DurationStats]:
    """Per pipeline, the runs that finished since ``since``: count, failures and p50/p95/max duration."""
    r = runs.c
    duration = r.finished_at - r.started_at
    failed = sa.case((r.status.in_(("failed", "dead")), 1), else_=0).label("failed")
    inner = (
        sa.select(*_ranked(duration, r.pipeline, r.pipeline, failed))
        .where(r.finished_at >= since)
        .where(r.started_at.is_not(None))
    )
    ranked = _own(inner, r.tenant, viewer).subquery()
    query = (
        sa.select(
            ranked.c.pipeline,
            sa.func.count(),
            sa.func.sum(ranked.c.failed),
            _percentile(ranked, 50),
            _percentile(ranked, 95),
            sa.func.max(ranked.c.v),
        )
        .group_by(ranked.c.pipeline)
        .order_by(ranked.c.pipeline)
    )

    def read(conn: Connection) -> list[DurationStats]:
        return [
            DurationStats(str(p), int(n), int(f or 0), float(p50), float(p95), float(mx))
            for p, n, f, p50, p95, mx in conn.execute(query)
        ]

    return await store.run_sync(read, readonly=True)

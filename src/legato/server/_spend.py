"""The durable record of who spent what: per key, day and model, in the ``spend`` table.

Calls add to an in-memory buffer; :meth:`SpendRecorder.run` flushes it every
``interval_s`` seconds with one upsert per (key, day, model), and
:meth:`SpendRecorder.flush` runs once more at shutdown. Writing a row per request
would put a database round trip on every request's path; a second of buffering
costs at most a second of spend records if the process is killed (the live budget
counters in Redis are updated per request and are not affected).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from legato.server._flushing import flush_every
from legato.server._keys import spend_table

__all__ = ["SpendRecorder"]


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


@functools.lru_cache(maxsize=4)
def _day(number: int) -> str:
    """``YYYY-MM-DD`` of UTC day ``number`` (days since the epoch): once a day, not once a call."""
    return datetime.fromtimestamp(number * 86_400, UTC).strftime("%Y-%m-%d")


class SpendRecorder:
    def __init__(self, engine: AsyncEngine, *, interval_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._clock = clock
        self._buffer: dict[tuple[str, str, str], _Totals] = {}
        self._lock = anyio.Lock()

    def add(self, key_id: str, model: str, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        day = _day(int(self._clock() // 86_400))
        totals = self._buffer.get((key_id, day, model))
        if totals is None:
            totals = self._buffer[(key_id, day, model)] = _Totals()
        totals.requests += 1
        totals.input_tokens += input_tokens
        totals.output_tokens += output_tokens
        totals.cost += cost or 0.0

    async def run(self) -> None:
        """Flush periodically until cancelled (owned by the app's task group)."""
        await flush_every(self.interval_s, self.flush, "spend records")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, {}
            try:
                async with self.engine.begin() as conn:
                    for (key_id, day, model), t in sorted(batch.items()):
                        await conn.execute(self._upsert(key_id, day, model, t))
            except BaseException:
                for k, t in batch.items():  # keep them for the next attempt
                    cur = self._buffer.setdefault(k, _Totals())
                    cur.requests += t.requests
                    cur.input_tokens += t.input_tokens
                    cur.output_tokens += t.output_tokens
                    cur.cost += t.cost
                raise

    def _upsert(self, key_id: str, day: str, model: str, t: _Totals) -> sa.Executable:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(spend_table)
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(spend_table)  # type: ignore[assignment]
        else:  # pragma: no cover - only the two supported databases reach here
            raise RuntimeError(f"unsupported database for spend records: {dialect}")
        stmt = stmt.values(
            key_id=key_id,
            day=day,
            model=model,
            requests=t.requests,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            cost=t.cost,
        )
        c = spend_table.c
        return stmt.on_conflict_do_update(
            index_elements=[c.key_id, c.day, c.model],
            set_={
                "requests": c.requests + stmt.excluded.requests,
                "input_tokens": c.input_tokens + stmt.excluded.input_tokens,
                "output_tokens": c.output_tokens + stmt.excluded.output_tokens,
                "cost": c.cost + stmt.excluded.cost,
            },
        )

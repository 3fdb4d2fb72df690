"""How long each item of a map step took, kept with the step's stored attempt.

A map step's item rows (``map_items``) live only until the step finishes; what an
operator needs afterwards (which item was slow, how many attempts it took) is kept
in the step record's ``meta`` as ``items``: ``[index, attempt, duration_s,
finished_at]`` per item, the slowest ``MAX_ITEMS`` when there are more (with
``items_total``). Items reused from a checkpoint by a resume were timed by the
earlier run and are not listed again.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_ITEMS", "ItemTimes"]

MAX_ITEMS = 2000


class ItemTimes:
    def __init__(self) -> None:
        self._by_step: dict[str, list[list[float]]] = {}

    def add(self, step: str, index: int, attempt: int, duration_s: float, at: float) -> None:
        self._by_step.setdefault(step, []).append([index, attempt, round(duration_s, 4), round(at, 3)])

    def take(self, step: str) -> dict[str, Any]:
        """The ``meta`` entries for ``step`` (empty when none of its items was timed)."""
        rows = self._by_step.pop(step, None)
        if not rows:
            return {}
        if len(rows) <= MAX_ITEMS:
            return {"items": sorted(rows)}
        slowest = sorted(rows, key=lambda r: -r[2])[:MAX_ITEMS]
        return {"items": sorted(slowest), "items_total": len(rows)}

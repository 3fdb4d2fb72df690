"""Events of runs executing in this process, for the dashboard's live view.

The run store writes a step's ``StepStarted`` event together with the next
checkpoint, so from the store alone a step shows as running only once some other
step finished. When runs execute in the process that serves the dashboard (the
usual ``legato serve``), subscribing a :class:`LiveEvents` to them shows every
start, retry and finish the moment it happens. Memory is bounded: the events of
at most ``max_runs`` runs are kept, finished runs are forgotten after ``keep_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from legato.engine import (
    Event,
    MapItemFinished,
    RunFinished,
    StepFailed,
    StepProgress,
    StepRetried,
    StepSkipped,
    StepStarted,
)
from legato.redaction import default_redactor

__all__ = ["LiveEvents", "RowPatches"]


def _data(e: Event) -> dict[str, Any]:
    if isinstance(e, StepStarted):
        return {"attempt": e.attempt}
    if isinstance(e, StepRetried):
        message = default_redactor().text(e.message)  # like the stored events the page shows otherwise
        data: dict[str, Any] = {"attempt": e.attempt, "delay_s": e.delay_s, "error_type": e.error_type}
        data["message"] = message
        if e.index is not None:
            data["index"] = e.index
        return data
    if isinstance(e, StepFailed):
        message = default_redactor().text(e.message)
        failed = {"attempt": e.attempt, "error_type": e.error_type, "message": message, "cancelled": e.cancelled}
        return failed if e.index is None else {**failed, "index": e.index}
    if isinstance(e, StepSkipped):
        return {"reason": e.reason}
    return {"attempt": getattr(e, "attempt", 1)}


class LiveEvents:
    """An engine event subscriber remembering recent step events per run."""

    def __init__(self, *, max_runs: int = 256, keep_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.max_runs = max_runs
        self.keep_s = keep_s
        self._clock = clock
        self._runs: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._finished: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, MapItemFinished | StepProgress):
            return  # one per map item or journal entry: the step's own events say enough for the live view
        with self._lock:
            if isinstance(event, RunFinished):
                self._finished[event.run_id] = self._clock()
            step = getattr(event, "step", None)
            if step is not None:
                events = self._runs.setdefault(event.run_id, [])
                events.append({"type": type(event).__name__, "step": step, "at": event.at, "data": _data(event)})
                self._runs.move_to_end(event.run_id)
            self._forget()

    def _forget(self) -> None:
        now = self._clock()
        for run_id, at in list(self._finished.items()):
            if now - at > self.keep_s:
                self._runs.pop(run_id, None)
                del self._finished[run_id]
        while len(self._runs) > self.max_runs:
            run_id, _ = self._runs.popitem(last=False)
            self._finished.pop(run_id, None)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._runs.get(run_id, ()))


def merge_events(stored: list[Any], live: list[dict[str, Any]]) -> list[Any]:
    """Stored events plus the live ones the store does not have yet, in time order."""
    seen = {(getattr(e, "type", ""), getattr(e, "step", None), round(float(getattr(e, "at", 0.0)), 6)) for e in stored}
    extra = [e for e in live if (e["type"], e["step"], round(float(e["at"]), 6)) not in seen]
    if not extra:
        return stored
    return sorted([*stored, *extra], key=lambda e: float(e["at"] if isinstance(e, dict) else e.at))


class RowPatches:
    """What a live list sends: only the rows that changed since the last update, and
    the order of the page (so new rows are placed and rows that left are removed). An
    idle list sends the same patch every time, which the stream does not resend."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._sent: dict[str, str] = {}

    def update(self, rows: Mapping[str, str]) -> dict[str, Any]:
        changed = {key: html for key, html in rows.items() if self._sent.get(key) != html}
        self._sent = dict(rows)
        return {"target": self.target, "html": changed, "order": list(rows)}

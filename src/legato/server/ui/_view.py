"""What the dashboard shows of a run, computed from the store's records.

Finished attempts come from the store's step rows; steps still running are known
only from their ``StepStarted`` event (the store keeps no row for an attempt in
flight), so both are merged here. A retry of one item of a map step carries the
item's index: it is that item's attempt, not the step's, and is listed per item.
Once a run has ended nothing in it is "running" or "pending": a step that never
started says it did not run and why. The graph is laid out in layers (a step's layer
is the length of the longest dependency chain before it), which is enough for the
pipelines legato runs and needs no layout library; the Gantt chart maps each
attempt's start and end onto the run's time span, so steps that ran at the same
time are drawn side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legato.store import CallRow

__all__ = ["GanttBar", "GraphLayout", "RunView", "StepView", "build_run_view", "by_step", "gantt", "layout_graph"]

_TERMINAL_STEP = frozenset({"succeeded", "failed", "skipped", "cancelled"})


NOT_RUN = "not_run"


@dataclass
class Attempt:
    attempt: int
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    error_type: str | None = None
    error: str | None = None
    item: int | None = None  # the map item this attempt ran, None for the whole step


@dataclass
class ItemView:
    """One item of a map step: its last status, attempts, and how long its last attempt took."""

    index: int
    status: str
    attempts: int
    duration_s: float | None = None
    finished_at: float | None = None
    error: str | None = None

    @property
    def started_at(self) -> float | None:
        if self.finished_at is None or self.duration_s is None:
            return None
        return self.finished_at - self.duration_s


@dataclass
class StepView:
    name: str
    status: str = "pending"
    deps: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    item_attempts: list[Attempt] = field(default_factory=list)  # per map item, from item retries
    items: list[ItemView] = field(default_factory=list)  # failed first, then the slowest
    items_total: int = 0
    retries: int = 0
    output: Any = None
    has_output: bool = False
    error_type: str | None = None
    error: str | None = None
    skip_reason: str | None = None
    not_run_reason: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)


@dataclass
class RunView:
    id: str
    pipeline: str
    status: str
    inputs: dict[str, Any]
    steps: dict[str, StepView]
    edges: list[tuple[str, str]]
    created_at: float
    started_at: float | None
    finished_at: float | None
    cost: float | None
    error: str | None
    failed_step: str | None
    outputs: dict[str, Any] | None
    graph_known: bool
    interrupted: bool = False  # running, but its worker stopped: it can be resumed
    payloads_note: str | None = None  # why the run has no payloads (retention, erasure, metadata-only)

    @property
    def terminal(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled", "dead")

    def duration_s(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (self.finished_at or now) - self.started_at)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _event_kind(type_name: str) -> str:
    """``StepStarted``, ``step_started`` and ``step.started`` all become ``step_started``."""
    out = []
    for i, ch in enumerate(type_name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out).replace(".", "_").replace("__", "_")


def build_run_view(
    run: Any,
    steps: Iterable[Any],
    events: Iterable[Any] = (),
    graph: Mapping[str, Sequence[str]] | None = None,
    item_times: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> RunView:
    """Merge a run record, its step attempt records and its events into a view.

    ``item_times`` are the checkpointed items of map steps still running (the store's
    ``map_item_times``); a finished map step keeps its items in its record's meta.

    ``graph`` maps each step to the steps it depends on; without it the view has
    no edges and lays the steps out by start time.
    """
    views: dict[str, StepView] = {}
    if graph:
        for name, deps in graph.items():
            views[name] = StepView(name=name, deps=[d for d in deps if d in graph])

    def view(name: str) -> StepView:
        if name not in views:
            views[name] = StepView(name=name)
        return views[name]

    for ev in events:
        name = _get(ev, "step")
        if name:
            _apply_event(view(name), _event_kind(str(_get(ev, "type", ""))), _get(ev, "data") or {}, _get(ev, "at"))

    for rec in sorted(steps, key=lambda r: (_get(r, "step"), _get(r, "attempt", 1))):
        s = view(_get(rec, "step"))
        status = str(_get(rec, "status"))
        if status == "skipped":
            s.status, s.finished_at = "skipped", _get(rec, "finished_at")
            s.skip_reason = s.skip_reason or (_get(rec, "meta") or {}).get("reason")
            continue
        number = int(_get(rec, "attempt", 1) or 1)
        att = _attempt(s, number)
        if att is None and s.item_attempts:  # a map step's number counts its items' attempts
            att = _attempt(s, None)
        if att is None:
            # No events for this attempt: the record's times are the whole step's.
            att = Attempt(attempt=number, status=status, started_at=_get(rec, "started_at"))
            s.attempts.append(att)
        att.status = status
        att.started_at = att.started_at or _get(rec, "started_at")
        att.finished_at = _get(rec, "finished_at") or att.finished_at
        if status != "succeeded":
            att.error_type, att.error = _get(rec, "error_type"), _get(rec, "error")
        s.status = status
        known = [x for x in (s.started_at, _get(rec, "started_at"), att.started_at) if x is not None]
        s.started_at = min(known) if known else None
        s.finished_at = att.finished_at or s.finished_at
        if status == "succeeded":
            s.output, s.has_output = _get(rec, "output"), True
        if status in ("failed", "cancelled"):
            s.error_type, s.error = att.error_type, att.error
        for name in ("model", "input_tokens", "output_tokens", "cost"):
            value = _get(rec, name)
            if value is not None:
                setattr(s, name, value)
        s.meta = dict(_get(rec, "meta") or {})
    for s in views.values():
        s.attempts.sort(key=lambda a: a.attempt)
        s.item_attempts.sort(key=lambda a: (a.item or 0, a.attempt))
        s.retries = max(s.retries, max(0, len(s.attempts) - 1) + len(s.item_attempts) - len(_items(s)))
        _settle_items(s)
        times = s.meta.get("items") or (item_times or {}).get(s.name) or ()
        s.items = _item_views(s, times)
        s.items_total = int(s.meta.get("items_total") or len(s.items))

    run_status = str(_get(run, "status"))
    if run_status in ("succeeded", "failed", "cancelled", "dead"):
        _settle(views.values(), run_status, _get(run, "failed_step"))
    edges = [(d, s.name) for s in views.values() for d in s.deps if d in views]
    return RunView(
        id=str(_get(run, "id")),
        pipeline=str(_get(run, "pipeline")),
        status=run_status,
        inputs=dict(_get(run, "inputs") or {}),
        steps=views,
        edges=edges,
        created_at=float(_get(run, "created_at", 0.0) or 0.0),
        started_at=_get(run, "started_at") or _first([s.started_at for s in views.values()]),
        finished_at=_get(run, "finished_at"),
        cost=_get(run, "cost"),
        error=_get(run, "error"),
        failed_step=_get(run, "failed_step"),
        outputs=_get(run, "outputs"),
        graph_known=bool(graph),
        payloads_note=_payloads_note(_get(run, "payloads")),
    )


def _payloads_note(state: str | None) -> str | None:
    from legato.store import explain_payloads

    return explain_payloads(state)


_WHY_NOT_RUN = {
    "failed": "the run failed before this step could start",
    "cancelled": "the run was cancelled before this step started",
    "dead": "the run's worker stopped before this step started",
    "succeeded": "the run ended without reaching this step",
}


def _settle(steps: Iterable[StepView], run_status: str, failed_step: str | None) -> None:
    """A run that ended has nothing running or pending: attempts still open did not
    finish, and steps that never started did not run (with the reason)."""
    stopped = "cancelled" if run_status != "succeeded" else "succeeded"
    for s in steps:
        if s.status == "running":
            s.status = stopped
        for a in (*s.attempts, *s.item_attempts):
            if a.status == "running":
                a.status = stopped
        if s.status == "pending":
            s.status = NOT_RUN
            why = _WHY_NOT_RUN[run_status]
            if run_status == "failed" and failed_step:
                why = f"the run failed at step {failed_step!r} before this step could start"
            s.not_run_reason = why


def _items(s: StepView) -> set[int]:
    return {a.item for a in s.item_attempts if a.item is not None}


def _settle_items(s: StepView) -> None:
    """An item's last attempt ends with its step: it succeeded when the step did (every
    item must have); otherwise the step's failure stopped it."""
    if s.status not in _TERMINAL_STEP:
        return
    for a in s.item_attempts:
        if a.status == "running":
            a.status = "succeeded" if s.status == "succeeded" else "cancelled"
            a.finished_at = a.finished_at or s.finished_at


_ITEM_ORDER = {"failed": 0, "cancelled": 1, "running": 2}


def _item_views(s: StepView, times: Iterable[Sequence[float]]) -> list[ItemView]:
    """Each item that finished (its timing) or was retried (its attempts), the items
    that failed first, then the slowest."""
    items: dict[int, ItemView] = {}
    for index, attempt, duration, at in times:
        items[int(index)] = ItemView(int(index), "succeeded", int(attempt), float(duration), float(at))
    for a in s.item_attempts:
        if a.item is None:
            continue
        item = items.get(a.item)
        if item is None:
            item = items[a.item] = ItemView(a.item, a.status, a.attempt, finished_at=a.finished_at)
            if a.started_at is not None and a.finished_at is not None:
                item.duration_s = a.finished_at - a.started_at
        item.attempts = max(item.attempts, a.attempt)
        if a.error_type and (item.status != "succeeded" or item.error is None):
            item.error = f"{a.error_type}: {a.error}" if a.error else a.error_type
        if item.status != "succeeded" and a.attempt == item.attempts:
            item.status = a.status
    return sorted(items.values(), key=lambda i: (_ITEM_ORDER.get(i.status, 3), -(i.duration_s or 0.0), i.index))


def _attempt(s: StepView, number: int | None) -> Attempt | None:
    if number is None:
        return s.attempts[-1] if s.attempts else None
    return next((a for a in s.attempts if a.attempt == number), None)


def _apply_event(s: StepView, kind: str, data: Mapping[str, Any], at: float | None) -> None:
    """One step event. The engine emits ``StepStarted`` once per step; each retry is a
    ``StepRetried`` (the attempt that failed and the delay before the next one)."""
    if kind == "step_started":
        s.attempts.append(Attempt(attempt=int(data.get("attempt", 1)), status="running", started_at=at))
        s.status = "running"
        s.started_at = s.started_at if s.started_at is not None else at
    elif kind == "step_retried" and data.get("index") is not None:
        _item_retried(s, int(data["index"]), data, at)
    elif kind == "step_retried":
        s.retries += 1
        failed = int(data.get("attempt", len(s.attempts) or 1))
        att = _attempt(s, failed) or _attempt(s, None)
        if att is not None:
            att.status, att.finished_at = "failed", at
            att.error_type, att.error = data.get("error_type"), data.get("message")
        start = (at or 0.0) + float(data.get("delay_s") or 0.0)
        s.attempts.append(Attempt(attempt=failed + 1, status="running", started_at=start))
    elif kind == "step_skipped":
        s.status, s.skip_reason = "skipped", data.get("reason")
    elif kind == "step_failed" and data.get("index") is not None:
        _item_failed(s, int(data["index"]), data, at)
        _apply_event(s, kind, {k: v for k, v in data.items() if k != "index"}, at)
    elif kind in ("step_finished", "step_failed"):
        status = "succeeded" if kind == "step_finished" else ("cancelled" if data.get("cancelled") else "failed")
        s.status, s.finished_at = status, at
        att = _attempt(s, int(data["attempt"]) if "attempt" in data else None) or _attempt(s, None)
        if att is not None:
            att.status, att.finished_at = status, at
            if kind == "step_failed":
                att.error_type, att.error = data.get("error_type"), data.get("message")
        if kind == "step_failed":
            s.error_type, s.error = data.get("error_type"), data.get("message")


def _item_retried(s: StepView, index: int, data: Mapping[str, Any], at: float | None) -> None:
    failed = int(data.get("attempt", 1))
    att = next((a for a in s.item_attempts if a.item == index and a.attempt == failed), None)
    if att is None:  # the first attempt of an item starts with its step (or the previous item)
        att = Attempt(attempt=failed, status="failed", item=index, started_at=s.started_at if failed == 1 else None)
        s.item_attempts.append(att)
    att.status, att.finished_at = "failed", at
    att.error_type, att.error = data.get("error_type"), data.get("message")
    start = (at or 0.0) + float(data.get("delay_s") or 0.0)
    s.item_attempts.append(Attempt(attempt=failed + 1, status="running", started_at=start, item=index))


def _item_failed(s: StepView, index: int, data: Mapping[str, Any], at: float | None) -> None:
    """The item whose failure failed its step: its last attempt failed."""
    last = max((a for a in s.item_attempts if a.item == index), key=lambda a: a.attempt, default=None)
    if last is None or last.status != "running":
        last = Attempt(attempt=(last.attempt + 1) if last else 1, status="failed", item=index, started_at=None)
        s.item_attempts.append(last)
    last.status, last.finished_at = "failed", at
    last.error_type, last.error = data.get("error_type"), data.get("message")


def _first(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


# -- graph layout -------------------------------------------------------------------


@dataclass
class NodeBox:
    name: str
    status: str
    x: float
    y: float
    label: str


@dataclass
class GraphLayout:
    width: float
    height: float
    nodes: list[NodeBox]
    edges: list[tuple[str, str, str]]  # (from, to, SVG path)


NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150.0, 36.0, 60.0, 18.0, 12.0


def _layers(view: RunView) -> list[list[str]]:
    names = list(view.steps)
    if not view.graph_known:
        return _layers_from_timing(view)
    level: dict[str, int] = {}

    def depth(n: str, seen: frozenset[str] = frozenset()) -> int:
        if n in level:
            return level[n]
        deps = [d for d in view.steps[n].deps if d not in seen]
        level[n] = 1 + max((depth(d, seen | {n}) for d in deps), default=-1)
        return level[n]

    for n in names:
        depth(n)
    layers: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for n in names:
        layers[level[n]].append(n)
    # One barycentre pass: order each layer by the mean position of its parents.
    position: dict[str, float] = {}
    for i, layer in enumerate(layers):
        if i:
            layer.sort(
                key=lambda n: (
                    sum(position.get(d, 0.0) for d in view.steps[n].deps) / max(1, len(view.steps[n].deps)),
                    n,
                )
            )
        for j, n in enumerate(layer):
            position[n] = float(j)
    return layers


def _layers_from_timing(view: RunView) -> list[list[str]]:
    """Without the graph: a step goes one layer after the latest step that finished
    before it started (what it could have waited for); steps that never started go last.
    No edge is drawn: dependencies are not invented."""
    eps = 1e-3
    started = sorted((s for s in view.steps.values() if s.started_at is not None), key=lambda s: (s.started_at, s.name))
    level: dict[str, int] = {}
    for s in started:
        before = [
            level[t.name]
            for t in started
            if t.name in level and t.finished_at is not None and t.finished_at <= (s.started_at or 0.0) + eps
        ]
        level[s.name] = 1 + max(before, default=-1)
    rest = sorted(n for n in view.steps if n not in level)
    depth = max(level.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(depth + (1 if rest else 0))]
    for name, i in level.items():
        layers[i].append(name)
    if rest:
        layers[-1].extend(rest)
    return layers


def layout_graph(view: RunView) -> GraphLayout:
    """Boxes left to right by layer; edges as curves between box sides that cross
    the layers in between through the gaps between boxes, never under a box."""
    layers = _layers(view)
    tallest = max((len(layer) for layer in layers), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    nodes: dict[str, NodeBox] = {}
    layer_of: dict[str, int] = {}
    for i, layer in enumerate(layers):
        offset = (height - (len(layer) * NODE_H + (len(layer) - 1) * GAP_Y)) / 2
        for j, name in enumerate(layer):
            label = name if len(name) <= 18 else name[:17] + "…"
            nodes[name] = NodeBox(
                name, view.steps[name].status, PAD + i * (NODE_W + GAP_X), offset + j * (NODE_H + GAP_Y), label
            )
            layer_of[name] = i
    edges = []
    for a, b in view.edges:
        na, nb = nodes[a], nodes[b]
        x1, y1 = na.x + NODE_W, na.y + NODE_H / 2
        x2, y2 = nb.x, nb.y + NODE_H / 2
        path = [f"M{x1:.1f},{y1:.1f}"]
        for k in range(layer_of[a] + 1, layer_of[b]):
            lx = PAD + k * (NODE_W + GAP_X)
            wanted = y1 + (y2 - y1) * (lx + NODE_W / 2 - x1) / max(x2 - x1, 1.0)
            yk = _free_lane([nodes[n] for n in layers[k]], wanted)
            path.append(_curve(x1, y1, lx, yk) + f" L{lx + NODE_W:.1f},{yk:.1f}")
            x1, y1 = lx + NODE_W, yk
        path.append(_curve(x1, y1, x2, y2))
        edges.append((a, b, " ".join(path)))
    width = PAD * 2 + len(layers) * NODE_W + max(0, len(layers) - 1) * GAP_X
    return GraphLayout(width=max(width, NODE_W + 2 * PAD), height=height, nodes=list(nodes.values()), edges=edges)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (x1 + x2) / 2
    return f"C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def _free_lane(boxes: list[NodeBox], wanted: float) -> float:
    """The gap in a layer (above, between or below its boxes) nearest to ``wanted``."""
    if not boxes:
        return wanted
    tops = sorted(n.y for n in boxes)
    lanes = [tops[0] - GAP_Y / 2] + [t + NODE_H + GAP_Y / 2 for t in tops]
    return min(lanes, key=lambda y: abs(y - wanted))


# -- Gantt timeline -------------------------------------------------------------------


@dataclass
class GanttBar:
    step: str
    attempt: int
    status: str
    row: int
    x: float  # fraction of the run's span, 0..1
    width: float  # fraction, > 0
    start_s: float  # seconds after the run started
    duration_s: float
    item: int | None = None  # a map item's last attempt, drawn in its step's item lane


def gantt(view: RunView, now: float) -> tuple[list[GanttBar], float]:
    """Bars for every attempt that started, one row per step, and the span in seconds."""
    origin = view.started_at
    if origin is None:
        return [], 0.0
    end = view.finished_at or now
    for s in view.steps.values():
        for a in s.attempts:
            end = max(end, a.finished_at or (now if a.status == "running" and not view.terminal else end))
    span = max(end - origin, 1e-3)
    rows = [n for n in _order_for_rows(view) if view.steps[n].attempts or view.steps[n].started_at is not None]
    bars: list[GanttBar] = []
    row = 0
    for name in rows:
        for a in view.steps[name].attempts:
            if a.started_at is None:
                continue
            stop = a.finished_at if a.finished_at is not None else (now if a.status == "running" else a.started_at)
            bars.append(_bar(name, a.attempt, a.status, row, a.started_at, stop, origin, span))
        timed = [(i, i.started_at, i.finished_at) for i in view.steps[name].items][:MAX_LANE_ITEMS]
        lane = [(i, start, stop) for i, start, stop in timed if start is not None and stop is not None]
        if lane:  # the step's items in a lane of their own, under the step
            row += 1
            for i, start, stop in lane:
                bar = _bar(name, i.attempts, i.status, row, start, stop, origin, span)
                bar.item = i.index
                bars.append(bar)
        row += 1
    return bars, span


MAX_LANE_ITEMS = 500  # the slowest and failed items of a map step drawn in its lane


def _bar(
    step: str, attempt: int, status: str, row: int, start: float, stop: float, origin: float, span: float
) -> GanttBar:
    start_s = max(0.0, start - origin)
    duration = max(0.0, stop - start)
    return GanttBar(step=step, attempt=attempt, status=status, row=row, x=min(1.0, start_s / span),
                    width=max(duration / span, 0.004), start_s=start_s, duration_s=duration)  # fmt: skip


def _order_for_rows(view: RunView) -> list[str]:
    return sorted(view.steps, key=lambda n: (view.steps[n].started_at is None, view.steps[n].started_at or 0.0, n))


def by_step(calls: Sequence[CallRow]) -> dict[str, list[CallRow]]:
    """A run's model calls by the step that made them (each step card links to its calls)."""
    out: dict[str, list[CallRow]] = {}
    for c in calls:
        if c.step is not None:
            out.setdefault(c.step, []).append(c)
    return out

"""Static analysis of a compiled plan: levels, critical path, parallelism, and the
estimated wall time from per-step ``estimate_ms`` hints (``legato plan``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from legato.engine._flow import Cycle, Switch
from legato.engine._plan import Plan

__all__ = ["PlanSummary", "summarize"]


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What ``legato plan`` reports.

    ``estimated_*`` are None when no step has an ``estimate_ms``; steps without one
    count as 0 ms and are listed in ``unestimated``. ``max_parallelism`` is the most
    steps that overlap in the earliest-start schedule (with unit durations when there
    are no estimates). Conditions are ignored: every step is assumed to run.
    """

    steps: list[dict[str, Any]]
    edges: list[tuple[str, str]]
    levels: list[list[str]]
    critical_path: list[str]
    max_parallelism: int
    estimated_sequential_ms: float | None
    estimated_parallel_ms: float | None
    unestimated: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "edges": [list(e) for e in self.edges],
            "levels": self.levels,
            "critical_path": self.critical_path,
            "max_parallelism": self.max_parallelism,
            "estimated_sequential_ms": self.estimated_sequential_ms,
            "estimated_parallel_ms": self.estimated_parallel_ms,
        }


def summarize(plan: Plan) -> PlanSummary:
    has_estimates = any(cs.d.estimate_ms is not None for cs in plan.steps.values())

    def weight(name: str) -> float:
        est = plan.steps[name].d.estimate_ms
        if not has_estimates:
            return 1.0
        return float(est or 0.0)

    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in plan.order:
        deps = plan.steps[name].deps
        best = max(deps, key=lambda d: (finish[d], d), default=None)
        start[name] = finish[best] if best is not None else 0.0
        finish[name] = start[name] + weight(name)
        via[name] = best
    end = max(plan.order, key=lambda n: (finish[n], plan.steps[n].level), default=None)
    path: list[str] = []
    node = end
    while node is not None:
        path.append(node)
        node = via[node]
    path.reverse()
    edges = sorted((dep, name) for name, cs in plan.steps.items() for dep in cs.deps)
    steps = [_describe(plan, name) for name in plan.order]
    return PlanSummary(
        steps=steps,
        edges=edges,
        levels=[list(level) for level in plan.levels],
        critical_path=path,
        max_parallelism=_max_overlap(start, finish) if plan.order else 0,
        estimated_sequential_ms=sum(weight(n) for n in plan.order) if has_estimates else None,
        estimated_parallel_ms=max(finish.values(), default=0.0) if has_estimates else None,
        unestimated=[n for n in plan.order if plan.steps[n].d.estimate_ms is None] if has_estimates else [],
    )


def _describe(plan: Plan, name: str) -> dict[str, Any]:
    cs = plan.steps[name]
    d = cs.d
    info: dict[str, Any] = {"name": name, "level": cs.level, "depends_on": sorted(cs.deps)}
    if d.estimate_ms is not None:
        info["estimate_ms"] = d.estimate_ms
    if d.when is not None:
        info["when"] = getattr(d.when, "source", getattr(d.when, "__name__", "callable"))
    if d.map is not None:
        info["map"] = d.map
    if d.loop is not None:
        info["loop"] = {"max_iterations": d.loop.max_iterations}
    if d.description:
        info["description"] = d.description
    _describe_flow(plan, name, info)
    return info


def _describe_flow(plan: Plan, name: str, info: dict[str, Any]) -> None:
    """What a cycle, a switch or a switch's case adds to a step's description."""
    cs = plan.steps[name]
    fn = cs.d.fn
    if isinstance(fn, Cycle):
        body = fn.body.compile()
        info["cycle"] = {
            "max_iterations": fn.max_iterations,
            "until": fn.source or None,
            "on_max_iterations": fn.on_max_iterations,
            "steps": [_describe(body, inner) for inner in body.order],
            "edges": sorted([dep, inner] for inner, ics in body.steps.items() for dep in ics.deps),
        }
    elif isinstance(fn, Switch):
        info["switch"] = {"on": fn.on, "cases": {k: list(v) for k, v in fn.branches().items()}}
    if cs.branch is not None:
        info["case_of"] = {"switch": cs.branch[0], "cases": sorted(cs.branch[1])}


def _max_overlap(start: dict[str, float], finish: dict[str, float]) -> int:
    points: list[tuple[float, int]] = []
    for name, s in start.items():
        f = finish[name]
        if f <= s:  # zero-length steps still occupy their instant
            f = s + 1e-9
        points.append((s, 1))
        points.append((f, -1))
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best

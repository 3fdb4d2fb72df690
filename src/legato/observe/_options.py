"""``legato analyze --options``: concrete alternatives to today's configuration,
each predicted by the simulator from the pipeline's own stored runs.

Candidates (only those that apply and are not already set): retries for a step
that fails without them, the step cache at the observed repeated-input rate, a
cheaper model of the same family for a priced model step, hedging a model step
with a heavy tail, more map concurrency, and dropping a declared dependency
whose output the step never reads. Each states its risk in one line and the
exact YAML that applies it; options are ranked by the sum of their relative
gains in p95 and cost plus ten times their gain in success rate (one point of
success weighs as much as a tenth off the p95); an option predicted to gain
nothing is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from legato.observe._analysis import Analysis, StepStats, cheaper_model, percentile
from legato.observe._shape import StepShape
from legato.observe._simulate import Prediction, Samples, StepChange, samples_from_runs, simulate

__all__ = ["Option", "OptionsReport", "build_options", "parse_volume"]

_PERIODS = {"month": 1.0, "day": 30.0, "week": 30.0 / 7, "hour": 720.0}


def parse_volume(text: str) -> float:
    """``100000/month`` (also ``/day``, ``/week``, ``/hour``, or a bare number per month) as runs per month."""
    amount, _, period = text.replace("_", "").replace(",", "").partition("/")
    try:
        value = float(amount)
    except ValueError:
        raise ValueError(f"volume {text!r}: expected a number of runs such as 100000/month") from None
    factor = _PERIODS.get(period.strip().lower() or "month")
    if factor is None or value < 0 or not math.isfinite(value):
        raise ValueError(f"volume {text!r}: expected N/month, N/week, N/day or N/hour with N >= 0")
    return value * factor


@dataclass(frozen=True)
class Option:
    title: str
    step: str
    change: dict[str, Any]  # {"step": name, "set": {key: value}} or {"step": name, "remove_depends_on": [..]}
    yaml: str
    risk: str
    predicted: Prediction
    cost_per_month: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "step": self.step,
            "change": self.change,
            "yaml": self.yaml,
            "risk": self.risk,
            "predicted": self.predicted.to_dict(),
            "cost_per_month": self.cost_per_month,
            "score": self.score,
        }


@dataclass(frozen=True)
class OptionsReport:
    pipeline: str
    runs: int
    volume_per_month: float
    measured: Prediction
    predicted_today: Prediction
    error: dict[str, float]  # relative error of p50/p95, points of success rate, relative error of cost
    options: list[Option] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "runs": self.runs,
            "volume_per_month": self.volume_per_month,
            "today": {
                "measured": self.measured.to_dict(),
                "predicted": self.predicted_today.to_dict(),
                "cost_per_month": self.measured.cost_per_run * self.volume_per_month,
                "prediction_error": self.error,
            },
            "options": [o.to_dict() for o in self.options],
        }


def _measured(runs: Sequence[tuple[Any, Sequence[Any]]]) -> Prediction:
    walls = [r.finished_at - r.started_at for r, _ in runs if r.started_at is not None and r.finished_at is not None]
    ok = sum(1 for r, _ in runs if str(r.status) == "succeeded")
    cost = [sum(s.cost or 0.0 for s in steps) for _, steps in runs]
    return Prediction(
        p50_s=percentile(walls, 50) or 0.0,
        p95_s=percentile(walls, 95) or 0.0,
        success_rate=ok / len(runs) if runs else 0.0,
        cost_per_run=sum(cost) / len(cost) if cost else 0.0,
    )


def _error(measured: Prediction, predicted: Prediction) -> dict[str, float]:
    def rel(m: float, p: float) -> float:
        return (p - m) / m if m else 0.0

    return {
        "p50": rel(measured.p50_s, predicted.p50_s),
        "p95": rel(measured.p95_s, predicted.p95_s),
        "success_points": (predicted.success_rate - measured.success_rate) * 100,
        "cost": rel(measured.cost_per_run, predicted.cost_per_run),
    }


def build_options(
    analysis: Analysis,
    runs: Sequence[tuple[Any, Sequence[Any]]],
    graph: Mapping[str, Sequence[str]],
    shapes: Mapping[str, StepShape],
    *,
    volume_per_month: float = 100_000,
    pricing: Any = None,
    seed: int = 0,
) -> OptionsReport:
    """Today's measured and predicted figures and the ranked alternatives."""
    samples = samples_from_runs(runs, graph)
    today = simulate(graph, samples, seed=seed)
    measured = _measured(runs)
    candidates = _candidates(analysis, samples, shapes, pricing)
    options = []
    for title, step, change, yaml, risk, sim in candidates:
        predicted = simulate(graph, samples, {step: sim}, seed=seed)
        options.append(
            Option(
                title=title,
                step=step,
                change=change,
                yaml=yaml,
                risk=risk,
                predicted=predicted,
                cost_per_month=predicted.cost_per_run * volume_per_month,
                score=_score(today, predicted),
            )
        )
    options = sorted((o for o in options if o.score > 0), key=lambda o: -o.score)  # only what helps
    return OptionsReport(
        pipeline=analysis.pipeline,
        runs=len(runs),
        volume_per_month=volume_per_month,
        measured=measured,
        predicted_today=today,
        error=_error(measured, today),
        options=options,
    )


def _score(today: Prediction, option: Prediction) -> float:
    p95 = (today.p95_s - option.p95_s) / today.p95_s if today.p95_s else 0.0
    cost = (today.cost_per_run - option.cost_per_run) / today.cost_per_run if today.cost_per_run else 0.0
    return p95 + cost + 10 * (option.success_rate - today.success_rate)


Candidate = tuple[str, str, dict[str, Any], str, str, StepChange]


def _candidates(a: Analysis, samples: Samples, shapes: Mapping[str, StepShape], pricing: Any) -> list[Candidate]:
    out: list[Candidate] = []
    for s in a.steps:
        shape = shapes.get(s.step)
        if shape is None or s.step not in samples.steps:
            continue
        out += _retries(s, shape) + _cache(s, shape) + _model(s, pricing) + _hedge(s, samples)
        out += _concurrency(s, shape, samples) + _unread(s, shape)
    return out


def _retries(s: StepStats, shape: StepShape) -> list[Candidate]:
    if shape.max_attempts > 1 or s.attempts < 10 or s.error_rate < 0.02:
        return []
    base = round(min(0.5, max(0.01, s.p50_s or 0.01)), 3)
    value = {"max_attempts": 3, "base_delay": base, "retry_on": "any"}
    return [
        (
            f"retry `{s.step}` (fails {s.error_rate:.0%} of attempts, no retries today)",
            s.step,
            {"step": s.step, "set": {"retries": value}},
            f"steps:\n  {s.step}:\n    retries: {{max_attempts: 3, base_delay: {base}, retry_on: any}}",
            "a retried step runs again: its side effects must be idempotent, and a failing dependency gets more load",
            StepChange(max_attempts=3, base_delay=base),
        )
    ]


def _cache(s: StepStats, shape: StepShape) -> list[Candidate]:
    if shape.cache or s.succeeded < 5 or s.cache_hit_potential < 0.1:
        return []
    return [
        (
            f"cache `{s.step}` ({s.cache_hit_potential:.0%} of its inputs were seen before)",
            s.step,
            {"step": s.step, "set": {"cache": True}},
            f"steps:\n  {s.step}:\n    cache: true",
            "staleness: a repeated input gets the stored output until the step's code or version changes",
            StepChange(cache_hit_rate=s.cache_hit_potential),
        )
    ]


def _model(s: StepStats, pricing: Any) -> list[Candidate]:
    if not s.models or s.cost <= 0:
        return []
    cheaper = cheaper_model(s.models[0], pricing)
    if cheaper is None:
        return []
    name, ratio = cheaper
    return [
        (
            f"`{s.step}` on `{name}` instead of `{s.models[0]}` (~{ratio:.0f}x cheaper per token)",
            s.step,
            {"step": s.step, "set": {"llm": name}},
            f"steps:\n  {s.step}:\n    llm: {name}          # configure it under models: in legato.yaml",
            "quality: a smaller model answers worse; check it on your own evaluation set first (latency assumed equal)",
            StepChange(cost_factor=1 / ratio),
        )
    ]


def _hedge(s: StepStats, samples: Samples) -> list[Candidate]:
    durations = list(samples.steps[s.step].durations)
    p50, p90, p99 = percentile(durations, 50), percentile(durations, 90), percentile(durations, 99)
    if not s.models or not p50 or not p90 or not p99 or len(durations) < 20 or p99 / p50 < 3:
        return []
    return [
        (
            f"hedge `{s.step}`'s model after its p90 ({p90 * 1000:.0f} ms; p99/p50 = {p99 / p50:.1f})",
            s.step,
            {"group": s.models[0], "set": {"hedge": {"quantile": 0.9, "max_extra": 0.12}}},
            f"groups:                # legato.yaml: the group `{s.step}` calls (its llm:)\n"
            f"  {s.models[0]}:\n    hedge: {{quantile: 0.9, max_extra: 0.12}}",
            "extra load and cost: about one request in ten is sent twice",
            StepChange(hedge_after_s=p90),
        )
    ]


def _concurrency(s: StepStats, shape: StepShape, samples: Samples) -> list[Candidate]:
    if not shape.mapped:
        return []
    items = int(np.median(samples.steps[s.step].items)) if len(samples.steps[s.step].items) else 1
    old = shape.max_concurrency or items
    if items <= old:
        return []
    new = min(items, old * 4)
    return [
        (
            f"map `{s.step}` with max_concurrency {new} (today {old}, ~{items} items)",
            s.step,
            {"step": s.step, "set": {"max_concurrency": new}},
            f"steps:\n  {s.step}:\n    max_concurrency: {new}",
            "extra load: the service behind each item sees more requests at once (rate limits, memory)",
            StepChange(concurrency=(old, new)),
        )
    ]


def _unread(s: StepStats, shape: StepShape) -> list[Candidate]:
    if not shape.unread_deps:
        return []
    names = ", ".join(shape.unread_deps)
    kept = [d for d in shape.declared_deps if d not in shape.unread_deps]
    return [
        (
            f"drop `{s.step}`'s dependency on {names} (declared, never read)",
            s.step,
            {"step": s.step, "remove_depends_on": list(shape.unread_deps)},
            f"steps:\n  {s.step}:\n    depends_on: [{', '.join(kept)}]   # was: [{', '.join(shape.declared_deps)}]",
            "ordering: if the step relied on a side effect of that step, it now may run before it",
            StepChange(drop_deps=frozenset(shape.unread_deps)),
        )
    ]

"""``legato analyze --options``: concrete alternatives to today's configuration,
each predicted by the simulator from the pipeline's own stored runs.

Candidates come from a table of builders, one per kind of change, each asked
about every step and answering with a :class:`Candidate` when the change
applies and is not already set: retries for a step that fails without them, the
step cache at the observed repeated-input rate, a cheaper model of the same
family for a priced model step, a cascade (that cheaper model first, today's
model when the answer is not good enough), hedging a model step with a heavy
tail, more map concurrency, bigger micro-batches for a local-model map, splitting
a long step over the items of its list input, and dropping a declared dependency
whose output the step never reads. Each states its risk in one line and the
exact YAML that applies it; options are ranked by the sum of their relative
gains in p95 and cost plus ten times their gain in success rate (one point of
success weighs as much as a tenth off the p95); an option predicted to gain
nothing is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from legato.observe._analysis import Analysis, StepStats, cheaper_model, percentile
from legato.observe._shape import StepShape
from legato.observe._simulate import Prediction, Samples, StepChange, StepSamples, samples_from_runs, simulate

__all__ = ["Candidate", "Option", "OptionsReport", "build_options", "parse_volume"]

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
    kind: str
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
            "kind": self.kind,
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
    options = []
    for c in _candidates(analysis, samples, shapes, pricing):
        predicted = simulate(graph, samples, {c.step: c.sim}, seed=seed)
        options.append(
            Option(
                kind=c.kind,
                title=c.title,
                step=c.step,
                change=c.change,
                yaml=c.yaml,
                risk=c.risk,
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


@dataclass(frozen=True)
class Candidate:
    """One change to simulate: what it is, the edit as data and as YAML, its risk, and its effect on the step."""

    kind: str  # retries, cache, model, cascade, hedge, concurrency, batch, split or dependency
    title: str
    step: str
    change: dict[str, Any]
    yaml: str
    risk: str
    sim: StepChange


@dataclass(frozen=True)
class _Context:
    """What a builder may look at for one step."""

    stats: StepStats
    shape: StepShape
    samples: Samples
    analysis: Analysis
    pricing: Any

    @property
    def name(self) -> str:
        return self.stats.step


def _set(step: str, key: str, value: Any, yaml_value: str, note: str = "") -> tuple[dict[str, Any], str]:
    """The change ``steps.<step>.<key> = value`` as data and as YAML."""
    return {"step": step, "set": {key: value}}, f"steps:\n  {step}:\n    {key}: {yaml_value}{note}"


def _retries(c: _Context) -> Candidate | None:
    s = c.stats
    if c.shape.max_attempts > 1 or s.attempts < 10 or s.error_rate < 0.02:
        return None
    base = round(min(0.5, max(0.01, s.p50_s or 0.01)), 3)
    value = {"max_attempts": 3, "base_delay": base, "retry_on": "any"}
    change, yaml = _set(s.step, "retries", value, f"{{max_attempts: 3, base_delay: {base}, retry_on: any}}")
    return Candidate(
        "retries",
        f"retry `{s.step}` (fails {s.error_rate:.0%} of attempts, no retries today)",
        s.step,
        change,
        yaml,
        "a retried step runs again: its side effects must be idempotent, and a failing dependency gets more load",
        StepChange(max_attempts=3, base_delay=base),
    )


def _cache(c: _Context) -> Candidate | None:
    s = c.stats
    if c.shape.cache or s.succeeded < 5 or s.cache_hit_potential < 0.1:
        return None
    return Candidate(
        "cache",
        f"cache `{s.step}` ({s.cache_hit_potential:.0%} of its inputs were seen before)",
        s.step,
        *_set(s.step, "cache", True, "true"),
        "staleness: a repeated input gets the stored output until the step's code or version changes",
        StepChange(cache_hit_rate=s.cache_hit_potential),
    )


def _cheaper(c: _Context) -> tuple[str, str, float] | None:
    """(today's model, a cheaper one of its family, how many times cheaper) for a priced model step."""
    s = c.stats
    if not s.models or s.cost <= 0:
        return None
    found = cheaper_model(s.models[0], c.pricing)
    return None if found is None else (s.models[0], *found)


def _model(c: _Context) -> Candidate | None:
    found = _cheaper(c)
    if found is None:
        return None
    today, name, ratio = found
    return Candidate(
        "model",
        f"`{c.name}` on `{name}` instead of `{today}` (~{ratio:.0f}x cheaper per token)",
        c.name,
        *_set(c.name, "llm", name, name, "          # configure it under models: in legato.yaml"),
        "quality: a smaller model answers worse; check it on your own evaluation set first (latency assumed equal)",
        StepChange(cost_factor=1 / ratio),
    )


ESCALATION = 0.3  # the share of answers a cascade's first tier is assumed to pass on


def _cascade(c: _Context) -> Candidate | None:
    found = _cheaper(c)
    if found is None:
        return None
    today, name, ratio = found
    group = f"{c.name}-cascade"
    change, step_yaml = _set(c.name, "llm", group, group)
    return Candidate(
        "cascade",
        f"cascade `{c.name}`: `{name}` first, `{today}` when its confidence is below 0.8 "
        f"(assuming {ESCALATION:.0%} escalate)",
        c.name,
        {**change, "groups": {group: _cascade_group(name, today)}},
        f"groups:                # legato.yaml\n  {group}:\n    cascade:\n"
        f"      tiers: [{{model: {name}}}, {{model: {today}}}]\n"
        f"      scorer: {{confidence: 0.8, field: confidence}}   # the prompt must ask for a confidence\n"
        f"{step_yaml}",
        "latency: an escalated call pays for both models; the escalation rate is an assumption until measured",
        StepChange(cost_factor=1 / ratio, escalate=ESCALATION),
    )


def _cascade_group(first: str, then: str) -> dict[str, Any]:
    return {
        "cascade": {"tiers": [{"model": first}, {"model": then}], "scorer": {"confidence": 0.8, "field": "confidence"}}
    }


def _hedge(c: _Context) -> Candidate | None:
    s = c.stats
    durations = list(c.samples.steps[s.step].durations)
    p50, p90, p99 = percentile(durations, 50), percentile(durations, 90), percentile(durations, 99)
    if not s.models or not p50 or not p90 or not p99 or len(durations) < 20 or p99 / p50 < 3:
        return None
    return Candidate(
        "hedge",
        f"hedge `{s.step}`'s model after its p90 ({p90 * 1000:.0f} ms; p99/p50 = {p99 / p50:.1f})",
        s.step,
        {"group": s.models[0], "set": {"hedge": {"quantile": 0.9, "max_extra": 0.12}}},
        f"groups:                # legato.yaml: the group `{s.step}` calls (its llm:)\n"
        f"  {s.models[0]}:\n    hedge: {{quantile: 0.9, max_extra: 0.12}}",
        "extra load and cost: about one request in ten is sent twice",
        StepChange(hedge_after_s=p90),
    )


def _items(c: _Context) -> tuple[int, int] | None:
    """(today's items in flight, the median item count) of a map that could take more at once."""
    if not c.shape.mapped:
        return None
    recorded = c.samples.steps[c.name].items
    items = int(np.median(recorded)) if len(recorded) else 1
    old = c.shape.max_concurrency or items
    return None if items <= old else (old, items)


def _concurrency(c: _Context) -> Candidate | None:
    found = _items(c)
    if found is None or c.shape.batched:  # a local model's map: see _batch
        return None
    old, items = found
    new = min(items, old * 4)
    return Candidate(
        "concurrency",
        f"map `{c.name}` with max_concurrency {new} (today {old}, ~{items} items)",
        c.name,
        *_set(c.name, "max_concurrency", new, str(new)),
        "extra load: the service behind each item sees more requests at once (rate limits, memory)",
        StepChange(concurrency=(old, new)),
    )


BATCH_LIMIT = 64  # a local task's max_batch


def _batch(c: _Context) -> Candidate | None:
    found = _items(c)
    if found is None or not c.shape.batched:
        return None
    old, items = found
    new = min(items, BATCH_LIMIT)
    share, fitted = _per_item_share(c.samples.steps[c.name], old)
    return Candidate(
        "batch",
        f"batch `{c.name}`'s local model over {new} items at once (today {old} in flight, ~{items} items; "
        f"{share:.0%} of a call's time grows with its size, {'fitted' if fitted else 'assumed'})",
        c.name,
        *_set(c.name, "max_concurrency", new, str(new), "   # the items in flight share one model call"),
        "memory and a slow first item: a batch of that size holds all its items at once and answers together",
        StepChange(concurrency=(old, new), per_item_share=share),
    )


def _per_item_share(s: StepSamples, in_flight: int) -> tuple[float, bool]:
    """The share of one call of ``in_flight`` items that grows with the batch size, fitted on the
    recorded executions (mean per-call time against mean call size), and whether it was fitted:
    when every call had the same size the data cannot tell, and half is assumed."""
    ok = ~s.failed & (s.durations > 0)
    calls = np.ceil(s.items[ok] / in_flight)
    size, per_call = s.items[ok] / np.maximum(calls, 1), s.durations[ok] / np.maximum(calls, 1)
    if len(size) < 5 or float(np.ptp(size)) == 0:
        return 0.5, False
    slope, intercept = np.polyfit(size, per_call, 1)
    full = intercept + slope * in_flight
    if full <= 0:
        return 0.5, False
    return float(min(1.0, max(0.0, slope * in_flight / full))), True


SPLIT_LIMIT = 8  # items in flight proposed for a split step


def _split(c: _Context) -> Candidate | None:
    a, s = c.analysis, c.stats
    if c.shape.mapped or c.shape.conditional or s.p50_s is None or not a.critical_path_s:
        return None
    if s.step not in a.critical_path or s.p50_s < max(0.05, 0.4 * a.critical_path_s):
        return None
    lists = [
        (param, dep, int(np.median(c.samples.steps[dep].items)))
        for param, dep in c.shape.whole_outputs
        if dep in c.samples.steps and len(c.samples.steps[dep].items)
    ]
    lists = [x for x in lists if x[2] >= 2]
    if not lists:
        return None
    param, dep, items = max(lists, key=lambda x: x[2])
    k = min(items, SPLIT_LIMIT)
    change = {"step": s.step, "set": {"map": param, "max_concurrency": k}}
    return Candidate(
        "split",
        f"split `{s.step}` over the ~{items} items of `{param}` ({k} at a time; it is "
        f"{s.p50_s / a.critical_path_s:.0%} of the critical path; assuming its time grows with its items)",
        s.step,
        change,
        f"steps:\n  {s.step}:\n    map: {param}\n    max_concurrency: {k}",
        f"its code must take one item of `{param}` and its output becomes a list its readers must accept; "
        "what it calls sees more requests at once",
        StepChange(split=(dep, k)),
    )


def _unread(c: _Context) -> Candidate | None:
    shape = c.shape
    if not shape.unread_deps:
        return None
    names = ", ".join(shape.unread_deps)
    kept = [d for d in shape.declared_deps if d not in shape.unread_deps]
    return Candidate(
        "dependency",
        f"drop `{c.name}`'s dependency on {names} (declared, never read)",
        c.name,
        {"step": c.name, "remove_depends_on": list(shape.unread_deps)},
        f"steps:\n  {c.name}:\n    depends_on: [{', '.join(kept)}]   # was: [{', '.join(shape.declared_deps)}]",
        "ordering: if the step relied on a side effect of that step, it now may run before it",
        StepChange(drop_deps=frozenset(shape.unread_deps)),
    )


BUILDERS: tuple[Callable[[_Context], Candidate | None], ...] = (
    _retries,
    _cache,
    _model,
    _cascade,
    _hedge,
    _concurrency,
    _batch,
    _split,
    _unread,
)


def _candidates(a: Analysis, samples: Samples, shapes: Mapping[str, StepShape], pricing: Any) -> list[Candidate]:
    out: list[Candidate] = []
    for s in a.steps:
        shape = shapes.get(s.step)
        if shape is None or s.step not in samples.steps:
            continue
        context = _Context(s, shape, samples, a, pricing)
        out += [c for build in BUILDERS if (c := build(context)) is not None]
    return out

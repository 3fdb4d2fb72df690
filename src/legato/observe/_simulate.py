"""Monte-Carlo simulation of a pipeline from its own stored runs (trace-driven).

Each simulated run replays one recorded run, drawn at random: every step takes
that run's execution of it (duration, failure, cost, item count of a map, or
its skip), so what steps of one run share — the input's size, the machine's load
at that moment — stays together; the empirical distribution is resampled, not
fitted. A step that did not run in the drawn run (a failure cut the run short)
is drawn from all its recorded executions, and skipped at its observed skip
rate. Draws go through the graph's semantics: a step starts when the last of
its dependencies ends, a run ends when its last step ends or at its first
failure. The run's overhead (measured wall time minus the replay of its own
records through the graph: scheduling, checkpoints) is added, so engine and
store costs are part of the prediction. Today's configuration therefore comes
out as the measured runs up to resampling noise; the prediction error reported
next to it is that noise plus what the graph's semantics fail to explain.

A :class:`StepChange` alters one step's draws the way a configuration change
would: more attempts (each retry a fresh draw after the retry policy's
backoff), cache hits, a hedged second request, more map concurrency or bigger
micro-batches, splitting a step over the items of its list input, a cheaper
model, a cascade (a cheaper model first, today's model for the share that
escalates), or dependencies removed. Written with numpy over all simulated runs at
once (20 000 runs take milliseconds); seeded, so a prediction is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Prediction", "Samples", "StepChange", "StepSamples", "samples_from_runs", "simulate"]


@dataclass(frozen=True)
class StepSamples:
    durations: np.ndarray  # seconds, one per recorded execution (skips excluded)
    failed: np.ndarray  # bool, same length
    costs: np.ndarray
    items: np.ndarray  # item count of a map execution (1 for other steps)
    skip_rate: float
    row: np.ndarray  # per recorded run: index of its execution above, SKIPPED or ABSENT


SKIPPED, ABSENT = -1, -2


@dataclass(frozen=True)
class Samples:
    steps: dict[str, StepSamples]
    succeeded: np.ndarray  # per recorded run: did it succeed
    overhead: np.ndarray  # per recorded run: measured wall minus its replay through the graph


@dataclass(frozen=True)
class StepChange:
    max_attempts: int | None = None  # retries: total attempts (today's records hold one attempt each)
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    cache_hit_rate: float = 0.0
    hedge_after_s: float | None = None
    concurrency: tuple[int, int] | None = None  # (today's, proposed) items in flight
    per_item_share: float = 0.0  # share of one wave of today's size that grows with its size (a batch)
    split: tuple[str, int] | None = None  # (the dependency whose list output is split, items in flight)
    cost_factor: float = 1.0
    escalate: float = 0.0  # cascade: share of calls the cheaper first tier passes on to today's model
    drop_deps: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Prediction:
    p50_s: float
    p95_s: float
    success_rate: float
    cost_per_run: float

    def to_dict(self) -> dict[str, float]:
        return {
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "success_rate": self.success_rate,
            "cost_per_run": self.cost_per_run,
        }


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _items(output: Any) -> int:
    return max(1, len(output)) if isinstance(output, list | tuple) else 1


def samples_from_runs(runs: Sequence[tuple[Any, Sequence[Any]]], graph: Mapping[str, Sequence[str]]) -> Samples:
    """Per-step executions, indexed by recorded run, and per-run overheads from ``(run, step_records)`` pairs."""
    rows: dict[str, list[tuple[float, bool, float, int]]] = {n: [] for n in graph}
    index: dict[str, list[int]] = {n: [] for n in graph}
    succeeded: list[bool] = []
    overhead: list[float] = []
    for run, records in runs:
        started, finished = _get(run, "started_at"), _get(run, "finished_at")
        latest = {r.step: r for r in records if r.status in ("succeeded", "failed", "skipped")}
        if started is None or finished is None or not latest:
            continue
        for name in graph:
            r = latest.get(name)
            if r is None or (r.status != "skipped" and r.duration_s is None):
                index[name].append(ABSENT)
            elif r.status == "skipped":
                index[name].append(SKIPPED)
            else:
                index[name].append(len(rows[name]))
                rows[name].append((float(r.duration_s), r.status == "failed", float(r.cost or 0.0), _items(r.output)))
        succeeded.append(not any(r.status == "failed" for r in latest.values()))
        overhead.append(max(0.0, (finished - started) - _replay(latest, graph)))
    steps = {}
    for name, got in rows.items():
        arr = got or [(0.0, False, 0.0, 1)]
        skips, seen = index[name].count(SKIPPED), len(got) + index[name].count(SKIPPED)
        steps[name] = StepSamples(
            durations=np.array([a[0] for a in arr]),
            failed=np.array([a[1] for a in arr], dtype=bool),
            costs=np.array([a[2] for a in arr]),
            items=np.array([a[3] for a in arr]),
            skip_rate=skips / seen if seen else 0.0,
            row=np.array(index[name] or [ABSENT], dtype=np.int64),
        )
    return Samples(steps, np.array(succeeded or [True]), np.array(overhead or [0.0]))


def _replay(latest: Mapping[str, Any], graph: Mapping[str, Sequence[str]]) -> float:
    """The wall time the simulator's semantics give one recorded run."""
    finish: dict[str, float] = {}
    first_failure = math.inf
    for name in _order(graph):
        start = max((finish.get(d, 0.0) for d in graph[name]), default=0.0)
        r = latest.get(name)
        took = float(r.duration_s or 0.0) if r is not None and r.status != "skipped" else 0.0
        finish[name] = start + took
        if r is not None and r.status == "failed":
            first_failure = min(first_failure, finish[name])
    return first_failure if first_failure < math.inf else max(finish.values(), default=0.0)


def _order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    done: list[str] = []
    seen: set[str] = set()

    def visit(n: str, stack: frozenset[str]) -> None:
        if n in seen or n in stack:
            return
        for d in graph.get(n, ()):
            if d in graph:
                visit(d, stack | {n})
        seen.add(n)
        done.append(n)

    for n in graph:
        visit(n, frozenset())
    return done


def simulate(
    graph: Mapping[str, Sequence[str]],
    samples: Samples,
    changes: Mapping[str, StepChange] | None = None,
    *,
    runs: int = 20_000,
    seed: int = 0,
) -> Prediction:
    """Predicted wall-time percentiles (nearest rank), success rate and mean cost of a run."""
    rng = np.random.default_rng(seed)
    changes = changes or {}
    trace = rng.integers(0, len(samples.overhead), size=runs)  # the recorded run each simulated run replays
    finish: dict[str, np.ndarray] = {}
    fail_at = np.full(runs, np.inf)
    starts: dict[str, np.ndarray] = {}
    costs: dict[str, np.ndarray] = {}
    items: dict[str, np.ndarray] = {}  # per simulated run: the item count of each step's drawn output
    for name in _order(graph):
        change = changes.get(name, StepChange())
        deps = [d for d in graph[name] if d in finish and d not in change.drop_deps]
        start = np.max(np.stack([finish[d] for d in deps]), axis=0) if deps else np.zeros(runs)
        split = items.get(change.split[0]) if change.split is not None else None
        took, failed, cost, items[name] = _draw(samples.steps[name], change, rng, trace, split)
        finish[name] = start + took
        starts[name], costs[name] = start, cost
        fail_at = np.where(failed, np.minimum(fail_at, finish[name]), fail_at)
    ok = np.isinf(fail_at)
    last = np.max(np.stack(list(finish.values())), axis=0) if finish else np.zeros(runs)
    wall = np.where(ok, last, fail_at) + _overhead(samples, ok, trace, rng)
    spent = sum((np.where(starts[n] < fail_at, costs[n], 0.0) for n in costs), start=np.zeros(runs))
    p50, p95 = np.percentile(wall, [50, 95], method="inverted_cdf")
    return Prediction(float(p50), float(p95), float(ok.mean()), float(np.mean(spent)))


def _overhead(samples: Samples, ok: np.ndarray, trace: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The replayed run's own overhead, or, when the change turned its outcome around, one of a
    recorded run with the simulated outcome (failed runs stop early and write less)."""
    out: np.ndarray = samples.overhead[trace].copy()
    same = samples.succeeded[trace] == ok
    for outcome in (True, False):
        pool = samples.overhead[samples.succeeded == outcome]
        wanted = ~same & (ok == outcome)
        if wanted.any():
            out[wanted] = rng.choice(pool if len(pool) else samples.overhead, size=int(wanted.sum()))
    return out


def _draw(
    s: StepSamples, change: StepChange, rng: np.random.Generator, trace: np.ndarray, split: np.ndarray | None
) -> tuple[Any, Any, Any, np.ndarray]:
    """One step's (duration, failed, cost, output items) in every simulated run."""
    n = len(trace)
    recorded = s.row[trace] if len(s.row) > int(trace.max(initial=0)) else np.full(n, ABSENT)
    absent = recorded == ABSENT  # cut short by a failure in that run: drawn from all executions
    idx = np.where(recorded >= 0, recorded, rng.integers(0, len(s.durations), size=n))
    skipped = np.where(absent, rng.random(n) < s.skip_rate, recorded == SKIPPED)
    took, failed, cost = s.durations[idx].copy(), s.failed[idx].copy(), s.costs[idx] * change.cost_factor
    took *= _work_scale(change, s.items[idx], split)
    if change.escalate > 0:
        took, failed, cost = _escalate(s, change.escalate, rng, (took, failed, cost))
    if change.hedge_after_s is not None:
        took, cost = _hedge(s, change, rng, took, cost)
    if change.max_attempts is not None:
        took, failed, cost = _retry(s, change, rng, (took, failed, cost))
    if change.cache_hit_rate > 0:
        hit = rng.random(n) < change.cache_hit_rate
        took, failed, cost = np.where(hit, 0.0, took), failed & ~hit, np.where(hit, 0.0, cost)
    return np.where(skipped, 0.0, took), failed & ~skipped, np.where(skipped, 0.0, cost), s.items[idx]


def _work_scale(change: StepChange, items: np.ndarray, split: np.ndarray | None) -> Any:
    """How a step's duration scales with more items in flight (independent items, or a batch
    whose time has a per-call part and a per-item part), or when split over its input's items."""
    scale: Any = 1.0
    if change.concurrency is not None:
        old, new = change.concurrency
        share = change.per_item_share

        def waves(k: int) -> Any:  # in units of one wave of today's size
            return np.ceil(items / k) * (1 - share) + share * items / old

        scale = waves(new) / waves(old)
    if change.split is not None and split is not None:
        scale = scale * np.ceil(split / change.split[1]) / np.maximum(split, 1)
    return scale


Draws = tuple[Any, Any, Any]


def _escalate(s: StepSamples, share: float, rng: np.random.Generator, draws: Draws) -> Draws:
    """A cascade: the first tier's answer (cheaper, as fast), then today's model for ``share`` of calls."""
    took, failed, cost = draws
    n = len(took)
    up = rng.random(n) < share
    second = rng.integers(0, len(s.durations), size=n)
    return (
        np.where(up, took + s.durations[second], took),
        np.where(up, s.failed[second], failed),
        np.where(up, cost + s.costs[second], cost),
    )


def _hedge(s: StepSamples, change: StepChange, rng: np.random.Generator, took: Any, cost: Any) -> tuple[Any, Any]:
    assert change.hedge_after_s is not None
    second = rng.integers(0, len(s.durations), size=len(took))
    slow = took > change.hedge_after_s
    hedged = change.hedge_after_s + s.durations[second]
    return np.where(slow, np.minimum(took, hedged), took), cost + np.where(
        slow, s.costs[second] * change.cost_factor, 0.0
    )


def _retry(s: StepSamples, change: StepChange, rng: np.random.Generator, draws: Draws) -> Draws:
    """Each retry a fresh draw after a jittered exponential backoff, while the attempt failed."""
    took, failed, cost = draws
    n = len(took)
    assert change.max_attempts is not None
    for attempt in range(1, change.max_attempts):
        again = failed
        if not again.any():
            break
        ceiling = min(change.max_delay, change.base_delay * change.multiplier ** (attempt - 1))
        redo = rng.integers(0, len(s.durations), size=n)
        took = np.where(again, took + rng.uniform(0, ceiling, size=n) + s.durations[redo], took)
        cost = np.where(again, cost + s.costs[redo] * change.cost_factor, cost)
        failed = np.where(again, s.failed[redo], failed)
    return took, failed, cost

"""Turn stored runs into advice: where the time and the money go, and what to change.

:func:`analyze_runs` works on run and step-attempt records (from
:class:`legato.store.RunStore`) and, when known, the pipeline's dependency graph:

- per step: attempts, error rate, p50/p95 latency of successful attempts, cost and
  its share of the pipeline's spend, retries, model calls;
- the critical path: with the graph, the chain of dependencies with the largest
  sum of p50 latencies; without it, the chain each step waited on in the latest
  run (the dependency that finished last before it started);
- cache-hit potential: how often a step saw inputs it had seen before (its own
  dependencies' outputs plus the run's inputs), i.e. calls a cache would have saved;
- recommendations, each concrete and naming the step: parallelize, batch, cache,
  a cheaper model (priced from the pricing table, behind a quality check), retries
  or a fallback for an unreliable step, and what to speed up on the critical path.

Percentiles use the nearest-rank method (no interpolation): with few runs a p95 is
an observed value, not an invented one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from legato.observe._shape import StepShape

__all__ = ["Analysis", "StepStats", "analyze_runs"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class StepStats:
    step: str
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    error_rate: float = 0.0
    p50_s: float | None = None
    p95_s: float | None = None
    cost: float = 0.0
    cost_share: float = 0.0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: list[str] = field(default_factory=list)
    repeated_inputs: int = 0  # successful runs of the step whose inputs had been seen before
    cache_hit_potential: float = 0.0  # repeated_inputs / successful runs
    saved_by_cache: float = 0.0  # USD those repeats cost
    wait_s: float | None = None  # p50 of the gap between its last dependency ending and its start


@dataclass
class Analysis:
    pipeline: str
    runs: int
    run_ids: list[str]
    succeeded_runs: int
    failed_runs: int
    total_cost: float
    wall_p50_s: float | None
    wall_p95_s: float | None
    critical_path: list[str]
    critical_path_s: float | None
    graph_known: bool
    steps: list[StepStats]
    recommendations: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """The analysis as Markdown (what is written to the journal)."""
        lines = [
            f"Analysis of {self.runs} run(s) of pipeline `{self.pipeline}` "
            f"({self.succeeded_runs} succeeded, {self.failed_runs} failed); total cost ${self.total_cost:.6f}.",
            f"Wall time p50 {_s(self.wall_p50_s)}, p95 {_s(self.wall_p95_s)}.",
            f"Critical path ({'from the graph' if self.graph_known else 'inferred from timings'}): "
            f"{' -> '.join(self.critical_path) or '(none)'} ({_s(self.critical_path_s)}).",
            "",
            "| step | attempts | error rate | p50 | p95 | cost share | cache-hit potential |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in self.steps:
            lines.append(
                f"| {s.step} | {s.attempts} | {s.error_rate:.0%} | {_s(s.p50_s)} | {_s(s.p95_s)} "
                f"| {s.cost_share:.0%} | {s.cache_hit_potential:.0%} |"
            )
        lines += ["", "Recommendations:"]
        lines += [f"- {r}" for r in self.recommendations] or ["- none: nothing stands out in these runs."]
        return "\n".join(lines)


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


def _fingerprint(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def analyze_runs(
    pipeline: str,
    runs: Sequence[tuple[Any, Sequence[Any]]],
    graph: Mapping[str, Sequence[str]] | None = None,
    *,
    pricing: Any = None,
    shapes: Mapping[str, StepShape] | None = None,
) -> Analysis:
    """Analyse ``runs`` (``(run_record, step_records)`` pairs, newest first) of ``pipeline``.

    ``graph`` maps each step to its dependencies; ``pricing`` is a
    :class:`legato.providers.PricingTable`-like object (``prices``) used to suggest
    cheaper models (None: the table shipped with legato). ``shapes`` (from
    :func:`step_shapes`) says what each step already has (retries, map, cache), so
    no advice asks for what is already set.
    """
    stats: dict[str, StepStats] = {}
    durations: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    seen: dict[str, set[str]] = {}
    models: dict[str, dict[str, int]] = {}
    walls: list[float] = []
    for run, records in runs:
        outputs = {r.step: r.output for r in records if r.status == "succeeded"}
        ends = {r.step: r.finished_at for r in records if r.status == "succeeded" and r.finished_at}
        started, finished = _get(run, "started_at"), _get(run, "finished_at")
        if started and finished:
            walls.append(finished - started)
        for r in sorted(records, key=lambda r: (r.step, r.attempt)):
            s = stats.setdefault(r.step, StepStats(step=r.step))
            _count(s, r)
            if r.status == "succeeded":
                if r.duration_s is not None:
                    durations.setdefault(r.step, []).append(r.duration_s)
                deps = list(graph.get(r.step, ())) if graph else []
                key = _fingerprint(
                    {"inputs": _get(run, "inputs"), "deps": {d: outputs.get(d) for d in sorted(deps)}}
                    if graph
                    else {"inputs": _get(run, "inputs")}
                )
                if key in seen.setdefault(r.step, set()):
                    s.repeated_inputs += 1
                    s.saved_by_cache += r.cost or 0.0
                seen[r.step].add(key)
                if graph and deps and r.started_at and all(d in ends for d in deps):
                    waits.setdefault(r.step, []).append(max(0.0, r.started_at - max(ends[d] for d in deps)))
            for m in (r.model or "").split(", "):
                if m:
                    models.setdefault(r.step, {})[m] = models.setdefault(r.step, {}).get(m, 0) + 1
    total_cost = sum(s.cost for s in stats.values())
    for name, s in stats.items():
        s.error_rate = s.failed / s.attempts if s.attempts else 0.0
        s.p50_s = percentile(durations.get(name, []), 50)
        s.p95_s = percentile(durations.get(name, []), 95)
        s.cost_share = s.cost / total_cost if total_cost > 0 else 0.0
        s.cache_hit_potential = s.repeated_inputs / s.succeeded if s.succeeded else 0.0
        s.models = sorted(models.get(name, {}), key=lambda m: -models[name][m])
        s.wait_s = percentile(waits.get(name, []), 50)
    order = list(graph) if graph else sorted(stats)
    steps = [stats[n] for n in order if n in stats] + [s for n, s in sorted(stats.items()) if n not in order]
    path, path_s = _critical_path(stats, graph, runs)
    analysis = Analysis(
        pipeline=pipeline,
        runs=len(runs),
        run_ids=[str(_get(r, "id")) for r, _ in runs],
        succeeded_runs=sum(1 for r, _ in runs if _get(r, "status") == "succeeded"),
        failed_runs=sum(1 for r, _ in runs if _get(r, "status") in ("failed", "dead")),
        total_cost=total_cost,
        wall_p50_s=percentile(walls, 50),
        wall_p95_s=percentile(walls, 95),
        critical_path=path,
        critical_path_s=path_s,
        graph_known=bool(graph),
        steps=steps,
        recommendations=[],
    )
    analysis.recommendations = _recommend(analysis, graph, runs, pricing, shapes or {})
    return analysis


def _count(s: StepStats, r: Any) -> None:
    if r.status == "skipped":
        s.skipped += 1
        return
    # One record per execution of a step: ``attempt`` is how many attempts it took,
    # the ones before the last having failed and been retried.
    tries = max(1, int(r.attempt or 1))
    s.attempts += tries
    s.retries += tries - 1
    s.failed += tries - 1 + (1 if r.status == "failed" else 0)
    if r.status == "succeeded":
        s.succeeded += 1
    s.cost += r.cost or 0.0
    s.input_tokens += r.input_tokens or 0
    s.output_tokens += r.output_tokens or 0
    meta = r.meta or {}
    calls = meta.get("calls")
    s.calls += int(calls) if isinstance(calls, int) else 0


def _critical_path(
    stats: Mapping[str, StepStats], graph: Mapping[str, Sequence[str]] | None, runs: Sequence[tuple[Any, Sequence[Any]]]
) -> tuple[list[str], float | None]:
    if graph:
        weight = {n: (stats[n].p50_s or 0.0) if n in stats else 0.0 for n in graph}
        best: dict[str, tuple[float, list[str]]] = {}

        def longest(n: str, stack: frozenset[str] = frozenset()) -> tuple[float, list[str]]:
            if n in best:
                return best[n]
            options = [longest(d, stack | {n}) for d in graph.get(n, ()) if d in graph and d not in stack]
            prev = max(options, key=lambda o: o[0], default=(0.0, []))
            best[n] = (prev[0] + weight[n], [*prev[1], n])
            return best[n]

        ends = [longest(n) for n in graph]
        total, path = max(ends, key=lambda o: o[0], default=(0.0, []))
        return path, total if path else None
    # No graph: follow, in the latest run with timings, what each step waited for.
    for _, records in runs:
        done = [r for r in records if r.status == "succeeded" and r.started_at and r.finished_at]
        if not done:
            continue
        chain = [max(done, key=lambda r: r.finished_at)]
        while True:
            before = [r for r in done if r.finished_at <= chain[0].started_at + 1e-3 and r not in chain]
            if not before:
                break
            chain.insert(0, max(before, key=lambda r: r.finished_at))
        return [r.step for r in chain], chain[-1].finished_at - chain[0].started_at
    return [], None


def _recommend(
    a: Analysis,
    graph: Mapping[str, Sequence[str]] | None,
    runs: Sequence[tuple[Any, Sequence[Any]]],
    pricing: Any,
    shapes: Mapping[str, StepShape],
) -> list[str]:
    out = [
        *_speed_up(a, shapes),
        *_parallelize(a, graph, runs),
        *_batch(a),
        *_cache(a, shapes),
        *_cheaper(a, pricing),
        *_reliability(a, shapes),
    ]
    if not out and a.runs == 0:
        out.append("no stored runs to learn from yet.")
    return out


def _speed_up(a: Analysis, shapes: Mapping[str, StepShape]) -> list[str]:
    """The step that dominates the critical path."""
    out: list[str] = []
    by_name = {s.step: s for s in a.steps}
    plain = StepShape()
    if a.critical_path and a.critical_path_s:
        heaviest = max((by_name[n] for n in a.critical_path if n in by_name), key=lambda s: s.p50_s or 0.0)
        long_enough = a.critical_path_s >= 0.05  # a few milliseconds are not worth a change
        if heaviest.p50_s and heaviest.p50_s / a.critical_path_s >= 0.4 and len(a.critical_path) > 1 and long_enough:
            how = (
                "more items in flight (`max_concurrency`), a smaller model, streaming"
                if shapes.get(heaviest.step, plain).mapped
                else "a smaller model, streaming, splitting it with `map:`"
            )
            out.append(
                f"`{heaviest.step}` is {heaviest.p50_s / a.critical_path_s:.0%} of the critical path "
                f"({_s(heaviest.p50_s)} p50): making it faster ({how}) shortens every run; steps off the path do not."
            )
    return out


def _parallelize(
    a: Analysis, graph: Mapping[str, Sequence[str]] | None, runs: Sequence[tuple[Any, Sequence[Any]]]
) -> list[str]:
    """Steps that waited for a slot after their inputs were ready, or a sequential chain."""
    out: list[str] = []
    for s in a.steps:
        if s.wait_s is not None and s.p50_s and s.wait_s > max(0.05, 0.5 * s.p50_s):
            out.append(
                f"`{s.step}` waits {_s(s.wait_s)} (p50) after its inputs are ready: raise the pipeline's "
                "`max_concurrency` (or the step's) so it starts as soon as it can."
            )
    if not graph and len(a.steps) >= 3:
        parallelism = _observed_parallelism(runs)
        if parallelism is not None and parallelism[0] <= 1.1 and parallelism[1] >= 0.05:
            out.append(
                f"the steps ran one after another (parallelism {parallelism[0]:.2f} over {_s(parallelism[1])}): "
                "steps that do not need each other's outputs run in parallel when each takes as parameters "
                "only the outputs it uses; check that no step depends on another it does not need."
            )
    return out


def _batch(a: Analysis) -> list[str]:
    """Many small model calls in one step."""
    out: list[str] = []
    for s in a.steps:
        if s.succeeded and s.calls / s.succeeded >= 5:
            per_call = s.input_tokens / max(1, s.calls)
            if per_call < 1000:
                out.append(
                    f"`{s.step}` makes {s.calls / s.succeeded:.0f} model calls per run of ~{per_call:.0f} "
                    "input tokens each: batch them (one request with several items, or the micro-batcher) "
                    "to cut latency and per-request overhead."
                )
    return out


def _cache(a: Analysis, shapes: Mapping[str, StepShape]) -> list[str]:
    """Repeated inputs: one line for every step that would have hit."""
    out: list[str] = []
    plain = StepShape()
    hits = sorted(
        (
            s
            for s in a.steps
            if s.succeeded >= 3 and s.cache_hit_potential >= 0.2 and not shapes.get(s.step, plain).cache
        ),
        key=lambda s: (-s.saved_by_cache, -s.cache_hit_potential, s.step),
    )
    if hits:
        listed = ", ".join(f"`{s.step}` ({s.cache_hit_potential:.0%})" for s in hits[:6])
        saved = sum(s.saved_by_cache for s in hits)
        spend = f", ${saved:.6f} of spend" if saved else ""
        repeats = sum(s.repeated_inputs for s in hits)
        out.append(
            f"repeated inputs: {listed} saw inputs they had already processed ({repeats} repeat(s){spend}): "
            "set `cache: true` on those steps or enable the response cache for their models."
        )
    return out


def _cheaper(a: Analysis, pricing: Any) -> list[str]:
    """A cheaper model for the costliest step."""
    out: list[str] = []
    for s in sorted(a.steps, key=lambda s: -s.cost_share):
        if s.cost_share < 0.3 or not s.models:
            continue
        cheaper = cheaper_model(s.models[0], pricing)
        if cheaper is not None:
            name, ratio = cheaper
            out.append(
                f"`{s.step}` is {s.cost_share:.0%} of the spend on `{s.models[0]}`: try `{name}` "
                f"(~{ratio:.0f}x cheaper per token) behind a quality check (a cascade that escalates to "
                f"`{s.models[0]}` when the answer fails validation)."
            )
        break
    return out


def _reliability(a: Analysis, shapes: Mapping[str, StepShape]) -> list[str]:
    """Steps that fail or need retries."""
    out: list[str] = []
    plain = StepShape()
    for s in a.steps:
        attempts = max(shapes.get(s.step, plain).max_attempts, 2 if s.retries else 1)
        if s.attempts >= 3 and s.error_rate >= 0.05 and attempts > 1:
            out.append(
                f"`{s.step}` fails {s.error_rate:.0%} of its attempts although it is retried: more retries "
                "only add load; a fallback model group or the cause itself (its errors are in the dashboard "
                "and the journal) is the fix."
            )
        elif s.attempts >= 3 and s.error_rate >= 0.05:
            out.append(
                f"`{s.step}` fails {s.error_rate:.0%} of its attempts: add `retries:` for transient errors "
                "or a fallback model group; look at its errors in the dashboard or the journal."
            )
        elif s.retries and s.retries / max(1, s.attempts) >= 0.2:
            out.append(
                f"`{s.step}` needed retries in {s.retries} of {s.attempts} attempts: check its provider's health."
            )
    return out


def _observed_parallelism(runs: Sequence[tuple[Any, Sequence[Any]]]) -> tuple[float, float] | None:
    """(busy time / elapsed time of the steps, elapsed) in the latest run with timings."""
    for _, records in runs:
        timed = [r for r in records if r.started_at and r.finished_at and r.status == "succeeded"]
        if len(timed) < 3:
            continue
        elapsed = max(r.finished_at for r in timed) - min(r.started_at for r in timed)
        if elapsed <= 0:
            return None
        return sum(r.finished_at - r.started_at for r in timed) / elapsed, elapsed
    return None


def cheaper_model(model: str, pricing: Any = None) -> tuple[str, float] | None:
    """A cheaper model of the same provider and family, with how many times cheaper it is."""
    if pricing is None:
        from legato.providers import default_pricing

        pricing = default_pricing()
    prices: Mapping[str, Any] = pricing.prices

    def blended(p: Any) -> float:
        return float(p.input) * 3 + float(p.output)  # a typical 3:1 input:output token mix

    match = None
    for key in sorted(prices, key=len, reverse=True):
        bare = key.split("/", 1)[-1]
        if model == bare or model.startswith(bare + "-") or key == model:
            match = key
            break
    if match is None:
        return None
    provider = match.split("/", 1)[0] if "/" in match else ""
    current = blended(prices[match])
    if current <= 0:
        return None
    tokens = match.split("/", 1)[-1].split("-")

    def shared(key: str) -> int:
        n = 0
        for x, y in zip(tokens, key.split("/", 1)[-1].split("-"), strict=False):
            if x != y:
                break
            n += 1
        return n

    candidates = [
        (k, blended(p), shared(k))
        for k, p in prices.items()
        if k != match
        and (k.split("/", 1)[0] if "/" in k else "") == provider
        and shared(k) >= 1
        and 0 < blended(p) <= current / 2
        and "embedding" not in k
    ]
    if not candidates:
        return None
    # The nearest relative (longest shared name prefix), then the closest in quality (price).
    name, price, _ = max(candidates, key=lambda c: (c[2], c[1]))
    return name.split("/", 1)[-1], current / price

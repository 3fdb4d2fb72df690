"""build_options on exact records: each kind of option is proposed where it applies,
predicted from the records' own distributions, and not proposed where it does not."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from legato.observe import Option, StepShape, analyze_runs, build_options, parse_volume
from legato.store import RunRecord, StepRecord

GRAPH = {"load": [], "answer": ["load"]}
SHAPES = {"load": StepShape(), "answer": StepShape(deps=("load",))}


def history(n: int = 200) -> list[tuple[RunRecord, list[StepRecord]]]:
    rng = np.random.default_rng(3)
    runs = []
    for i in range(n):
        t0 = 1000.0 * (i + 1)
        took = float(rng.choice([0.5, 3.0], p=[0.93, 0.07]) * rng.uniform(0.9, 1.1))  # one call in 14 is slow
        steps = [
            StepRecord(f"r{i}", "load", "succeeded", output=i, started_at=t0, finished_at=t0 + 0.1, duration_s=0.1),
            StepRecord(f"r{i}", "answer", "succeeded", output=f"a{i}", started_at=t0 + 0.1, finished_at=t0 + 0.1 + took,
                       duration_s=took, model="gpt-4o", cost=0.01, input_tokens=1000, output_tokens=200),
        ]  # fmt: skip
        run = RunRecord(id=f"r{i}", pipeline="qa", version_hash="v", inputs={"q": i}, status="succeeded",  # type: ignore[arg-type]
                        started_at=t0, finished_at=t0 + 0.1 + took + 0.005, created_at=t0)  # fmt: skip
        runs.append((run, steps))
    return runs


def test_a_cheaper_model_and_hedging_for_a_priced_heavy_tailed_step() -> None:
    runs = history()
    analysis = analyze_runs("qa", runs, GRAPH, shapes=SHAPES)
    report = build_options(analysis, runs, GRAPH, SHAPES, volume_per_month=parse_volume("1000/day"))
    assert report.volume_per_month == 30_000
    assert abs(report.error["p50"]) < 0.02
    by_key = {o.kind: o for o in report.options}
    cheaper = by_key["model"]
    assert cheaper.change == {"step": "answer", "set": {"llm": "gpt-4o-mini"}}
    assert cheaper.predicted.cost_per_run < report.measured.cost_per_run / 5
    assert cheaper.cost_per_month == cheaper.predicted.cost_per_run * 30_000
    assert "quality" in cheaper.risk
    hedge = by_key["hedge"]
    assert hedge.change["group"] == "gpt-4o"
    assert hedge.predicted.p95_s < report.predicted_today.p95_s  # the slow calls are cut short
    assert hedge.predicted.cost_per_run > report.predicted_today.cost_per_run  # at the price of duplicates
    assert "groups:" in hedge.yaml


def test_nothing_is_proposed_that_is_already_set() -> None:
    runs = history(50)
    for _, steps in runs[::5]:
        steps[1] = StepRecord(steps[1].run_id, "answer", "failed", error_type="ConnectionError", duration_s=0.5)
    shapes = {"load": StepShape(cache=True), "answer": StepShape(deps=("load",), max_attempts=3, cache=True)}
    analysis = analyze_runs("qa", runs, GRAPH, shapes=shapes)
    assert not any("add `retries:`" in r for r in analysis.recommendations)
    assert any("although it is retried" in r for r in analysis.recommendations)
    report = build_options(analysis, runs, GRAPH, shapes)
    assert not [o for o in report.options if "retries" in o.change.get("set", {}) or "cache" in o.change.get("set", {})]


def chain(durations: list[dict[str, tuple[float, object]]]) -> list[tuple[RunRecord, list[StepRecord]]]:
    """Runs of a two-step chain ``first -> second``: per run, each step's (duration, output)."""
    runs = []
    for i, steps in enumerate(durations):
        t, records = 1000.0 * (i + 1), []
        for name, (took, output) in steps.items():
            records.append(StepRecord(f"r{i}", name, "succeeded", output=output, started_at=t, finished_at=t + took,
                                      duration_s=took))  # fmt: skip
            t += took
        run = RunRecord(id=f"r{i}", pipeline="p", version_hash="v", inputs={"i": i}, status="succeeded",  # type: ignore[arg-type]
                        started_at=1000.0 * (i + 1), finished_at=t, created_at=1000.0 * (i + 1))  # fmt: skip
        runs.append((run, records))
    return runs


def kinds(runs: list[tuple[RunRecord, list[StepRecord]]], shapes: dict[str, StepShape]) -> dict[str, Option]:
    graph = {name: list(shape.deps) for name, shape in shapes.items()}
    analysis = analyze_runs("p", runs, graph, shapes=shapes)
    return {o.kind: o for o in build_options(analysis, runs, graph, shapes).options}


def test_a_cascade_for_a_priced_model_step_but_not_for_an_unpriced_one() -> None:
    runs = history()
    options = kinds(runs, SHAPES)
    cascade = options["cascade"]
    group = cascade.change["groups"]["answer-cascade"]["cascade"]
    assert [t["model"] for t in group["tiers"]] == ["gpt-4o-mini", "gpt-4o"]
    assert cascade.change["set"] == {"llm": "answer-cascade"}
    assert "cascade:" in cascade.yaml
    assert "llm: answer-cascade" in cascade.yaml
    # Cheaper than today (most answers come from the small model), dearer than the small model alone,
    # and slower at the median (the escalated calls pay for both models).
    assert options["model"].predicted.cost_per_run < cascade.predicted.cost_per_run < 0.01
    assert cascade.predicted.p95_s > options["model"].predicted.p95_s
    assert "escalat" in cascade.risk
    unpriced = [(run, [replace(s, cost=None, model=None) for s in steps]) for run, steps in runs]
    assert "cascade" not in kinds(unpriced, SHAPES)


def mapped(
    n_items: list[int], per_call: float, per_item: float, in_flight: int
) -> list[tuple[RunRecord, list[StepRecord]]]:
    """A map over a list whose calls of ``in_flight`` items take ``per_call + per_item * size``."""
    plan = []
    for n in n_items:
        calls = math.ceil(n / in_flight)
        took = calls * (per_call + per_item * n / calls)
        plan.append({"load": (0.01, list(range(n))), "entities": (took, [[x] for x in range(n)])})
    return chain(plan)


def test_a_bigger_batch_for_a_local_model_map_predicted_from_its_own_batch_sizes() -> None:
    sizes = [1, 3, 5, 8, 8, 8, 8, 8] * 5  # a run of few items shows a call's fixed part
    runs = mapped(sizes, per_call=0.03, per_item=0.005, in_flight=2)
    batched = {"load": StepShape(), "entities": StepShape(deps=("load",), mapped=True, max_concurrency=2, batched=True)}
    options = kinds(runs, batched)
    batch = options["batch"]
    assert "concurrency" not in options  # a local model's map is batched, not fanned out
    assert batch.change == {"step": "entities", "set": {"max_concurrency": 8}}
    assert "25% of a call's time grows with its size, fitted" in batch.title  # 0.005 * 2 of 0.04
    # All 8 items in one call: 0.03 + 8 * 0.005 = 70 ms instead of 4 calls of 40 ms.
    assert abs(batch.predicted.p50_s - (0.01 + 0.07)) < 0.005
    plain = {**batched, "entities": replace(batched["entities"], batched=False)}
    assert set(kinds(runs, plain)) & {"batch", "concurrency"} == {"concurrency"}
    unlimited = {**batched, "entities": replace(batched["entities"], max_concurrency=None)}
    assert not {"batch", "concurrency"} & set(kinds(runs, unlimited))


def test_splitting_a_long_step_over_its_list_input() -> None:
    rng = np.random.default_rng(5)
    plan = [{"load": (0.01, list(range(6))), "answer": (float(rng.uniform(0.5, 0.7)), "text")} for _ in range(40)]
    shapes = {"load": StepShape(), "answer": StepShape(deps=("load",), whole_outputs=(("docs", "load"),))}
    split = kinds(chain(plan), shapes)["split"]
    assert split.change == {"step": "answer", "set": {"map": "docs", "max_concurrency": 6}}
    assert "map: docs" in split.yaml
    assert "list" in split.risk
    median = float(np.median([p["answer"][0] for p in plan]))
    assert abs(split.predicted.p50_s - (0.01 + median / 6)) < 0.02  # six items at once
    scalar = [{"load": (0.01, "one document"), "answer": p["answer"]} for p in plan]
    assert "split" not in kinds(chain(scalar), shapes)  # nothing to split over
    short = [{"load": (0.5, list(range(6))), "answer": (0.05, "text")} for _ in range(40)]
    assert "split" not in kinds(chain(short), shapes)  # not where the time goes


def test_step_shapes_know_local_model_tasks_and_whole_outputs() -> None:
    from legato.observe import step_shapes
    from legato.spec import load_pipeline

    shapes = step_shapes(load_pipeline(Path(__file__).parents[2] / "examples" / "text_insights.yaml"))
    assert shapes["entities"].batched  # task: ner micro-batches concurrent calls
    assert not shapes["escalate"].batched  # a Python step
    assert {("topic", "classify"), ("escalation", "escalate")} <= set(shapes["report"].whole_outputs)
    assert shapes["classify"].whole_outputs == ()  # reads inputs only

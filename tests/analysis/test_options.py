"""build_options on exact records: a priced model step with a heavy tail gets a
cheaper-model option and a hedging option, predicted from its own distribution."""

from __future__ import annotations

import numpy as np

from legato.observe import StepShape, analyze_runs, build_options, parse_volume
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
    by_key = {next(iter(o.change["set"])): o for o in report.options}
    cheaper = by_key["llm"]
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

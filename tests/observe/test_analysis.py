"""``analyze_runs`` on exact records, and ``legato analyze`` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from typer.testing import CliRunner

from legato import Pipeline
from legato.cli import app
from legato.observe import analyze_runs
from legato.observe._analysis import cheaper_model, percentile
from legato.store import DurableRunner, Journal, RunRecord, RunStore, StepRecord

GRAPH = {"load": [], "summarize": ["load"], "tags": ["load"], "report": ["summarize", "tags"]}


def run(i: int, inputs: dict[str, object], status: str = "succeeded") -> RunRecord:
    t0 = 1000.0 * (i + 1)
    return RunRecord(id=f"r{i}", pipeline="docs", version_hash="v", inputs=inputs, status=status,
                     started_at=t0, finished_at=t0 + 3.0, created_at=t0)  # fmt: skip


def step(i: int, name: str, start: float, took: float, **kw: object) -> StepRecord:
    t0 = 1000.0 * (i + 1)
    return StepRecord(run_id=f"r{i}", step=name, status=kw.pop("status", "succeeded"),  # type: ignore[arg-type]
                      started_at=t0 + start, finished_at=t0 + start + took, duration_s=took, **kw)  # type: ignore[arg-type]  # fmt: skip


def history() -> list[tuple[RunRecord, list[StepRecord]]]:
    runs = []
    for i in range(4):
        same = {"doc": "a.pdf"} if i < 3 else {"doc": "b.pdf"}
        records = [
            step(i, "load", 0.0, 0.2, output="text"),
            step(
                i,
                "summarize",
                0.2,
                2.0 + i * 0.1,
                output="sum",
                model="gpt-4o",
                cost=0.09,
                input_tokens=3000,
                output_tokens=400,
                meta={"calls": 1},
            ),
            step(
                i,
                "tags",
                0.2,
                0.5,
                output=["x"],
                model="gpt-4o-mini",
                cost=0.01,
                input_tokens=800,
                output_tokens=40,
                meta={"calls": 8},
            ),
            step(i, "report", 1.0 + 2.2 + i * 0.1, 0.1, output="r"),
        ]
        if i == 1:  # the store keeps one record per step: attempt 2 means one failed try before it
            records[2] = step(i, "tags", 0.4, 0.5, attempt=2, output=["x"], model="gpt-4o-mini", cost=0.01,
                              input_tokens=800, output_tokens=40, meta={"calls": 8})  # fmt: skip
        runs.append((run(i, same), records))
    return runs


def test_percentiles_are_observed_values() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert percentile([5.0], 95) == 5.0


def test_per_step_statistics_and_critical_path_from_the_graph() -> None:
    a = analyze_runs("docs", history(), GRAPH)
    by = {s.step: s for s in a.steps}
    assert [s.step for s in a.steps] == ["load", "summarize", "tags", "report"]
    assert by["summarize"].p50_s == 2.1
    assert by["summarize"].p95_s == 2.3
    assert by["tags"].attempts == 5
    assert by["tags"].failed == 1
    assert by["tags"].retries == 1
    assert by["tags"].error_rate == 0.2
    assert round(by["summarize"].cost_share, 3) == 0.9
    assert round(a.total_cost, 6) == 0.4
    assert a.critical_path == ["load", "summarize", "report"]
    assert a.graph_known
    assert by["summarize"].repeated_inputs == 2  # runs 1 and 2 repeat run 0's document
    assert by["summarize"].cache_hit_potential == 0.5
    assert round(by["summarize"].saved_by_cache, 2) == 0.18
    assert by["report"].wait_s is not None
    assert by["report"].wait_s < 1.2


def test_recommendations_are_concrete() -> None:
    recs = analyze_runs("docs", history(), GRAPH).recommendations
    text = "\n".join(recs)
    assert "`summarize` is " in text  # the heaviest step of the critical path
    assert "`tags` makes 8 model calls per run" in text  # batch
    assert "repeated inputs: `summarize` (50%)" in text  # cache
    assert "try `gpt-4o-mini`" in text  # cheaper model for the costliest step
    assert "`tags` fails 20% of its attempts" in text  # reliability


def test_without_a_graph_the_critical_path_is_what_each_step_waited_for() -> None:
    a = analyze_runs("docs", history())
    assert not a.graph_known
    assert a.critical_path == ["load", "summarize", "report"]


def test_cheaper_model_stays_in_the_family() -> None:
    name, ratio = cheaper_model("gpt-4o") or ("", 0.0)
    assert name == "gpt-4o-mini"
    assert ratio > 10
    assert cheaper_model("gpt-4o-mini") is None or cheaper_model("gpt-4o-mini")[0] != "gpt-4o"  # type: ignore[index]
    assert cheaper_model("my-own-model") is None


def test_markdown_summary_names_every_step() -> None:
    md = analyze_runs("docs", history(), GRAPH).to_markdown()
    for name in GRAPH:
        assert f"| {name} |" in md
    assert "Critical path (from the graph): load -> summarize -> report" in md


def test_cli_analyzes_stored_runs_and_writes_the_journal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    p = Pipeline("chain")

    @p.step
    async def first(x: int) -> int:
        return x + 1

    @p.step
    async def second(first: int) -> int:
        return first * 2

    async def record() -> str:
        async with RunStore(url) as store:
            runner = DurableRunner(store, reflect=None)
            ids = [(await runner.run(p, {"x": i % 2})).run_id for i in range(4)]
        return ids[-1]

    last_id = anyio.run(record)
    cli = CliRunner()
    out = cli.invoke(app, ["analyze", "chain", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert "chain: 4 run(s), 4 succeeded" in out.output
    assert "critical path (inferred from timings" in out.output
    as_json = cli.invoke(app, ["analyze", last_id, "--database-url", url, "--json", "--no-journal"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["run_ids"] == [last_id]
    assert [s["step"] for s in data["steps"]] == ["first", "second"]
    missing = cli.invoke(app, ["analyze", "nothing-here", "--database-url", url])
    assert missing.exit_code == 2

    async def entries() -> list[str]:
        async with RunStore(url) as store:
            return [e.title for e in await Journal(store).recent(10)]

    assert anyio.run(entries) == ["Analysis of chain (4 run(s))"]


def test_cli_with_a_spec_uses_its_graph(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "def load(doc: str) -> str:\n    return doc.upper()\n\n"
        "def count(text: str) -> int:\n    return len(text)\n\n"
        "def shout(text: str) -> str:\n    return text + '!'\n"
    )
    spec = tmp_path / "words.yaml"
    spec.write_text(
        "name: words\ninputs:\n  doc: {type: string}\nsteps:\n"
        "  load:\n    uses: ./steps.py:load\n"
        "  count:\n    uses: ./steps.py:count\n    with: {text: '${steps.load}'}\n"
        "  shout:\n    uses: ./steps.py:shout\n    with: {text: '${steps.load}'}\n"
    )
    url = f"sqlite:///{tmp_path / 'w.db'}"
    cli = CliRunner()
    for _ in range(3):
        ran = cli.invoke(app, ["run", str(spec), "--input", "doc=hello", "--database-url", url, "--json"])
        assert ran.exit_code == 0, ran.output
    out = cli.invoke(app, ["analyze", str(spec), "--database-url", url, "--json", "--no-journal"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["graph_known"] is True
    assert data["runs"] == 3
    assert data["critical_path"][0] == "load"
    assert len(data["critical_path"]) == 2
    by = {s["step"]: s for s in data["steps"]}
    assert by["load"]["repeated_inputs"] == 2  # the same document three times
    assert any("repeated inputs" in r for r in data["recommendations"])
    missing = cli.invoke(app, ["analyze", str(tmp_path / "nope.yaml"), "--database-url", url])
    assert missing.exit_code == 2

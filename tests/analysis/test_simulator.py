"""The simulator against a pipeline whose step distributions are known.

Python steps sleep for draws from seeded distributions (one of them fails 15% of
the time); a few hundred runs are recorded in a SQLite store; ``legato analyze
--options`` predicts today's figures from them, and the top option's YAML change
is applied and run again to check the predicted direction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import yaml
from typer.testing import CliRunner

from legato import Pipeline
from legato.cli import app
from legato.spec import load_pipeline
from legato.store import DurableRunner, RunStore

HERE = Path(__file__).parent


def _copy(tmp: Path) -> Path:
    shutil.copy(HERE / "steps.py", tmp / "steps.py")
    shutil.copy(HERE / "spec.yaml", tmp / "spec.yaml")
    return tmp / "spec.yaml"


def _record(spec: Path, url: str, runs: int) -> None:
    async def go() -> None:
        pipeline = load_pipeline(spec)
        async with RunStore(url) as store:
            runner = DurableRunner(store, reflect=None)
            for i in range(runs):  # one request in four is new: the others repeat an earlier one
                await runner.run(pipeline, {"n": 6, "request": i % (runs // 4)}, source=str(spec))

    anyio.run(go)


def _record_side_by_side(control: Path, changed: Path, urls: tuple[str, str], runs: int) -> None:
    """Runs of both configurations taken turn about, so the machine's drift touches both alike."""

    async def go() -> None:
        pipelines = (load_pipeline(control), load_pipeline(changed))
        async with RunStore(urls[0]) as first, RunStore(urls[1]) as second:
            runners = (DurableRunner(first, reflect=None), DurableRunner(second, reflect=None))
            for i in range(runs):
                for k, spec in enumerate((control, changed)):
                    await runners[k].run(pipelines[k], {"n": 6, "request": i}, source=str(spec))

    anyio.run(go)


def _options(target: str, url: str, *extra: str) -> dict[str, Any]:
    out = CliRunner().invoke(
        app, ["analyze", target, "--database-url", url, "--options", "--json", "--no-journal", "--last", "1000", *extra]
    )
    assert out.exit_code == 0, out.output
    data: dict[str, Any] = json.loads(out.output)
    return data


def _apply(spec: Path, change: dict[str, Any], target: Path) -> None:
    doc = yaml.safe_load(spec.read_text())
    step = doc["steps"][change["step"]]
    step.update(change.get("set", {}))
    if "remove_depends_on" in change:
        step["depends_on"] = [d for d in step.get("depends_on", []) if d not in change["remove_depends_on"]]
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_prediction_for_today_matches_the_measured_runs_and_the_top_option_holds(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    before = f"sqlite:///{tmp_path / 'before.db'}"
    _record(spec, before, 160)
    data = _options("known_distributions", before, "--volume", "100000/month")
    report = data["options"]
    today, predicted = report["today"]["measured"], report["today"]["predicted"]
    assert abs(predicted["p50_s"] / today["p50_s"] - 1) <= 0.10, report["today"]
    assert abs(predicted["p95_s"] / today["p95_s"] - 1) <= 0.10, report["today"]
    assert abs(predicted["success_rate"] - today["success_rate"]) <= 0.02, report["today"]
    assert 0.75 <= today["success_rate"] <= 0.93  # the flaky step is really failing about 15% of the time

    options = report["options"]
    assert len(options) >= 3
    kinds = {next(iter(o["change"].get("set", {"remove_depends_on": 0}))) for o in options}
    assert {"retries", "cache"} <= kinds
    assert kinds & {"max_concurrency", "remove_depends_on"}  # whichever branch is the slower one today
    top = options[0]
    assert top["change"] == {"step": "score", "set": {"retries": top["change"]["set"]["retries"]}}
    assert top["predicted"]["success_rate"] > today["success_rate"] + 0.1
    assert "retries:" in top["yaml"]
    assert top["risk"]

    changed = tmp_path / "changed.yaml"
    _apply(spec, top["change"], changed)
    control_url, after_url = f"sqlite:///{tmp_path / 'control.db'}", f"sqlite:///{tmp_path / 'after.db'}"
    _record_side_by_side(spec, changed, (control_url, after_url), 80)
    control = _options(str(spec), control_url)["options"]["today"]["measured"]
    after = _options(str(changed), after_url)["options"]["today"]["measured"]
    assert after["success_rate"] > control["success_rate"] + 0.05  # the predicted direction
    assert abs(after["success_rate"] - top["predicted"]["success_rate"]) <= 0.04
    # Latency against the control runs taken at the same time (the machine is shared and its speed
    # drifts between batches): the measured ratio within 20% of the predicted one.
    for q in ("p50_s", "p95_s"):
        expected = top["predicted"][q] / predicted[q]
        assert abs(after[q] / control[q] / expected - 1) <= 0.20, (q, control, after, top["predicted"], predicted)


def test_name_and_file_give_the_same_critical_path(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "import time\n\n"
        "def load(doc: str) -> str:\n    time.sleep(0.02)\n    return doc\n\n"
        "def slow(load: str) -> int:\n    time.sleep(0.03)\n    return len(load)\n\n"
        "def quick(load: str) -> str:\n    time.sleep(0.01)\n    return load + '!'\n"
    )
    spec = tmp_path / "pair.yaml"
    # One step at a time: the independent steps run one after the other, which timings alone read as a chain.
    spec.write_text(
        "name: pair\nmax_concurrency: 1\ninputs:\n  doc: {type: string}\nsteps:\n"
        "  load:\n    uses: ./steps.py:load\n"
        "  slow:\n    uses: ./steps.py:slow\n"
        "  quick:\n    uses: ./steps.py:quick\n"
    )
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cli = CliRunner()
    for _ in range(3):
        ran = cli.invoke(app, ["run", str(spec), "--input", "doc=hello", "--database-url", url, "--json"])
        assert ran.exit_code == 0, ran.output
    by_file = json.loads(
        cli.invoke(app, ["analyze", str(spec), "--database-url", url, "--json", "--no-journal"]).output
    )
    by_name = json.loads(cli.invoke(app, ["analyze", "pair", "--database-url", url, "--json", "--no-journal"]).output)
    assert by_file["critical_path"][0] == "load"
    assert len(by_file["critical_path"]) == 2
    assert by_name["critical_path"] == by_file["critical_path"]
    assert by_name["graph_known"] is True


def test_options_refuse_a_bad_volume_and_a_pipeline_without_a_graph(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    p = Pipeline("graphless")

    @p.step
    async def only(x: int) -> int:
        return x

    async def go() -> None:
        async with RunStore(url) as store:
            await DurableRunner(store, reflect=None).run(p, {"x": 1})

    anyio.run(go)
    cli = CliRunner()
    bad = cli.invoke(app, ["analyze", "graphless", "--database-url", url, "--options", "--volume", "lots/month"])
    assert bad.exit_code == 2
    assert "volume 'lots/month'" in bad.output
    per_year = cli.invoke(app, ["analyze", "graphless", "--database-url", url, "--options", "--volume", "5/year"])
    assert per_year.exit_code == 2
    no_graph = cli.invoke(app, ["analyze", "graphless", "--database-url", url, "--options", "--no-journal"])
    assert no_graph.exit_code == 2
    assert "--options needs the graph of pipeline 'graphless'" in no_graph.output

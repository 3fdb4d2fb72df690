"""``legato plan`` and ``legato validate`` on a pipeline with a cycle and a switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.spec.test_flow import FLOW, write
from typer.testing import CliRunner

from legato.cli import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LEGATO_DATABASE_URL", str(tmp_path / "runs.db"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_plan_shows_cycles_and_switches_in_every_format(runner: CliRunner, tmp_path: Path) -> None:
    path = str(write(tmp_path, FLOW))
    text = runner.invoke(app, ["plan", path])
    assert text.exit_code == 0, text.output
    assert "refine repeats draft -> critique (until critique.score >= 6, at most 4 times)" in text.stdout
    assert "route runs exactly one case of steps.refine.critique.kind: bug: fix; feature: plan; default: fallback" in (
        text.stdout
    )
    assert "plan runs when route chooses feature" in text.stdout
    mermaid = runner.invoke(app, ["plan", path, "-f", "mermaid"]).stdout
    assert '  subgraph refine["refine · cycle ≤4× until critique.score >= 6"]' in mermaid
    assert "    refine__critique -. next iteration .-> refine__draft" in mermaid
    assert "  route -.->|feature| plan" in mermaid
    dot = runner.invoke(app, ["plan", path, "-f", "dot"]).stdout
    assert '  subgraph "cluster_refine" {' in dot
    assert '"route" -> "plan" [label="feature", style=dashed];' in dot
    doc = json.loads(runner.invoke(app, ["plan", path, "-f", "json"]).stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["refine"]["cycle"]["max_iterations"] == 4
    assert steps["route"]["switch"]["cases"]["default"] == ["fallback"]
    assert steps["fix"]["case_of"] == {"switch": "route", "cases": ["bug"]}


def test_validate_rejects_an_unbounded_cycle(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FLOW.replace("      max_iterations: 4\n", ""))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:8:7: steps.refine.cycle: a cycle needs max_iterations" in result.stderr

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app

PIPELINE = """
name: triage
inputs:
  tickets: {type: list}
steps:
  label:
    llm: openai/gpt-4o-mini
    system: Label this support ticket as bug, billing or other.
    prompt: ${inputs.tickets}
    map: prompt
    max_tokens: 3
  digest:
    llm: smart
    system: You write a short digest for the support lead.
    prompt: "Digest these labels: ${steps.label}"
    max_tokens: 300
"""

CONFIG = """
models:
  house:
    provider: openai
    model: house-model
    api_key: env:LEGATO_TEST_KEY
    price: {input: 2.0, output: 8.0}
groups:
  smart:
    deployments:
      - {model: house}
      - {model: openai/gpt-4o-mini}
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-used")  # the models are resolved, never called
    monkeypatch.setenv("LEGATO_TEST_KEY", "sk-never-used")
    pipeline = tmp_path / "triage.yaml"
    pipeline.write_text(PIPELINE)
    config = tmp_path / "legato.yaml"
    config.write_text(CONFIG)
    return pipeline, config


def test_plan_cost_json(files: tuple[Path, Path]) -> None:
    pipeline, config = files
    result = CliRunner().invoke(
        app, ["plan", str(pipeline), "--cost", "--format", "json", "--fan-out", "40", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "critical_path" in data  # the plan itself is still there
    cost = data["cost"]
    steps = {s["step"]: s for s in cost["steps"]}
    assert steps["label"]["calls"] == 40
    assert steps["label"]["output_tokens_per_call"] == 3
    digest = steps["digest"]
    # the group is priced at its most expensive member: the price legato.yaml gives "house"
    expected = (digest["input_tokens_per_call"] * 2.0 + 300 * 8.0) / 1e6
    assert digest["usd"] == pytest.approx(expected)
    assert cost["total_usd"] == pytest.approx(steps["label"]["usd"] + digest["usd"])
    assert cost["unpriced_steps"] == []
    assert any("40 items" in a for a in cost["assumptions"])
    assert any("group (smart) is priced at its most expensive member" in a for a in cost["assumptions"])


def test_plan_cost_text_prints_the_table_and_assumptions(files: tuple[Path, Path]) -> None:
    pipeline, config = files
    result = CliRunner().invoke(app, ["plan", str(pipeline), "--cost", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "cost estimate (one run):" in result.stdout
    assert "estimated total: $" in result.stdout
    assert "a map step runs over 10 items (--fan-out)" in result.stdout


def test_plan_cost_needs_text_or_json(files: tuple[Path, Path]) -> None:
    pipeline, config = files
    result = CliRunner().invoke(app, ["plan", str(pipeline), "--cost", "--format", "mermaid", "--config", str(config)])
    assert result.exit_code == 2
    assert "--cost works with --format text or json" in result.stderr

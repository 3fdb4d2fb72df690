"""``legato run``, ``validate`` and ``plan`` through the real command line app."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from legato.cli import app
from legato.cli.run import _Progress
from legato.engine import StepFailed, StepFinished, StepSkipped, StepStarted
from legato.spec import load_pipeline

EXAMPLE = Path(__file__).resolve().parent / "fixtures" / "insights.yaml"

STEPS = """
async def upper(text: str) -> str:
    return text.upper()

async def boom(upper: str) -> str:
    raise ValueError(f"cannot handle {upper}")
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # `legato run` stores every run: in a database of the test's own, never in the
    # working directory's ./.legato (nor a database named by the environment).
    monkeypatch.setenv("LEGATO_DATABASE_URL", str(tmp_path / "runs.db"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_run_example_as_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", str(EXAMPLE), "--json", "--input", "text=Great app, fast delivery by DHL"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"run_id", "status", "outputs", "duration_s"}
    assert doc["status"] == "succeeded"
    assert doc["outputs"]["sentiment"] == "positive"
    assert doc["outputs"]["entities"] == ["DHL"]
    assert doc["outputs"]["escalation"] is None


def test_runs_are_stored_in_the_configured_database(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(EXAMPLE), "--json", "--input", "text=Great app"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    assert (tmp_path / "runs.db").is_file()
    assert not (tmp_path / ".legato").exists()
    listed = runner.invoke(app, ["runs", "show", run_id, "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["id"] == run_id


def test_run_prints_a_summary_without_a_terminal(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout
    assert "Speedy Couriers" in result.stdout


def test_inputs_file_and_typed_values(runner: CliRunner, tmp_path: Path) -> None:
    inputs = tmp_path / "in.json"
    inputs.write_text(json.dumps({"text": "The invoice price is bad", "labels": ["billing", "support"]}))
    result = runner.invoke(app, ["run", str(EXAMPLE), "--inputs-file", str(inputs), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"]["topic"] == "billing"
    result = runner.invoke(app, ["run", str(EXAMPLE), "--json", "-i", "text=1 battery", "-i", 'labels=["product"]'])
    doc = json.loads(result.stdout)
    assert doc["outputs"]["topic"] == "product"


def test_failed_run_exits_1_with_the_step_error(runner: CliRunner, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: failing
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper}
          boom: {uses: ./steps.py:boom}
        """,
    )
    result = runner.invoke(app, ["run", str(path), "--json", "-i", "text=x"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["failed_step"] == "boom"
    assert doc["error"] == "StepError: step 'boom' failed: ValueError: cannot handle X"
    result = runner.invoke(app, ["run", str(path), "-i", "text=x"])
    assert result.exit_code == 1
    assert "ValueError: cannot handle X" in result.stdout


def test_invalid_spec_and_inputs_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, "name: bad\nsteps:\n  a: {uses: ./steps.py:uper}\n  b: {uses: ./steps.py:upper, map: x}\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3:13: steps.a.uses: './steps.py' has no attribute 'uper'" in result.stderr
    assert f"{path}:4:36: steps.b.map" in result.stderr
    assert "2 errors" in result.stderr
    result = runner.invoke(app, ["run", str(EXAMPLE), "-i", "txt=hello"])
    assert result.exit_code == 2
    assert "unknown input 'txt' (did you mean 'text'?)" in result.stderr
    result = runner.invoke(app, ["run", str(EXAMPLE), "-i", "novalue"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_validate(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0
    assert "ok (pipeline 'insights', 5 steps)" in result.stdout
    bad = write(tmp_path, "name: bad\nfailure_policy: x\nsteps:\n  a: {uses: ./steps.py:upper, timeout: 0}\n")
    result = runner.invoke(app, ["validate", str(EXAMPLE), str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:4:40: steps.a.timeout" in result.stderr
    assert f"{bad}:2:17: failure_policy" in result.stderr


def test_plan_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "steps", "edges", "levels", "critical_path", "max_parallelism",
        "estimated_sequential_ms", "estimated_parallel_ms",
    }  # fmt: skip
    assert doc["levels"] == [["sentiment", "classify", "entities"], ["escalate"], ["report"]]
    assert doc["critical_path"] == ["entities", "report"]
    assert doc["max_parallelism"] == 3
    assert doc["estimated_sequential_ms"] == 195
    assert doc["estimated_parallel_ms"] == 85
    assert ["sentiment", "escalate"] in doc["edges"]


def test_plan_text_mermaid_dot(runner: CliRunner) -> None:
    text = runner.invoke(app, ["plan", str(EXAMPLE)])
    assert text.exit_code == 0
    assert "critical path: entities -> report" in text.stdout
    assert "85 ms parallel vs 195 ms sequential" in text.stdout
    mermaid = runner.invoke(app, ["plan", str(EXAMPLE), "-f", "mermaid"]).stdout
    assert mermaid.startswith("flowchart LR\n")
    assert "  sentiment -.-> escalate" in mermaid
    dot = runner.invoke(app, ["plan", str(EXAMPLE), "-f", "dot"]).stdout
    assert dot.startswith('digraph "insights" {')
    assert '"entities" -> "report" [penwidth=2];' in dot
    assert runner.invoke(app, ["plan", str(EXAMPLE), "-f", "svg"]).exit_code == 2


def test_version(runner: CliRunner) -> None:
    from legato import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"legato {__version__}"


def test_live_progress_follows_events() -> None:
    pipeline = load_pipeline(EXAMPLE)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    progress = _Progress(pipeline, console)
    progress.on_event(StepStarted("r", 0.0, "sentiment"))
    progress.on_event(StepFinished("r", 0.0, "sentiment", {}, 0.012))
    progress.on_event(StepSkipped("r", 0.0, "escalate", "condition is false"))
    progress.on_event(StepFailed("r", 0.0, "entities", "ValueError", "bad", 0.001))
    assert progress.state["sentiment"] == "succeeded"
    assert progress.detail["sentiment"] == "12 ms"
    assert progress.state["escalate"] == "skipped"
    assert progress.state["entities"] == "failed"
    assert progress.state["report"] == "pending"
    with progress:
        progress.on_event(StepStarted("r", 0.0, "report"))
    assert "report" in buffer.getvalue()

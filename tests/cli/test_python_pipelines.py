"""``legato run/plan/validate/analyze module:pipeline``: a Python ``Pipeline`` named by
import path works wherever a YAML file does, and its runs are stored and resumable."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app

MODULE = """
from legato import Pipeline

pipeline = Pipeline("greet")

@pipeline.step
async def hello(name: str) -> str:
    return f"hello {name}"

@pipeline.step
async def shout(hello: str) -> str:
    return hello.upper()

def build():
    return pipeline

not_a_pipeline = 42
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the current directory (a fresh name per test: imports are cached)."""
    monkeypatch.setenv("LEGATO_DATABASE_URL", str(tmp_path / "runs.db"))
    monkeypatch.chdir(tmp_path)
    name = f"flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    return name


@pytest.mark.parametrize("attr", ["pipeline", "build"])
def test_run_a_python_pipeline_by_import_path(module: str, attr: str) -> None:
    result = CliRunner().invoke(app, ["run", f"{module}:{attr}", "-i", "name=ada", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded"
    assert doc["outputs"]["shout"] == "HELLO ADA"
    shown = CliRunner().invoke(app, ["runs", "show", doc["run_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["source"] == f"{module}:{attr}"


def test_a_file_reference_runs_and_is_recorded_with_its_absolute_path(module: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", f"./{module}.py:pipeline", "-i", "name=bo", "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    shown = json.loads(CliRunner().invoke(app, ["runs", "show", run_id, "--json"]).stdout)
    assert shown["source"] == f"{tmp_path.resolve() / module}.py:pipeline"


def test_plan_validate_and_analyze_accept_an_import_path(module: str) -> None:
    ref = f"{module}:pipeline"
    assert CliRunner().invoke(app, ["validate", ref]).stdout == f"{ref}: ok (pipeline 'greet', 2 steps)\n"
    plan = json.loads(CliRunner().invoke(app, ["plan", ref, "-f", "json"]).stdout)
    assert plan["levels"] == [["hello"], ["shout"]]
    assert CliRunner().invoke(app, ["run", ref, "-i", "name=x"]).exit_code == 0
    analysis = CliRunner().invoke(app, ["analyze", ref, "--json", "--no-journal"])
    assert analysis.exit_code == 0, analysis.output
    assert json.loads(analysis.stdout)["pipeline"] == "greet"


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("not_a_pipeline", "is int, not a legato Pipeline"),
        ("nothere", "has no attribute 'nothere'"),
    ],
)
def test_a_reference_to_something_else_is_a_clear_error(module: str, attr: str, message: str) -> None:
    result = CliRunner().invoke(app, ["validate", f"{module}:{attr}"])
    assert result.exit_code == 2
    assert message in result.stderr


def test_an_unknown_module_is_a_clear_error(module: str) -> None:
    result = CliRunner().invoke(app, ["run", "no_such_module_here:pipeline"])
    assert result.exit_code == 2
    assert "cannot import module 'no_such_module_here'" in result.stderr

"""Output that is not a terminal (a pipe, a file, a CI log) is never wrapped or truncated.

Each command runs as a real process with its stdout and stderr on pipes, as a CI job
or ``| grep`` would see them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

LEGATO = [sys.executable, "-c", "from legato.cli import main; main()"]
PIPELINE_NAME = "entity_extraction_and_classification_of_customer_support_tickets"
FIRST = "extract_named_entities_from_the_customer_message_text"
SECOND = "classify_the_customer_message_into_support_categories"

STEPS = """
async def extract(text: str) -> str:
    return text.upper()


async def classify(extract: str) -> str:
    return extract.lower()
"""


def legato(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([*LEGATO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_tables_plans_and_errors_keep_whole_lines_in_a_pipe(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    spec = f"""
        name: {PIPELINE_NAME}
        inputs: {{text: string}}
        steps:
          {FIRST}: {{uses: ./steps.py:extract, with: {{text: "${{inputs.text}}"}}}}
          {SECOND}: {{uses: ./steps.py:classify, with: {{extract: "${{steps.{FIRST}}}"}}}}
    """
    (tmp_path / "long.yaml").write_text(textwrap.dedent(spec).lstrip())
    db = str(tmp_path / "runs.db")
    done = legato(tmp_path, "run", "long.yaml", "-i", "text=hi", "--database-url", db)
    assert done.returncode == 0, done.stderr
    assert f"run {done.stdout.split()[1]} · {PIPELINE_NAME}" in done.stdout
    assert any(line.split()[:2] == [FIRST, "succeeded"] for line in done.stdout.splitlines())

    listed = legato(tmp_path, "runs", "list", "--database-url", db)
    row = next(line for line in listed.stdout.splitlines() if PIPELINE_NAME in line)
    assert row.split()[1:3] == [PIPELINE_NAME, "succeeded"]
    assert "…" not in listed.stdout
    assert not set("┃━│╇") & set(listed.stdout)  # plain aligned text, no box drawing

    analysis = legato(tmp_path, "analyze", PIPELINE_NAME, "--database-url", db)
    assert analysis.returncode == 0, analysis.stderr
    assert f"{FIRST} -> {SECOND}" in analysis.stdout
    assert any(line.split()[:2] == ["*", FIRST] for line in analysis.stdout.splitlines())
    assert "…" not in analysis.stdout

    plan = legato(tmp_path, "plan", "long.yaml")
    assert f"critical path: {FIRST} -> {SECOND}" in plan.stdout.splitlines()

    missing = tmp_path / ("a-rather-long-directory-name-" * 3) / "and-a-store-that-was-never-created.db"
    error = legato(tmp_path, "runs", "list", "--database-url", str(missing))
    assert error.returncode == 2
    (line,) = error.stderr.strip().splitlines()  # one line, however long
    assert line.startswith(f"error: no store at '{missing}'")


def test_brackets_in_messages_print_as_written(tmp_path: Path) -> None:
    db = str(tmp_path / "j.db")
    title = "retry list[str] inputs [/] twice"
    added = legato(tmp_path, "journal", "add", title, "--body", "body [bold]kept[/bold]", "--database-url", db)
    assert added.returncode == 0, added.stderr
    recent = legato(tmp_path, "journal", "recent", "--database-url", db)
    assert recent.returncode == 0, recent.stderr
    assert title in recent.stdout
    assert "body [bold]kept[/bold]" in recent.stdout
    error = legato(tmp_path, "runs", "show", "x", "--database-url", str(tmp_path / "no[/]such.db"))
    assert error.returncode == 2
    assert "no[/]such.db" in error.stderr


def test_semantic_journal_search_prints_no_progress_bar_to_a_pipe(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    added = legato(tmp_path, "journal", "add", "Refund calls time out at night", "-b", "slow API", "--database-url", db)
    assert added.returncode == 0, added.stderr
    found = legato(tmp_path, "journal", "search", "--semantic", "refunds are slow", "--database-url", db)
    assert found.returncode == 0, found.stderr
    assert "Refund calls time out at night" in found.stdout
    assert "\r" not in found.stdout + found.stderr  # no progress bar redrawn in place
    assert "Loading" not in found.stderr
    assert "it/s" not in found.stderr


def test_flags_are_listed_without_a_value_type_in_help(tmp_path: Path) -> None:
    root = legato(tmp_path, "--help")
    assert root.returncode == 0, root.stderr
    lines = {line.split()[1]: line for line in root.stdout.splitlines() if line.startswith("│ --")}
    assert "Show the version and exit." in lines["--version"]
    assert "<bool>" not in root.stdout
    run_help = legato(tmp_path, "run", "--help").stdout
    assert "<bool>" not in run_help
    assert "<list[str]>" in run_help  # options that take a value keep their type


def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    for module in ("legato", "legato.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("legato ")

"""What ``legato run`` prints after a run: the wall time next to the sequential
estimate (the sum of the step durations) and the cost with the number of model calls."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.cli.run import wall_time_line
from legato.engine import RunResult, RunStatus, StepStatus, StepTiming
from legato.testing import FakeProvider, Reply

STEPS = """
import os

from legato.providers import ChatRequest, Message, create


async def ask(question: str) -> str:
    model = create("openai", "gpt-4o-mini", api_key="sk-test", base_url=os.environ["LEGATO_TEST_FAKE_URL"])
    try:
        response = await model.chat(ChatRequest(messages=[Message(role="user", content=question)]))
    finally:
        await model.aclose()
    return response.text


def join(first: str, second: str) -> str:
    return first + " / " + second
"""

PIPELINE = """
name: twice
inputs: {question: string}
steps:
  first: {uses: ./steps.py:ask, with: {question: "${inputs.question}"}}
  second: {uses: ./steps.py:ask, with: {question: "${inputs.question}"}}
  both: {uses: ./steps.py:join, with: {first: "${steps.first}", second: "${steps.second}"}}
outputs: {answer: "${steps.both}"}
"""

LINE = re.compile(
    r"wall (?P<wall>\d+\.\d m?s) · sequential (?P<seq>\d+\.\d m?s)( \(\d+\.\dx from parallelism\))? · "
    r"cost \$(?P<cost>\d+\.\d{6}) \((?P<calls>\d+) model calls?\)"
)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as provider:
        yield provider


def test_legato_run_prints_wall_sequential_and_cost(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script(Reply(text="yes"), Reply(text="yes"))
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "twice.yaml").write_text(textwrap.dedent(PIPELINE).lstrip())
    monkeypatch.setenv("LEGATO_TEST_FAKE_URL", fake.openai_base_url)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", "twice.yaml", "-i", "question=ready?", "--database-url", str(tmp_path / "runs.db")],
        env={"COLUMNS": "60"},  # a narrow terminal does not break the line
    )
    assert result.exit_code == 0, result.output
    assert "yes / yes" in result.output
    found = [m for line in result.output.splitlines() if (m := LINE.fullmatch(line.strip()))]
    assert len(found) == 1, result.output
    assert found[0]["calls"] == "2"
    assert len(fake.requests) == 2


def _result(duration_s: float, timings: dict[str, tuple[float, float]], calls: int, cost: float) -> RunResult:
    return RunResult(
        status=RunStatus.SUCCEEDED,
        run_id="r1",
        pipeline="p",
        timings={n: StepTiming(StepStatus.SUCCEEDED, start, end, 1) for n, (start, end) in timings.items()},
        duration_s=duration_s,
        cost=cost,
        usage={"calls": calls},
    )


def test_the_line_sums_the_step_durations_and_names_the_speedup() -> None:
    run = _result(16.9, {"a": (0.0, 10.0), "b": (0.5, 12.3), "c": (12.3, 16.9), "d": (16.9, 16.9)}, 3, 0.0123)
    assert (
        wall_time_line(run)
        == "wall 16.9 s · sequential 26.4 s (1.6x from parallelism) · cost $0.012300 (3 model calls)"
    )


def test_the_line_for_one_call_and_for_steps_that_never_started() -> None:
    run = _result(2.0, {"a": (0.0, 2.0), "b": (None, None)}, 1, 0.0)  # type: ignore[dict-item]
    assert (
        wall_time_line(run) == "wall 2.0 s · sequential 2.0 s (1.0x from parallelism) · cost $0.000000 (1 model call)"
    )


@pytest.mark.parametrize(
    ("wall", "timings", "expected"),
    [
        (0.004, {"a": (0.0, 0.0001)}, "wall 4.0 ms · sequential 0.1 ms · "),  # instant: no ratio
        (0.05, {"a": (0.0, 0.04), "b": (0.0, 0.04)}, "wall 50.0 ms · sequential 80.0 ms · "),  # too short
        (1.0, {"a": (0.0, 0.2)}, "wall 1.0 s · sequential 0.2 s · "),  # time outside the steps, no overlap
    ],
)
def test_no_speedup_is_named_for_runs_too_short_or_without_overlap(
    wall: float, timings: dict[str, tuple[float, float]], expected: str
) -> None:
    line = wall_time_line(_result(wall, timings, 0, 0.0))
    assert line == expected + "cost $0.000000 (0 model calls)"
    assert "parallelism" not in line

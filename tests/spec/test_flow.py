"""``cycle:`` and ``switch:`` in pipeline files: loading, running, and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from legato.errors import SpecError
from legato.spec import load_pipeline

STEPS = """
async def draft(topic, notes=None, iteration=1):
    return f"{topic} v{iteration}" + ("" if notes is None else f" (after {notes['critique']['score']})")

async def critique(text, iteration):
    return {"score": iteration * 3, "kind": "bug" if "bugs" in text else "feature"}

async def echo(x):
    return f"echo {x}"

async def plan():
    return "planned"
"""

FLOW = """\
name: flow
inputs:
  topic: string
steps:
  refine:
    with: {topic: "${inputs.topic}"}
    cycle:
      max_iterations: 4
      until: "critique.score >= 6"
      steps:
        draft:
          uses: ./steps.py:draft
          with: {topic: "${inputs.topic}", notes: "${inputs.previous}", iteration: "${inputs.iteration}"}
        critique:
          uses: ./steps.py:critique
          with: {text: "${steps.draft}", iteration: "${inputs.iteration}"}
  route:
    switch: steps.refine.critique.kind
    cases: {bug: fix, feature: [plan]}
    otherwise: fallback
  fix:
    uses: ./steps.py:echo
    with: {x: "${steps.refine.draft}"}
  plan: {uses: ./steps.py:plan}
  fallback:
    uses: ./steps.py:echo
    with: {x: none}
outputs:
  text: ${steps.refine.draft}
  route: ${steps.route}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("topic", "case", "ran"), [("bugs", "bug", "fix"), ("tea", "feature", "plan")])
async def test_cycle_and_switch_run_from_yaml(tmp_path: Path, topic: str, case: str, ran: str) -> None:
    pipeline = load_pipeline(write(tmp_path, FLOW))
    result = await pipeline.run({"topic": topic})
    assert result.ok, result.error
    assert result.result == {"text": f"{topic} v2 (after 3)", "route": case}
    assert ran in result.outputs
    assert set(result.skipped) == {"fix", "plan", "fallback"} - {ran}
    assert result.skipped["fallback"] == f"switch 'route' chose case {case!r}"


def test_a_cycle_without_a_bound_is_rejected_where_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, FLOW.replace("      max_iterations: 4\n", ""))
    with pytest.raises(SpecError) as err:
        load_pipeline(path)
    [issue] = err.value.issues
    assert (issue.line, issue.column) == (8, 7)  # the cycle's mapping
    assert issue.message.startswith("steps.refine.cycle: a cycle needs max_iterations")


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        ("max_iterations: 4", "max_iterations: 0", (8, 23), "greater than or equal to 1"),
        ("max_iterations: 4", "max_iterations: 4\n      unitl: x", (9, 14), "unknown field 'unitl'"),
        ('until: "critique.score >= 6"', 'until: "critque.score >= 6"', (9, 14), "unknown name 'critque'"),
        ("${steps.draft}", "${steps.drat}", (16, 24), "unknown step 'drat' (did you mean 'draft'?)"),
        (
            "feature: [plan]",
            "feature: [plna]",
            (19, 32),
            "unknown step 'plna' (did you mean 'plan'?) in case 'feature'",
        ),
        ("cases: {bug: fix, feature: [plan]}", "cases: []", (19, 12), "a switch needs 'cases'"),
    ],
)
def test_cycle_and_switch_errors_are_located(
    tmp_path: Path, old: str, new: str, where: tuple[int, int], message: str
) -> None:
    assert old in FLOW
    with pytest.raises(SpecError) as err:
        load_pipeline(write(tmp_path, FLOW.replace(old, new)))
    [issue] = err.value.issues
    assert message in issue.message
    assert (issue.line, issue.column) == where


def test_inner_step_errors_name_their_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_pipeline(write(tmp_path, FLOW.replace("${steps.draft}", "${steps.drat}")))
    assert err.value.issues[0].message.startswith("steps.refine.cycle.steps.critique.with.text: ")

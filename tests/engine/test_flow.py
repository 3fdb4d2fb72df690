"""Cycles over a group of steps and switches, through the Python API."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from legato.engine import (
    Cycle,
    CycleLimitReached,
    Event,
    Pipeline,
    StepProgress,
    StepSkipped,
    Switch,
    SwitchNoMatch,
    summarize,
)
from legato.errors import SpecError


def writing(calls: Counter[str], good_at: int = 3) -> Pipeline:
    """draft -> critique -> revise; each iteration sees the previous one's outputs."""
    body = Pipeline("refine")

    @body.step
    async def draft(topic: str, previous: dict[str, Any] | None, iteration: int) -> str:
        calls[f"draft{iteration}"] += 1
        return f"{topic}#{iteration}" if previous is None else f"{previous['revise']}+"

    @body.step
    async def critique(draft: str, iteration: int) -> dict[str, Any]:
        calls[f"critique{iteration}"] += 1
        return {"score": iteration, "good": iteration >= good_at, "text": draft}

    @body.step
    async def revise(draft: str, critique: dict[str, Any]) -> str:
        return draft.upper() if not critique["good"] else draft

    return body


async def test_cycle_runs_until_the_condition_with_each_iteration_seeing_the_last() -> None:
    calls: Counter[str] = Counter()
    p = Pipeline("essay")
    p.cycle("refine", writing(calls), max_iterations=10, until="critique['good']")

    @p.step
    async def publish(refine: dict[str, Any]) -> str:
        return str(refine["revise"])

    result = await p.run({"topic": "tea"})
    assert result.ok, result.error
    assert result.outputs["refine"]["critique"]["score"] == 3
    # iteration 2 drafted from iteration 1's revision ("TEA#1"), iteration 3 from iteration 2's
    assert result.outputs["refine"]["draft"] == "TEA#1++"
    assert result.outputs["publish"] == "TEA#1++"
    assert calls == Counter({f"{s}{i}": 1 for s in ("draft", "critique") for i in (1, 2, 3)})


async def test_cycle_stops_at_its_bound_and_can_fail_there() -> None:
    calls: Counter[str] = Counter()
    p = Pipeline("essay")
    p.cycle("refine", writing(calls, good_at=99), max_iterations=2, until="critique['good']")
    result = await p.run({"topic": "tea"})
    assert result.ok
    assert result.outputs["refine"]["critique"]["score"] == 2
    assert calls["draft3"] == 0

    strict = Pipeline("strict")
    strict.cycle(
        "refine", writing(Counter(), good_at=99), max_iterations=2, until="critique['good']", on_max_iterations="fail"
    )
    failed = await strict.run({"topic": "tea"})
    assert failed.failed_step == "refine"
    assert isinstance(failed.exception.__cause__, CycleLimitReached)  # type: ignore[union-attr]
    assert "within 2 iterations" in (failed.error or "")


def test_a_cycle_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="never ends"):
        Cycle(writing(Counter()), until="critique['good']", max_iterations=0)
    with pytest.raises(TypeError):
        Pipeline("p").cycle("refine", writing(Counter()), until="critique['good']")  # type: ignore[call-arg]


def test_a_cycle_between_steps_is_rejected_with_a_hint() -> None:
    p = Pipeline("loop")

    @p.step
    async def a(b: int) -> int:
        return b

    @p.step
    async def b(a: int) -> int:
        return a

    with pytest.raises(SpecError) as err:
        p.compile()
    assert err.value.issues[0].path == "steps.a"
    assert "cycle: a -> b -> a" in err.value.issues[0].message
    assert "max_iterations" in err.value.issues[0].message


async def test_a_failing_inner_step_fails_the_cycle_naming_it() -> None:
    body = Pipeline("body")

    @body.step
    async def inner(iteration: int) -> int:
        if iteration == 2:
            raise ValueError("bad draft")
        return iteration

    p = Pipeline("outer")
    p.cycle("loop_it", body, max_iterations=5)
    result = await p.run()
    assert result.failed_step == "loop_it"
    assert "inner" in (result.error or "")
    assert "bad draft" in (result.error or "")


async def test_cycle_resumes_at_the_iteration_and_step_it_was_in() -> None:
    calls: Counter[str] = Counter()
    boom = {"at": "critique3"}
    body = Pipeline("refine")

    @body.step
    async def draft(iteration: int) -> int:
        calls[f"draft{iteration}"] += 1
        return iteration

    @body.step
    async def critique(draft: int, iteration: int) -> int:
        calls[f"critique{iteration}"] += 1
        if boom["at"] == f"critique{iteration}":
            raise RuntimeError("crash")
        return draft * 10

    p = Pipeline("outer")
    p.cycle("refine", body, max_iterations=4, until="critique >= 40")
    entries: list[Any] = []

    def journal(event: Event) -> None:
        if isinstance(event, StepProgress):
            entries.append(event.entry)

    first = await p.run(subscribers=[journal])
    assert first.failed_step == "refine"
    assert [(e["i"], e["s"]) for e in entries] == [
        (1, "draft"),
        (1, "critique"),
        (2, "draft"),
        (2, "critique"),
        (3, "draft"),
    ]
    boom["at"] = ""
    again = await p.run(run_id=first.run_id, journals={"refine": entries})
    assert again.ok, again.error
    assert again.outputs["refine"] == {"draft": 4, "critique": 40}
    # iterations 1 and 2 and iteration 3's draft were replayed from the journal
    assert calls == Counter(draft1=1, critique1=1, draft2=1, critique2=1, draft3=1, critique3=2, draft4=1, critique4=1)


def branches() -> tuple[Pipeline, Counter[str]]:
    ran: Counter[str] = Counter()
    p = Pipeline("triage")

    @p.step
    async def classify(text: str) -> str:
        return "bug" if "crash" in text else "feature" if "please" in text else "other"

    p.switch("route", "steps.classify", {"bug": "fix", "feature": ["plan", "estimate"]}, default="answer")

    for name in ("fix", "plan", "estimate", "answer"):

        async def act(classify: str, _name: str = name) -> str:
            ran[_name] += 1
            return f"{_name}:{classify}"

        p.add_step(act, name=name)

    @p.step(optional=["fix", "plan", "answer"])
    async def reply(fix: str | None, plan: str | None, answer: str | None) -> str:
        return str(fix or plan or answer)

    return p, ran


@pytest.mark.parametrize(
    ("text", "case", "runs"),
    [("it crashes", "bug", {"fix"}), ("please add", "feature", {"plan", "estimate"}), ("hi", "default", {"answer"})],
)
async def test_switch_runs_exactly_one_case(text: str, case: str, runs: set[str]) -> None:
    p, ran = branches()
    skipped: list[StepSkipped] = []
    result = await p.run(
        {"text": text}, subscribers=[lambda e: skipped.append(e) if isinstance(e, StepSkipped) else None]
    )
    assert result.ok, result.error
    assert result.outputs["route"] == case
    assert set(ran) == runs
    assert all(n == 1 for n in ran.values())
    others = {"fix", "plan", "estimate", "answer"} - runs
    assert set(result.skipped) == others
    assert {e.step for e in skipped} == others
    assert all(reason == f"switch 'route' chose case {case!r}" for reason in result.skipped.values())
    assert result.outputs["reply"].endswith(f":{result.outputs['classify']}")


async def test_switch_without_a_match_or_default_fails() -> None:
    p = Pipeline("p", failure_policy="continue")

    @p.step
    async def kind() -> int:
        return 7

    @p.step
    async def a() -> str:
        return "a"

    p.switch("route", "steps.kind", {1: "a"})
    result = await p.run()
    assert result.failed_step == "route"
    assert isinstance(result.exception.__cause__, SwitchNoMatch)  # type: ignore[union-attr]
    assert "value 7 matches no case ('1')" in (result.error or "")
    assert result.skipped == {"a": "upstream step 'route' failed"}


async def test_switch_matches_a_value_by_its_text() -> None:
    switch = Switch("s", {"1": "a", "yes": "b"}, default="c")
    assert await switch(1) == "1"
    assert await switch("yes") == "yes"
    assert await switch(["unhashable"]) == "default"
    with pytest.raises(ValueError, match="choose one"):
        Switch("s", {"default": "a"}, default="b")


def test_switch_cases_name_known_steps() -> None:
    p = Pipeline("p")

    @p.step
    async def a() -> str:
        return "a"

    p.switch("route", "inputs.kind", {"x": "a", "y": "nothere"})
    with pytest.raises(SpecError) as err:
        p.compile()
    assert [(i.path, i.message) for i in err.value.issues] == [
        ("steps.route.cases.y", "unknown step 'nothere' in case 'y'")
    ]


def test_plan_describes_cycles_and_switches() -> None:
    p, _ = branches()
    p.cycle("refine", writing(Counter()), max_iterations=3, until="critique['good']")
    steps = {s["name"]: s for s in summarize(p.compile()).steps}
    cycle = steps["refine"]["cycle"]
    assert cycle["max_iterations"] == 3
    assert cycle["until"] == "critique['good']"
    assert [s["name"] for s in cycle["steps"]] == ["draft", "critique", "revise"]
    assert ["draft", "critique"] in cycle["edges"]
    assert steps["route"]["switch"]["cases"] == {
        "bug": ["fix"],
        "feature": ["plan", "estimate"],
        "default": ["answer"],
    }
    assert steps["plan"]["case_of"] == {"switch": "route", "cases": ["feature"]}

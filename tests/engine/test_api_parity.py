"""The Python API behaves as the YAML loader: conditions see inputs' defaults, and a
parameter that looks like a misspelt step name is an error with a suggestion."""

from __future__ import annotations

import pytest

from legato.engine import Pipeline
from legato.errors import SpecError


@pytest.mark.parametrize("condition", ["inputs.flag", "flag"])
async def test_a_condition_sees_a_parameter_default(condition: str) -> None:
    p = Pipeline("defaults")

    @p.step
    async def first(flag: bool = True) -> str:
        return "a"

    @p.step(when=condition)
    async def second(first: str) -> str:
        return first + "b"

    result = await p.run()
    assert result.ok, result.error
    assert result.outputs["second"] == "ab"
    off = await p.run(flag=False)
    assert off.ok, off.error
    assert off.outputs.get("second") is None


def test_a_misspelt_step_name_as_parameter_is_an_error_with_a_suggestion() -> None:
    p = Pipeline("typo")

    @p.step
    async def sentiment(text: str) -> str:
        return "positive"

    @p.step
    async def report(sentimnt: str) -> str:
        return sentimnt

    issues = p.validate()
    assert [i.path for i in issues] == ["steps.report.with.sentimnt"]
    assert "did you mean 'sentiment'?" in issues[0].message
    with pytest.raises(SpecError, match="did you mean 'sentiment'"):
        p.compile()


def test_a_parameter_with_a_default_or_a_declared_input_is_not_a_typo() -> None:
    p = Pipeline("fine")

    @p.step
    async def sentiment(text: str) -> str:
        return "positive"

    @p.step
    async def report(sentiment: str, sentimnt: str = "x") -> str:
        return sentiment + sentimnt

    assert p.validate() == []
    declared = Pipeline("declared", inputs={"text": str, "sentimnt": str})

    @declared.step
    async def sentiment2(text: str) -> str:
        return "positive"

    @declared.step
    async def report2(sentimnt: str) -> str:
        return sentimnt

    assert declared.validate() == []

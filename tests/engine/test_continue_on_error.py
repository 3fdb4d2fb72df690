"""continue_on_error on a step and map_errors="collect" on a map step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from legato.engine import MapItemError, Pipeline, RunStatus, StepFailed, StepStatus
from legato.errors import SpecError
from legato.retry import RetryPolicy
from legato.spec import load_pipeline


class Boom(Exception):
    pass


def tolerant(default: Any = ..., *, policy: str = "fail_fast") -> Pipeline:
    p = Pipeline("tolerant", failure_policy=policy)  # type: ignore[arg-type]
    options: dict[str, Any] = {"continue_on_error": True}
    if default is not ...:
        options["default"] = default

    @p.step(**options)
    async def enrich(x: int) -> int:
        raise Boom(f"enrichment service down for {x}")

    @p.step
    async def report(x: int, enrich: int) -> str:
        return f"{x}:{enrich}"

    @p.step
    async def independent(x: int) -> int:
        return x * 2

    return p


async def test_failure_is_recorded_and_dependents_get_the_default() -> None:
    events: list[Any] = []
    res = await tolerant(default=0).run({"x": 7}, subscribers=[events.append])
    assert res.status is RunStatus.SUCCEEDED
    assert res.outputs["report"] == "7:0"
    assert res.outputs["independent"] == 14
    assert "enrich" not in res.outputs
    assert res.step_status["enrich"] is StepStatus.FAILED
    assert res.errors == {"enrich": "Boom: enrichment service down for 7"}
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert [(e.step, e.error_type) for e in failed] == [("enrich", "Boom")]
    assert res.to_dict()["step_errors"] == {"enrich": "Boom: enrichment service down for 7"}


async def test_none_is_a_valid_default() -> None:
    res = await tolerant(default=None).run({"x": 1})
    assert res.ok
    assert res.outputs["report"] == "1:None"


async def test_without_a_default_dependents_are_skipped_with_the_reason() -> None:
    res = await tolerant().run({"x": 1})
    assert res.status is RunStatus.SUCCEEDED
    assert res.step_status["report"] is StepStatus.SKIPPED
    assert res.skipped["report"] == "upstream step 'enrich' failed and declares no default"
    assert res.outputs["independent"] == 2


async def test_an_optional_parameter_receives_none_without_a_default() -> None:
    p = Pipeline("opt")

    @p.step(continue_on_error=True)
    async def a() -> int:
        raise Boom("a")

    @p.step(optional=["a"])
    async def b(a: int | None) -> str:
        return repr(a)

    res = await p.run()
    assert res.ok
    assert res.outputs["b"] == "None"


async def test_retries_run_before_the_failure_is_tolerated() -> None:
    calls = 0
    p = Pipeline("retried")

    async def no_sleep(_: float) -> None:
        return None

    p.sleep = no_sleep

    @p.step(continue_on_error=True, default="fallback", retries=RetryPolicy(max_attempts=3, retry_on=lambda e: True))
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise Boom("still down")

    @p.step
    async def use(flaky: str) -> str:
        return flaky.upper()

    res = await p.run()
    assert calls == 3
    assert res.ok
    assert res.outputs["use"] == "FALLBACK"
    assert res.timings["flaky"].attempts == 3


async def test_other_failures_still_fail_the_run() -> None:
    p = tolerant(default=0)

    @p.step
    async def critical(report: str) -> None:
        raise Boom("critical")

    res = await p.run({"x": 1})
    assert res.status is RunStatus.FAILED
    assert res.failed_step == "critical"
    assert res.errors == {"enrich": "Boom: enrichment service down for 1"}


async def test_a_sync_step_with_a_timeout_is_tolerated_too() -> None:
    p = Pipeline("sync")

    @p.step(continue_on_error=True, default=[], timeout=5)
    def lookup() -> list[int]:
        raise KeyError("missing")

    @p.step
    async def total(lookup: list[int]) -> int:
        return sum(lookup)

    res = await p.run()
    assert res.ok
    assert res.outputs["total"] == 0
    assert res.errors["lookup"] == "KeyError: 'missing'"


def test_default_without_continue_on_error_is_refused() -> None:
    p = Pipeline("bad")
    with pytest.raises(ValueError, match=r"default .* needs continue_on_error"):
        p.add_step(lambda: 1, name="a", default=0)
    with pytest.raises(ValueError, match="map_errors 'collect' needs a map step"):
        p.add_step(lambda: 1, name="b", map_errors="collect")
    with pytest.raises(ValueError, match="map_errors must be 'fail' or 'collect'"):
        p.add_step(lambda items: 1, name="c", map="items", map_errors="ignore")  # type: ignore[arg-type]


def mapped(map_errors: str, *, retries: int | None = None) -> Pipeline:
    p = Pipeline("mapped")

    @p.step(map="n", map_errors=map_errors, max_concurrency=2, retries=retries)
    async def invert(n: int) -> float:
        return 1 / n

    return p


async def test_map_errors_collect_returns_values_and_typed_error_records() -> None:
    res = await mapped("collect").run({"n": [1, 0, 4, 0]})
    assert res.ok
    assert res.outputs["invert"] == [
        1.0,
        MapItemError(1, "ZeroDivisionError", "division by zero"),
        0.25,
        MapItemError(3, "ZeroDivisionError", "division by zero"),
    ]
    assert res.outputs["invert"][1].as_dict() == {
        "index": 1,
        "error_type": "ZeroDivisionError",
        "message": "division by zero",
    }


async def test_map_errors_fail_is_the_default() -> None:
    res = await mapped("fail").run({"n": [1, 0]})
    assert res.status is RunStatus.FAILED
    assert res.failed_step == "invert"


async def test_collected_items_are_retried_first() -> None:
    seen: list[int] = []
    p = Pipeline("retry-items")

    async def no_sleep(_: float) -> None:
        return None

    p.sleep = no_sleep

    @p.step(map="n", map_errors="collect", retries=RetryPolicy(max_attempts=2, retry_on=lambda e: True))
    async def once(n: int) -> int:
        seen.append(n)
        if n < 0:
            raise ValueError(f"negative: {n}")
        return n

    res = await p.run({"n": [1, -1]})
    assert res.ok
    assert res.outputs["once"] == [1, MapItemError(1, "ValueError", "negative: -1")]
    assert sorted(seen) == [-1, -1, 1]


YAML = """
name: tolerant
inputs:
  items: {type: list}
steps:
  parse:
    uses: ./steps.py:parse
    map: item
    map_errors: collect
    with: {item: "${inputs.items}"}
  enrich:
    uses: ./steps.py:enrich
    continue_on_error: true
    default: {score: 0}
    with: {rows: "${steps.parse}"}
  summary:
    uses: ./steps.py:summary
    with: {rows: "${steps.parse}", extra: "${steps.enrich}"}
outputs:
  summary: ${steps.summary}
  failures: ${steps.parse[1].error_type}
"""

STEPS = """
def parse(item):
    return int(item)

def enrich(rows):
    raise ConnectionError("enrichment service unreachable")

def summary(rows, extra):
    good = [r for r in rows if isinstance(r, int)]
    return {"good": good, "bad": len(rows) - len(good), "score": extra["score"]}
"""


async def test_yaml_continue_on_error_default_and_map_errors(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    res = await load_pipeline(path).run({"items": ["1", "x", "3"]})
    assert res.status is RunStatus.SUCCEEDED, res.error
    assert res.result == {"summary": {"good": [1, 3], "bad": 1, "score": 0}, "failures": "ValueError"}
    assert res.errors == {"enrich": "ConnectionError: enrichment service unreachable"}


def test_yaml_default_without_continue_on_error_is_located(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(YAML.replace("    continue_on_error: true\n", ""))
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    issue = info.value.issues[0]
    assert "needs continue_on_error" in issue.message
    assert issue.line == 13

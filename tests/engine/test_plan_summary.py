"""Static plan analysis (`legato plan`) and import weight."""

from __future__ import annotations

import json
import subprocess
import sys

from legato.engine import Pipeline, summarize


def build(estimates: dict[str, float] | None) -> Pipeline:
    p = Pipeline("shape")
    est = estimates or {}

    async def src(x: int) -> int:
        return x

    async def left(src: int) -> int:
        return src

    async def right(src: int) -> int:
        return src

    async def tail(left: int) -> int:
        return left

    async def join(tail: int, right: int) -> int:
        return tail + right

    for fn in (src, left, right, tail, join):
        p.add_step(fn, estimate_ms=est.get(fn.__name__))
    return p


def test_summary_without_estimates_counts_steps() -> None:
    summary = summarize(build(None).compile())
    assert summary.levels == [["src"], ["left", "right"], ["tail"], ["join"]]
    assert summary.critical_path == ["src", "left", "tail", "join"]
    assert summary.max_parallelism == 2
    assert summary.estimated_parallel_ms is None
    assert summary.estimated_sequential_ms is None
    assert ("left", "tail") in summary.edges


def test_summary_with_estimates_follows_the_slowest_branch() -> None:
    summary = summarize(build({"src": 10, "left": 5, "right": 100, "tail": 5, "join": 1}).compile())
    assert summary.critical_path == ["src", "right", "join"]
    assert summary.estimated_parallel_ms == 111
    assert summary.estimated_sequential_ms == 121
    # right (10..110) overlaps left (10..15) and then tail (15..20)
    assert summary.max_parallelism == 2
    data = summary.as_dict()
    assert data["steps"][0] == {"name": "src", "level": 0, "depends_on": [], "estimate_ms": 10}


def test_partial_estimates_are_reported() -> None:
    summary = summarize(build({"right": 50}).compile())
    assert summary.estimated_parallel_ms == 50
    assert summary.unestimated == ["src", "left", "tail", "join"]


def test_importing_legato_and_its_cli_stays_light() -> None:
    heavy = ["pydantic", "anyio", "torch", "legato.engine", "legato.spec", "simpleeval", "fastapi", "ray"]
    code = (
        "import sys, json, legato; first = [m for m in HEAVY if m in sys.modules]; "
        "import legato.cli; second = [m for m in HEAVY if m in sys.modules]; "
        "print(json.dumps([first, second]))"
    ).replace("HEAVY", repr(heavy))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, second = json.loads(out)
    assert first == []
    assert [m for m in second if m in ("torch", "legato.engine", "legato.spec", "fastapi", "ray")] == []

"""Property test: on random graphs the scheduler computes what a sequential
evaluation in topological order computes, runs each step once and only after its
dependencies, and skips and fails exactly the steps it should."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.engine import Event, Pipeline, RunStatus, StepFinished, StepStarted, StepStatus


@st.composite
def graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 8))
    nodes = []
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else []
        nodes.append(
            {
                "deps": deps,
                "skip": draw(st.booleans()) and draw(st.booleans()),  # ~25% have a false condition
                "fail": draw(st.integers(0, 9)) == 0,
                "optional": draw(st.booleans()),
                "sleep": draw(st.booleans()),
            }
        )
    return nodes


def expected(nodes: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, str]]:
    """Reference: evaluate in index order (a topological order) under `continue`."""
    outputs: dict[str, int] = {}
    status: dict[str, str] = {}
    for i, node in enumerate(nodes):
        name = f"s{i}"
        deps = [f"s{d}" for d in node["deps"]]
        if (
            any(status[d] == "failed" for d in deps)
            or (any(status[d] == "skipped" for d in deps) and not node["optional"])
            or node["skip"]
        ):
            status[name] = "skipped"
        elif node["fail"]:
            status[name] = "failed"
        else:
            status[name] = "succeeded"
            outputs[name] = i + sum(outputs.get(d, 0) for d in deps)
    return outputs, status


def build(nodes: list[dict[str, Any]]) -> Pipeline:
    p = Pipeline("random", failure_policy="continue")
    for i, node in enumerate(nodes):
        deps = [f"s{d}" for d in node["deps"]]

        def make(i: int, node: dict[str, Any], deps: list[str]) -> Any:
            async def fn(**kwargs: Any) -> int:
                if node["sleep"]:
                    await anyio.sleep(0)
                if node["fail"]:
                    raise RuntimeError(f"s{i} fails")
                return i + sum(v or 0 for v in kwargs.values())

            return fn

        p.add_step(
            make(i, node, deps),
            name=f"s{i}",
            args={d: "${steps.%s}" % d for d in deps},  # noqa: UP031
            when="false" if node["skip"] else None,
            optional=deps if node["optional"] else (),
        )
    return p


@settings(max_examples=60, deadline=None)
@given(graphs())
def test_random_graphs_match_sequential_evaluation(nodes: list[dict[str, Any]]) -> None:
    events: list[Event] = []
    result = build(nodes).run_sync(subscribers=[events.append])
    outputs, status = expected(nodes)
    assert result.outputs == outputs
    assert {k: str(v) for k, v in result.step_status.items()} == status
    assert result.status is (RunStatus.FAILED if "failed" in status.values() else RunStatus.SUCCEEDED)
    started = [e.step for e in events if isinstance(e, StepStarted)]
    assert len(started) == len(set(started))  # each step at most once
    order = {e.step: n for n, e in enumerate(events) if isinstance(e, StepFinished)}
    begin = {e.step: n for n, e in enumerate(events) if isinstance(e, StepStarted)}
    for i, node in enumerate(nodes):
        for d in node["deps"]:
            if f"s{i}" in begin and f"s{d}" in order:
                assert order[f"s{d}"] < begin[f"s{i}"]
    assert all(status[s] != "skipped" or result.step_status[s] is StepStatus.SKIPPED for s in status)

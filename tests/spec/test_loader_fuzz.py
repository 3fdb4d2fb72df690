"""Fuzz the loader: any YAML document either loads or raises SpecError, never
anything else (no crash, no traceback for a user's mistake)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.errors import SpecError, SpecIssue
from legato.spec import load_pipeline

STEPS = "async def upper(text: str) -> str:\n    return text.upper()\n\n\ndef pair(a, b=None):\n    return [a, b]\n"

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.sampled_from(
        [
            "", "x", "${inputs.text}", "${steps.a}", "${steps.b.x}", "${", "${}", "$${x}", "./steps.py:upper",
            "./steps.py:pair", "steps.py:upper", "os:system", "a > 1", "__import__('os')", "string", "list",
            "${loop.previous}", "output == 1", "text", "a", "b", "local", "ray", "fail_fast", "continue",
        ]
    ),
)  # fmt: skip
KEYS = st.sampled_from(
    [
        "uses", "with", "when", "map", "max_concurrency", "timeout", "retries", "optional", "depends_on", "cache",
        "version", "resources", "estimate_ms", "loop", "kind", "description", "until", "max_iterations", "text",
        "a", "b", "type", "default", "llm", "task", "bogus",
    ]
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=8,
)


CLEAN_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "when": st.sampled_from(["inputs.text == 'hi'", "steps.a == 'X'", "${steps.b}", "true", "false"]),
        "optional": st.lists(st.sampled_from(["a", "b", "text"]), max_size=2, unique=True),
        "retries": st.just({"max_attempts": 2, "base_delay": 0}),
        "timeout": st.just(5),
        "depends_on": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
        "cache": st.booleans(),
        "estimate_ms": st.just(1),
    },
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "when": st.sampled_from(["a > 1", "steps.a == 'X'", "inputs.text", "${steps.b}", "true", "x ==", "_x"]),
        "map": st.sampled_from(["text", "a", "b", "zzz"]),
        "optional": st.lists(st.sampled_from(["a", "b", "text"]), max_size=2),
        "retries": st.one_of(st.integers(-1, 3), st.just({"max_attempts": 2, "base_delay": 0})),
        "timeout": st.sampled_from([0.5, 0, -1, "x"]),
        "depends_on": st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=2),
        "loop": st.sampled_from([{"until": "output", "max_iterations": 2}, {"until": "(", "max_iterations": 1}]),
        "cache": st.booleans(),
        "estimate_ms": st.sampled_from([1, -1]),
    },
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    clean = draw(st.booleans())
    pool = ["a", "b", "c"] if clean else ["a", "b", "c", "my-step", "steps"]
    step_names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    steps = {}
    for name in step_names:
        uses = ["./steps.py:upper", "./steps.py:pair"] + ([] if clean else ["x:y"])
        step: dict[str, Any] = {"uses": draw(st.sampled_from(uses))}
        refs = st.sampled_from(["${inputs.text}", "${steps.a}", "${steps.b}", "${steps.c.x}", "${len(steps.a)}", "t"])
        step["with"] = draw(st.dictionaries(st.sampled_from(["text", "a", "b"]), refs, max_size=2))
        step.update(draw(CLEAN_OPTIONS if clean else OPTIONS))
        if not clean and draw(st.integers(0, 2)) == 0:  # now and then, anything at all
            step.update(draw(st.dictionaries(KEYS, VALUES, max_size=3)))
        steps[name] = step
    doc: dict[str, Any] = {"name": "p" if clean else draw(st.sampled_from(["p", "", 3])), "steps": steps}
    if clean:
        doc["inputs"] = {"text": {"type": "string", "default": "hi"}}
        doc["outputs"] = draw(st.dictionaries(st.sampled_from(["o", "p"]), st.sampled_from(["${steps.a}", "x"])))
        return doc
    doc["inputs"] = draw(st.dictionaries(st.sampled_from(["text", "a", "b"]), VALUES, max_size=2))
    if draw(st.booleans()):
        doc["outputs"] = draw(st.dictionaries(st.sampled_from(["o", "p"]), VALUES, max_size=2))
    if draw(st.booleans()):
        doc[draw(KEYS)] = draw(VALUES)
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents())
def test_fuzzed_specs_load_or_raise_spec_error(tmp_path: Path, doc: Any) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    issues: tuple[SpecIssue, ...] = ()
    try:
        pipeline = load_pipeline(path)
    except SpecError as exc:
        issues = exc.issues
    if issues:
        assert all(issue.file == str(path) for issue in issues)
        return
    # A pipeline that loads also runs to a result (a step may fail; nothing raises).
    if "text" in pipeline.inputs:
        assert str(pipeline.run_sync(text="hi").status) in {"succeeded", "failed"}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_loads_or_raises_spec_error(text: str) -> None:
    try:
        load_pipeline(text + "\n")
    except SpecError as exc:
        error = exc
    else:
        return
    assert error.issues  # it did not load, and the error says why

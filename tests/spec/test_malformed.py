"""Every malformed spec is rejected with a clear message at file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from legato.errors import SpecError
from legato.spec import load_pipeline

STEPS = """
async def upper(text: str) -> str:
    return text.upper()


def count(text: str) -> int:
    return len(text)


def two(a: int, b: int) -> int:
    return a + b


NOT_CALLABLE = 3
"""

# (case id, YAML, expected "line:column: message" of the first issue)
CASES: list[tuple[str, str, str]] = [
    (
        "cycle",
        """
        name: t
        steps:
          a: {uses: ./steps.py:upper, with: {text: "${steps.b}"}}
          b: {uses: ./steps.py:upper, with: {text: "${steps.a}"}}
        """,
        "3:6: steps.a: cycle: a -> b -> a",
    ),
    (
        "unknown step reference suggests the closest name",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, with: {text: "${inputs.text}"}}
          count:
            uses: ./steps.py:count
            with:
              text: ${steps.uper}
        """,
        "8:13: steps.count.with.text: unknown step 'uper' (did you mean 'upper'?) in 'steps.uper'",
    ),
    (
        "unknown input reference",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, with: {text: "${inputs.txt}"}}
        """,
        "4:48: steps.upper.with.text: unknown input 'txt' (did you mean 'text'?)",
    ),
    (
        "parameter bound to nothing",
        """
        name: t
        steps:
          add: {uses: ./steps.py:two, with: {a: 1}}
        """,
        "3:37: steps.add.with.b: parameter 'b' is not set: map it under 'with:' or declare an input or step named 'b'",
    ),
    (
        "duplicate step name",
        """
        name: t
        steps:
          a: {uses: ./steps.py:upper}
          a: {uses: ./steps.py:upper}
        """,
        "4:3: invalid YAML: found duplicate key 'a'",
    ),
    (
        "condition that does not parse",
        """
        name: t
        inputs: {text: string}
        steps:
          upper:
            uses: ./steps.py:upper
            when: "inputs.text =="
        """,
        "6:11: steps.upper.when: invalid syntax (incomplete expression) in expression 'inputs.text =='",
    ),
    (
        "dunder access in a condition",
        """
        name: t
        inputs: {text: string}
        steps:
          upper:
            uses: ./steps.py:upper
            when: "inputs.__class__"
        """,
        "6:11: steps.upper.when: access to private name '__class__' is not allowed in expression 'inputs.__class__'",
    ),
    (
        "import in a condition",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, when: "__import__('os')"}
        """,
        "4:41: steps.upper.when: unknown function '__import__'",
    ),
    (
        "function outside the language",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, when: "eval('1')"}
        """,
        "4:41: steps.upper.when: unknown function 'eval' in expression",
    ),
    (
        "misspelt step field",
        """
        name: t
        steps:
          upper:
            uses: ./steps.py:upper
            wen: "true"
        """,
        "5:10: steps.upper.wen: unknown field 'wen' (did you mean 'when'?)",
    ),
    (
        "misspelt top-level field",
        """
        name: t
        stepz: {}
        steps:
          upper: {uses: ./steps.py:upper}
        """,
        "2:8: stepz: unknown field 'stepz' (did you mean 'steps'?)",
    ),
    (
        "function missing from the module",
        """
        name: t
        steps:
          upper: {uses: ./steps.py:uper}
        """,
        "3:17: steps.upper.uses: './steps.py' has no attribute 'uper' (did you mean 'upper'?)",
    ),
    (
        "missing step file",
        """
        name: t
        steps:
          upper: {uses: ./nope.py:upper}
        """,
        "3:17: steps.upper.uses: no such file: nope.py",
    ),
    (
        "missing module",
        """
        name: t
        steps:
          upper: {uses: nosuchpkg.mod:fn}
        """,
        "3:17: steps.upper.uses: cannot import module 'nosuchpkg.mod': no module named 'nosuchpkg' (looked in",
    ),
    (
        "uses without a function",
        """
        name: t
        steps:
          upper: {uses: ./steps.py}
        """,
        "3:17: steps.upper.uses: uses: './steps.py' must look like 'package.module:function'",
    ),
    (
        "not callable",
        """
        name: t
        steps:
          upper: {uses: ./steps.py:NOT_CALLABLE}
        """,
        "3:17: steps.upper.uses: './steps.py:NOT_CALLABLE' is not callable (int)",
    ),
    (
        "YAML syntax error",
        """
        name: t
        steps:
          upper: {uses: ./steps.py:upper
        """,
        "4:1: invalid YAML: while parsing a flow mapping: expected ',' or '}'",
    ),
    ("missing name", "steps:\n  upper: {uses: ./steps.py:upper}\n", "1:1: missing required field 'name'"),
    ("no steps", "name: t\nsteps: {}\n", "2:8: steps: a pipeline needs at least one step"),
    (
        "steps as a list",
        "name: t\nsteps:\n  - uses: ./steps.py:upper\n",
        "3:3: steps: steps must be a mapping of step name to step",
    ),
    (
        "unknown step kind",
        """
        name: t
        steps:
          upper: {kind: lmm}
        """,
        "3:17: steps.upper.kind: unknown step kind 'lmm' (did you mean 'llm'?)",
    ),
    (
        "step without uses or kind",
        """
        name: t
        steps:
          upper: {with: {a: 1}}
        """,
        "3:10: steps.upper: a step needs 'uses: module:function' or a kind",
    ),
    (
        "unknown input type",
        """
        name: t
        inputs: {text: strng}
        steps:
          upper: {uses: ./steps.py:upper}
        """,
        "2:16: inputs.text.type: Input should be 'string', 'integer', 'number', 'boolean', 'list', 'array', "
        "'object', 'mapping' or 'any', got 'strng'",
    ),
    (
        "negative timeout",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, timeout: -1}
        """,
        "4:44: steps.upper.timeout: Input should be greater than 0",
    ),
    (
        "map over something that is not a parameter",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, map: texts}
        """,
        "4:40: steps.upper.map: map='texts' is not a parameter of the step",
    ),
    (
        "with: names a parameter the function lacks",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, with: {txt: "${inputs.text}"}}
        """,
        "4:41: steps.upper.with: upper() has no parameter 'txt' (its parameters: text)",
    ),
    (
        "unclosed reference",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, with: {text: "${inputs.text"}}
        """,
        "4:41: steps.upper.with: unclosed '${' in expression '${inputs.text'",
    ),
    (
        "unknown executor",
        """
        name: t
        executor: rey
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper}
        """,
        "2:11: executor: unknown executor 'rey' (did you mean 'ray'?)",
    ),
    (
        "unbounded loop",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, loop: {until: "output == 'x'"}}
        """,
        "4:41: steps.upper.loop: missing required field 'max_iterations'",
    ),
    (
        "unknown failure policy",
        """
        name: t
        failure_policy: sometimes
        steps:
          upper: {uses: ./steps.py:upper}
        """,
        "2:17: failure_policy: Input should be 'fail_fast' or 'continue', got 'sometimes'",
    ),
    (
        "output referencing an unknown step",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper}
        outputs:
          x: ${steps.uppr}
        """,
        "6:6: outputs.x: unknown step 'uppr' (did you mean 'upper'?)",
    ),
    (
        "depends_on an unknown step",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, depends_on: [nothing]}
        """,
        "4:47: steps.upper.depends_on: unknown step 'nothing'",
    ),
    (
        "invalid step name",
        """
        name: t
        inputs: {text: string}
        steps:
          my-step: {uses: ./steps.py:upper}
        """,
        "4:12: steps.my-step: invalid step name 'my-step'",
    ),
    (
        "step reading its own output",
        """
        name: t
        steps:
          upper: {uses: ./steps.py:upper, with: {text: "${steps.upper}"}}
        """,
        "3:48: steps.upper.with.text: step 'upper' references its own output",
    ),
    (
        "loop variable outside a loop",
        """
        name: t
        steps:
          upper: {uses: ./steps.py:upper, with: {text: "${loop.previous}"}}
        """,
        "3:48: steps.upper.with.text: unknown name 'loop'",
    ),
    (
        "retries out of range",
        """
        name: t
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper, retries: -2}
        """,
        "4:44: steps.upper.retries: retries must be between 0 and 99",
    ),
]


@pytest.mark.parametrize(("yaml_text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_is_rejected_with_location(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(yaml_text).lstrip("\n"))
    with pytest.raises(SpecError) as info:
        load_pipeline(spec)
    first = str(info.value.issues[0])
    assert first.startswith(f"{spec}:"), first
    assert expected in first, first


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    spec = tmp_path / "p.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            name: t
            inputs: {text: strin}
            failure_policy: never
            steps:
              a: {uses: ./steps.py:upper, timeout: 0}
            """
        )
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(spec)
    assert [i.path for i in info.value.issues] == ["inputs.text.type", "steps.a.timeout", "failure_policy"]

    spec.write_text(
        textwrap.dedent(
            """
            name: t
            inputs: {text: string}
            steps:
              a: {uses: ./steps.py:nope}
              b: {uses: ./steps.py:upper, map: items}
            """
        )
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(spec)
    assert [i.path for i in info.value.issues] == ["steps.a.uses", "steps.b.map"]

    spec.write_text(
        textwrap.dedent(
            """
            name: t
            inputs: {text: string}
            steps:
              a: {uses: ./steps.py:upper, with: {text: "${inputs.txt}"}}
              b: {uses: ./steps.py:upper, with: {text: "${steps.d}"}}
            """
        )
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(spec)
    assert [i.path for i in info.value.issues] == ["steps.a.with.text", "steps.b.with.text"]
    assert "unknown input 'txt'" in info.value.issues[0].message
    assert "unknown step 'd'" in info.value.issues[1].message


def test_graph_problems_are_listed_next_to_a_broken_step(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    spec = tmp_path / "p.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            name: t
            inputs: {text: string}
            steps:
              upper: {uses: ./steps.py:upper, when: "inputs.__class__"}
              count: {uses: ./steps.py:count, with: {text: "${steps.uper}"}}
            """
        ).lstrip("\n")
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(spec)
    assert [(i.line, i.path) for i in info.value.issues] == [(4, "steps.upper.when"), (5, "steps.count.with.text")]

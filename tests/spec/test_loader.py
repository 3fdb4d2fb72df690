"""YAML pipelines compile to the same graph as Python ones and behave the same."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from legato.engine import Event, RunStatus, StepFinished, StepStatus, current_step
from legato.errors import InputError, SpecError
from legato.spec import BuildContext, PipelineSpec, StepBuild, load_pipeline, register_step_kind

STEPS = """
from legato.engine import current_step

async def upper(text: str) -> str:
    return text.upper()

def length(text: str) -> int:
    return len(text)

async def shout(text: str, times: int = 1) -> str:
    return "!".join([text] * times)

async def halve(previous, start: int) -> int:
    return (previous if previous is not None else start) // 2

async def describe(kind: str, value=None) -> str:
    return f"{kind}:{value}"

calls = []

async def flaky(text: str) -> str:
    calls.append(current_step().attempt)
    if len(calls) < 2:
        raise ConnectionError("flap")
    return text
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


async def test_yaml_pipeline_with_references_conditions_map_and_outputs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: demo
        inputs:
          text: {type: string}
          words: {type: list, default: [a, bb, ccc]}
          loud: {type: boolean, default: false}
        steps:
          up:
            uses: ./steps.py:upper
            with: {text: "${inputs.text}"}
          sizes:
            uses: ./steps.py:length
            map: text
            max_concurrency: 2
            with: {text: "${inputs.words}"}
          loud:
            uses: ./steps.py:shout
            when: inputs.loud
            with: {text: "${steps.up}", times: 2}
          summary:
            uses: ./steps.py:describe
            with:
              kind: "${steps.up}/${len(steps.sizes)}"
              value: ${steps.loud}
            optional: [value]
        outputs:
          summary: ${steps.summary}
          biggest: ${max(steps.sizes)}
        """,
    )
    pipeline = load_pipeline(path)
    assert isinstance(pipeline.spec, PipelineSpec)
    events: list[Event] = []
    result = await pipeline.run(text="hi", subscribers=[events.append])
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs["sizes"] == [1, 2, 3]
    assert result.result == {"summary": "HI/3:None", "biggest": 3}
    assert result.step_status["loud"] is StepStatus.SKIPPED
    result = await pipeline.run(text="hi", loud=True, words=["x"])
    assert result.result == {"summary": "HI/1:HI!HI", "biggest": 1}


async def test_declared_inputs_are_typed_and_defaulted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: typed
        inputs:
          text: string
          times: {type: integer, default: 2}
        steps:
          s: {uses: ./steps.py:shout, with: {text: "${inputs.text}", times: "${inputs.times}"}}
        """,
    )
    pipeline = load_pipeline(path)
    assert (await pipeline.run(text="a")).outputs == {"s": "a!a"}
    with pytest.raises(InputError, match="input 'times' must be integer, got str"):
        await pipeline.run(text="a", times="3")
    with pytest.raises(InputError, match="missing input 'text'"):
        await pipeline.run()


async def test_unmapped_parameters_bind_by_name_to_inputs_and_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: by-name
        inputs: {text: string}
        steps:
          upper: {uses: ./steps.py:upper}
          length:
            uses: ./steps.py:length
            with: {text: "${steps.upper}"}
        """,
    )
    result = await load_pipeline(path).run(text="abc")
    assert result.outputs == {"upper": "ABC", "length": 3}


async def test_yaml_loop_and_retries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: loops
        inputs: {start: integer}
        steps:
          halve:
            uses: ./steps.py:halve
            with: {previous: "${loop.previous}", start: "${inputs.start}"}
            loop: {until: "output <= 3", max_iterations: 10}
          again:
            uses: ./steps.py:flaky
            with: {text: "${str(steps.halve)}"}
            retries: {max_attempts: 3, base_delay: 0, retry_on: any}
        """,
    )
    events: list[Event] = []
    result = await load_pipeline(path).run(start=50, subscribers=[events.append])
    assert result.outputs == {"halve": 3, "again": "3"}
    assert result.timings["again"].attempts == 2
    finished = [e for e in events if isinstance(e, StepFinished) and e.step == "again"]
    assert finished[0].attempt == 2


def test_pipeline_from_text_and_from_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mysteps_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = "name: t\ninputs: {x: integer}\nsteps:\n  d: {uses: mysteps_pkg:double}\n"
    result = load_pipeline(text).run_sync(x=4)
    assert result.outputs == {"d": 8}


def test_loads_pipeline_reads_text_that_no_guess_would_take_for_text(tmp_path: Path) -> None:
    from legato.spec import loads_pipeline

    (tmp_path / "double.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    one_line = "{name: t, inputs: {x: integer}, steps: {d: {uses: ./double.py:double}}}"
    pipeline = loads_pipeline("--- " + one_line, base_dir=tmp_path)  # no newline, not starting with "{"
    assert pipeline.source is None
    assert pipeline.run_sync(x=4).outputs == {"d": 8}
    with pytest.raises(SpecError) as caught:
        loads_pipeline("name: t\nsteps: {d: {uses: nowhere:nothing}}\n")
    assert caught.value.issues[0].file == "<string>"


async def test_custom_step_kind_factory_contract(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
        seen["ctx"] = ctx
        if "template" not in spec:
            raise SpecError([ctx.issue("missing 'template'")])
        template = spec["template"]
        seen["refs"] = ctx.references(template)

        async def render(text: str) -> str:
            step = current_step()
            assert step is not None
            return f"{step.step}: {text}"

        return StepBuild(fn=render, args={"text": template}, description="renders a template")

    register_step_kind("echo", build)
    path = write(
        tmp_path,
        """
        name: kinds
        inputs: {name: string}
        steps:
          up: {uses: ./steps.py:upper, with: {text: "${inputs.name}"}}
          greet:
            kind: echo
            template: "hello ${steps.up}"
        """,
    )
    pipeline = load_pipeline(path)
    ctx = seen["ctx"]
    assert ctx.step == "greet"
    assert ctx.base_dir == tmp_path
    assert ctx.locate("template") == (7, 15)
    assert seen["refs"] == {"up"}
    assert pipeline.steps["greet"].description == "renders a template"
    assert (await pipeline.run(name="ana")).outputs["greet"] == "greet: hello ANA"

    path.write_text(path.read_text().replace('template: "hello ${steps.up}"', "tmpl: x"))
    with pytest.raises(SpecError, match=r"pipeline.yaml:6:5: steps.greet: missing 'template'"):
        load_pipeline(path)


async def test_kind_shorthand_key_selects_the_factory(tmp_path: Path) -> None:
    def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
        value = spec["constant"]

        async def const() -> Any:
            return value

        return StepBuild(fn=const)

    register_step_kind("constant", build)
    path = write(tmp_path, "name: k\nsteps:\n  c: {constant: 42}\n")
    assert (await load_pipeline(path).run()).outputs == {"c": 42}


async def test_executor_selected_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: exec
        executor: local
        executor_options: {max_threads: 2}
        inputs: {text: string}
        steps:
          n: {uses: ./steps.py:length}
        """,
    )
    pipeline = load_pipeline(path)
    assert (await pipeline.run(text="abcd")).outputs == {"n": 4}
    assert type(pipeline.executor).__name__ == "LocalExecutor"

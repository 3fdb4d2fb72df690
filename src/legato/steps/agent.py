"""The ``agent:`` step kind: a model that calls tools in a loop until it answers.

::

    steps:
      refund_amount:
        tool: true                           # only callable by agents, never scheduled by itself
        uses: ./support_tools.py:refund_amount

      answer:
        agent: fast                          # a name from legato.yaml (models or groups) or provider/model
        system: You are a support agent. Use the tools; never guess an order's state.
        prompt: "Customer ${inputs.customer} asks: ${inputs.question}"
        tools:
          - ./support_tools.py:lookup_order  # a Python function (package.module:fn or ./file.py:fn)
          - step:refund_amount               # a step of this pipeline marked tool: true
          - pipeline:./shipping.yaml         # another pipeline: its inputs are the arguments
          - mcp:time/get_current_time        # a tool of an MCP server declared in legato.yaml
        max_turns: 8                         # model calls (default 10)
        max_total_tokens: 20000              # optional budgets: tokens, USD, seconds
        max_cost: 0.05
        deadline: 60
        on_tool_error: return                # a failed tool call goes back to the model (or: raise)
        on_limit: fail                       # a run stopped by a limit fails the step (or: return)

The output is ``{text, outcome, turns, tool_calls, usage, cost, unpriced_calls,
per_turn}`` (see :meth:`legato.agents.AgentResult.to_dict`). ``${...}`` references in
``prompt`` and ``system`` make the step's dependencies, as for ``llm:``.

A ``step:NAME`` tool is the named step's function; its ``with:`` values are fixed
(no ``${...}`` references) and the model supplies the other parameters. A
``pipeline:PATH`` tool (relative to this file) runs as a nested run.

Each model turn and tool call is recorded in the step's journal
(:func:`legato.engine.step_journal`): a retry of the step, or a resumed durable run,
replays them instead of calling the model or the tool again. The model and the
tools are resolved when the pipeline is loaded, so a typo is a spec error with
file:line; MCP servers are started for each run of the step and stopped after it.
When the run is streamed (:func:`legato.engine.stream_tokens`), each model turn is
streamed and its text is published as the step's tokens; otherwise turns are plain calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legato.agents import Agent, AgentTool, FunctionTool
from legato.agents._tools import PipelineTool
from legato.errors import ConfigError, SpecError, SpecIssue
from legato.spec import BuildContext, StepBuild
from legato.spec._models import KIND_COMMON_KEYS
from legato.steps.llm import _probe, _text, check_guardrail, own_field_issues, step_model

__all__ = ["build"]

_PREFIXES = ("step:", "pipeline:", "mcp:")


class AgentStep(BaseModel):
    """The ``agent`` step's own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str | None = None
    model: str | None = None
    prompt: Any
    system: Any = None
    tools: list[str] = Field(default_factory=list)
    max_turns: int = Field(default=10, ge=1, le=1000)
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    deadline: float | None = Field(default=None, gt=0)
    on_tool_error: Literal["return", "raise"] = "return"
    on_limit: Literal["fail", "return"] = "fail"
    max_tool_concurrency: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    guardrail: str | None = None  # a registered guardrail (pii-mask, pii-redact, pii-block) around the model


def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    """Build an ``agent:`` step (the factory the spec loader calls)."""
    step = _validate(spec, ctx)
    name = step.agent or step.model
    if not name:
        raise SpecError([ctx.issue("an agent step needs 'agent: MODEL' (a name from legato.yaml or provider/model)")])
    if step.agent and step.model and step.agent != step.model:
        raise SpecError([ctx.issue("give the model once, as 'agent:' or 'model:'", "model")])
    check_guardrail(step.guardrail, ctx)
    _probe(name, ctx.config, ctx, "agent" if step.agent else "model")
    tools, servers = _tools(step, ctx)

    async def agent(prompt: Any, system: Any = None) -> Any:
        return await _run(name, ctx, step, tools, servers, prompt, system)

    agent.__name__ = agent.__qualname__ = f"agent_{ctx.step}"
    args: dict[str, Any] = {"prompt": step.prompt}
    if step.system is not None:
        args["system"] = step.system
    listed = ", ".join(step.tools) or "no tools"
    return StepBuild(
        fn=agent, args=args, depends_on=tuple(spec.get("depends_on") or ()), description=f"agent ({name}; {listed})"
    )


def _validate(spec: Mapping[str, Any], ctx: BuildContext) -> AgentStep:
    own = {k: v for k, v in spec.items() if k not in KIND_COMMON_KEYS}
    try:
        return AgentStep.model_validate(own)
    except ValidationError as exc:
        raise SpecError(own_field_issues(exc, ctx, AgentStep)) from exc


def _tools(step: AgentStep, ctx: BuildContext) -> tuple[list[AgentTool], dict[str, list[str]]]:
    """The step's tools, and the MCP tools it lists by server (connected at run time)."""
    tools: list[AgentTool] = []
    servers: dict[str, list[str]] = {}
    issues: list[SpecIssue] = []
    for i, ref in enumerate(step.tools):
        try:
            if ref.startswith("mcp:"):
                server, tool = _mcp_ref(ref, ctx, i)
                servers.setdefault(server, []).append(tool)
            else:
                tools.append(_tool(ref, ctx, i))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    if servers:
        from legato.agents._mcp import check_servers

        try:
            check_servers(ctx.config, servers)
        except ConfigError as exc:
            raise SpecError([ctx.issue(str(exc), "tools")]) from exc
    names = [t.name for t in tools] + [t for listed in servers.values() for t in listed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SpecError([ctx.issue(f"two tools are named {duplicate!r}", "tools")])
    return tools, servers


def _tool(ref: str, ctx: BuildContext, i: int) -> AgentTool:
    try:
        if ref.startswith("step:"):
            return _step_tool(ref.removeprefix("step:"), ctx, i)
        if ref.startswith("pipeline:"):
            return _pipeline_tool(ref.removeprefix("pipeline:"), ctx, i)
        fn = ctx.load_callable(ref, "tools", i)
        return fn if isinstance(fn, AgentTool) else FunctionTool(fn)
    except SpecError:
        raise  # already located
    except ValueError as exc:
        raise SpecError([ctx.issue(str(exc), "tools", i)]) from exc


def _step_tool(name: str, ctx: BuildContext, i: int) -> AgentTool:
    built = ctx.build_step(name, "tools", i)
    dynamic = [k for k, v in built.args.items() if ctx.references(v) or "${" in str(v)]
    if dynamic:
        raise SpecError(
            [ctx.issue(f"tool step {name!r}: {', '.join(dynamic)} must be fixed values (the model gives the rest)")]
        )
    description = built.description or None
    return FunctionTool(built.fn, name=name, description=description, fixed=built.args)


def _pipeline_tool(path: str, ctx: BuildContext, i: int) -> AgentTool:
    from legato.spec import load_pipeline

    target = ctx.base_dir / path
    if not target.is_file():
        raise SpecError([ctx.issue(f"no pipeline file {path!r} (looked in {ctx.base_dir})", "tools", i)])
    try:
        pipeline = load_pipeline(target, config=ctx.config)
    except SpecError as exc:
        first = exc.issues[0]
        where = f"{first.file}:{first.line}" if first.line else str(first.file)
        raise SpecError([ctx.issue(f"pipeline {path!r} is not valid: {where}: {first.message}", "tools", i)]) from exc
    return PipelineTool(pipeline)


_MCP_REF = re.compile(r"^mcp:([A-Za-z0-9_.-]+)/([A-Za-z0-9_-]{1,64})$")


def _mcp_ref(ref: str, ctx: BuildContext, i: int) -> tuple[str, str]:
    match = _MCP_REF.match(ref)
    if match is None:
        raise SpecError([ctx.issue(f"{ref!r} must look like 'mcp:SERVER/TOOL'", "tools", i)])
    return match.group(1), match.group(2)


async def _run(
    name: str,
    ctx: BuildContext,
    step: AgentStep,
    tools: list[AgentTool],
    servers: dict[str, list[str]],
    prompt: Any,
    system: Any,
) -> dict[str, Any]:
    from legato.agents._mcp import McpToolbox
    from legato.engine import step_journal, token_sink

    async with (
        step_model(name, ctx.config, step.guardrail) as model,
        McpToolbox.from_config(ctx.config, servers) as toolbox,
    ):
        agent = Agent(
            model,
            tools=[*tools, *toolbox.tools],
            system=None if system is None else _text(system),
            name=ctx.step,
            max_turns=step.max_turns,
            max_total_tokens=step.max_total_tokens,
            max_cost=step.max_cost,
            deadline=step.deadline,
            on_tool_error=step.on_tool_error,
            max_tool_concurrency=step.max_tool_concurrency,
            temperature=step.temperature,
            max_tokens=step.max_tokens,
        )
        result = await agent.run(_text(prompt), journal=step_journal(), on_text=token_sink())
    if step.on_limit == "fail":
        result.raise_for_outcome()
    return result.to_dict()

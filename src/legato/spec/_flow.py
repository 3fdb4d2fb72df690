"""The ``cycle:`` and ``switch:`` step kinds (control flow across steps).

::

    steps:
      refine:
        with: {topic: "${inputs.topic}"}
        cycle:
          max_iterations: 3                      # required: a cycle always has a bound
          until: "critique.score >= 8"           # over this iteration's step outputs
          steps:
            draft:
              uses: app:draft                    # reads ${inputs.topic}, ${inputs.previous}
              with: {topic: "${inputs.topic}", notes: "${inputs.previous}"}
            critique:
              uses: app:critique
              with: {text: "${steps.draft}"}
      route:
        switch: "${steps.refine.critique.kind}"
        cases: {bug: fix, feature: [plan, estimate]}
        otherwise: answer                      # when no case matches

The body of a cycle is a pipeline of its own: its inputs are the keys of the
cycle step's ``with:`` plus ``previous`` and ``iteration``; its steps reference
each other as ``${steps.NAME}``. See :class:`legato.engine.Cycle` and
:class:`legato.engine.Switch` for what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legato.config import LegatoConfig
from legato.errors import SpecError, SpecIssue
from legato.expressions import ExpressionError, closest
from legato.spec._kinds import BuildContext, StepBuild
from legato.spec._models import KIND_COMMON_KEYS, StepSpec

__all__ = ["build_cycle", "build_switch"]

_CYCLE_KEYS = KIND_COMMON_KEYS | {"cycle", "with"}
_SWITCH_KEYS = KIND_COMMON_KEYS | {"switch", "cases", "otherwise"}
_MAX_ITERATIONS = 10_000


class CycleSpec(BaseModel):
    """``cycle:``: the body's steps, run until ``until`` holds, at most ``max_iterations`` times."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_iterations: int = Field(ge=1, le=_MAX_ITERATIONS)
    until: str | None = None
    on_max_iterations: Literal["return", "fail"] = "return"
    steps: dict[str, StepSpec] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)


def build_cycle(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    from legato.engine import Cycle, InputDecl, Pipeline

    _unknown_keys(spec, ctx, _CYCLE_KEYS)
    raw = spec.get("cycle")
    if not isinstance(raw, Mapping):
        raise SpecError([ctx.issue("'cycle' must be a mapping with max_iterations, until and steps", "cycle")])
    if "max_iterations" not in raw:
        message = "a cycle needs max_iterations (its bound): a cycle without one would never end"
        raise SpecError([ctx.issue(message, "cycle")])
    body_spec = _validate(ctx, raw)
    given = spec.get("with") or {}
    if not isinstance(given, Mapping):
        raise SpecError([ctx.issue("'with' must be a mapping of the cycle's inputs", "with")])
    inputs = {str(k): InputDecl(name=str(k)) for k in given}
    for name in ("previous", "iteration"):
        inputs[name] = InputDecl(name=name, required=False)
    body = Pipeline(ctx.step, inputs=inputs)
    issues = _add_body_steps(body, ctx, raw, body_spec)
    for name, value in body_spec.outputs.items():
        try:
            body.add_output(name, value)
        except ExpressionError as exc:
            issues.append(ctx.issue(exc.issues[0].message, "cycle", "outputs", name))
    if issues:
        raise SpecError(issues)
    try:
        flow = Cycle(
            body,
            until=body_spec.until,
            max_iterations=body_spec.max_iterations,
            on_max_iterations=body_spec.on_max_iterations,
        )
    except ExpressionError as exc:
        raise SpecError([ctx.issue(exc.issues[0].message, "cycle", "until")]) from None
    _check_until(ctx, flow.until, set(body.steps) | set(inputs))
    description = f"cycle over {', '.join(body_spec.steps)} (at most {body_spec.max_iterations} times)"
    return StepBuild(fn=flow, args=dict(given), description=description)


def _check_until(ctx: BuildContext, until: Any, known: set[str]) -> None:
    """``until`` may read this iteration's steps (by name or ``steps.NAME``), the
    body's inputs, ``previous``, ``iteration`` and ``output``."""
    if until is None:
        return
    issues = []
    roots = known | {"steps", "inputs", "previous", "iteration", "output"}
    for name in until.names:
        if name not in roots:
            hint = closest(name, sorted(roots))
            message = (
                f"unknown name {name!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f" in {until.source!r}"
            )
            issues.append(ctx.issue(message, "cycle", "until"))
    for step in until.steps:
        if step not in known:
            hint = closest(step, sorted(known))
            message = (
                f"unknown step {step!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f" in {until.source!r}"
            )
            issues.append(ctx.issue(message, "cycle", "until"))
    if issues:
        raise SpecError(issues)


def _validate(ctx: BuildContext, raw: Mapping[str, Any]) -> CycleSpec:
    try:
        return CycleSpec.model_validate(raw)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}"
            elif err["type"] == "missing":
                message = f"missing required field {loc[-1]!r}"
                loc = loc[:-1]
            issues.append(ctx.issue(message, "cycle", *loc))
        raise SpecError(issues) from None


def _add_body_steps(body: Any, ctx: BuildContext, raw: Mapping[str, Any], spec: CycleSpec) -> list[SpecIssue]:
    """Build the body's steps with the loader, locating problems in the outer file."""
    from legato.spec._loader import _add_step, _Source, _stand_in

    src = _Source.nested(ctx.file, ctx.base_dir, check_secrets=ctx.check_secrets)
    prefix = f"steps.{ctx.step}.cycle."
    config = ctx.config if isinstance(ctx.config, LegatoConfig) else LegatoConfig()
    issues: list[SpecIssue] = []
    broken: list[str] = []
    for name, step in spec.steps.items():
        found = _add_step(body, src, raw, config, name, step)
        if found:
            issues.extend(found)
            broken.append(name)
    for name in broken:
        try:
            body.add_step(_stand_in, name=name)
        except (ValueError, SpecError):
            continue
    for issue in body.validate():
        path = tuple(issue.path.split(".")) if issue.path else ()
        if len(path) >= 2 and path[0] == "steps" and path[1] in broken:
            continue
        issues.append(src.issue(raw, path, issue.message))
    return [_prefixed(i, prefix) for i in issues]


def _prefixed(issue: SpecIssue, prefix: str) -> SpecIssue:
    path = f"{prefix}{issue.path}" if issue.path else prefix.rstrip(".")
    message = f"{prefix}{issue.message}" if issue.path and issue.message.startswith(issue.path) else issue.message
    return SpecIssue(message, file=issue.file, line=issue.line, column=issue.column, path=path)


def build_switch(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    from legato.engine import Switch

    _unknown_keys(spec, ctx, _SWITCH_KEYS)
    on = spec.get("switch")
    if not isinstance(on, str) or not on.strip():
        raise SpecError([ctx.issue("'switch' must be an expression, like \"${steps.classify.label}\"", "switch")])
    cases = spec.get("cases")
    if not isinstance(cases, Mapping) or not cases:
        raise SpecError([ctx.issue("a switch needs 'cases': a mapping of value to step name(s)", "cases")])
    try:
        flow = Switch(ctx.step, cases, spec.get("otherwise"), on=on)
    except ValueError as exc:
        raise SpecError([ctx.issue(str(exc), "cases")]) from None
    value = on if "${" in on else "${" + on + "}"
    return StepBuild(fn=flow, args={"value": value}, description=f"switch on {on}")


def _unknown_keys(spec: Mapping[str, Any], ctx: BuildContext, known: frozenset[str]) -> None:
    issues = [ctx.issue(f"unknown field {key!r}", key) for key in spec if key not in known]
    if issues:
        raise SpecError(issues)

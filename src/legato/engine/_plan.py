"""Compile step definitions into an executable graph, reporting every problem.

The plan is computed once per pipeline (and again after a step is added): edges,
argument bindings, topological levels. Problems are collected, not raised one at a
time, and each carries a dotted ``path`` (``steps.b.with.text``) that the YAML
loader turns into file:line:column.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from legato.engine._flow import Switch
from legato.engine._step import InputDecl, StepDef
from legato.errors import SpecIssue
from legato.expressions import Expression, Value, closest

__all__ = ["Bind", "CompiledStep", "Plan", "compile_plan"]

# argument binding kinds
STEP, INPUT, INPUT_OR_DEFAULT, VALUE, CARRY = range(5)

Bind = tuple[str, int, Any]  # (parameter, kind, payload)

SCOPE_ROOTS = frozenset({"inputs", "steps"})
LOOP_ROOTS = frozenset({"loop"})
UNTIL_ROOTS = frozenset({"output", "iteration", "previous"})


@dataclass(slots=True)
class CompiledStep:
    d: StepDef
    binds: tuple[Bind, ...]
    deps: frozenset[str]  # every step this one waits for
    hard_deps: frozenset[str]  # deps whose skip skips this step (not optional, not only in `when`)
    when_binds: tuple[Bind, ...] = ()
    dependents: list[str] = field(default_factory=list)
    level: int = 0
    fast: bool = False  # an async function with no retries, timeout, cache, map or loop
    branch: tuple[str, frozenset[str]] | None = None  # (switch step, the cases that run this step)

    def __post_init__(self) -> None:
        d = self.d
        self.fast = (
            d.is_async and d.retry is None and d.timeout is None and not d.cache and d.map is None and d.loop is None
        )


@dataclass(slots=True)
class Plan:
    steps: dict[str, CompiledStep]
    order: tuple[str, ...]
    inputs: dict[str, InputDecl]
    outputs: dict[str, Value]
    levels: list[list[str]]
    roots: tuple[str, ...] = ()  # steps without dependencies, in order
    dep_counts: dict[str, int] = field(default_factory=dict)  # step -> how many steps it waits for

    def __post_init__(self) -> None:
        self.roots = tuple(name for name in self.order if not self.steps[name].deps)
        self.dep_counts = {name: len(self.steps[name].deps) for name in self.order}


def compile_plan(
    steps: Mapping[str, StepDef],
    declared_inputs: Mapping[str, InputDecl] | None,
    outputs: Mapping[str, Value],
) -> tuple[Plan | None, list[SpecIssue]]:
    c = _Compiler(steps, declared_inputs)
    compiled = {name: c.step(name, d) for name, d in steps.items()}
    for out_name, value in outputs.items():
        _check_value(value, c.names, c.inputs, c.inferred, c.issues, f"outputs.{out_name}", False, c.need_input)
    _link_switches(compiled, c.issues)
    for name, cs in compiled.items():
        for dep in cs.deps:
            if dep in compiled:
                compiled[dep].dependents.append(name)
    order, cycle = _toposort(compiled)
    if cycle:
        hint = " (to repeat steps, put them in a cycle: step with max_iterations and until)"
        c.issues.append(SpecIssue(f"cycle: {' -> '.join(cycle)}{hint}", path=f"steps.{cycle[0]}"))
    if c.issues:
        return None, c.issues
    levels = _levels(compiled, order)
    return Plan(steps=compiled, order=tuple(order), inputs=c.inputs, outputs=dict(outputs), levels=levels), []


def _levels(compiled: dict[str, CompiledStep], order: list[str]) -> list[list[str]]:
    """Each step's level (one more than its deepest dependency), and the steps of each level."""
    levels: list[list[str]] = []
    for name in order:
        cs = compiled[name]
        cs.level = 1 + max((compiled[d].level for d in cs.deps), default=-1)
        if cs.level == len(levels):
            levels.append([])
        levels[cs.level].append(name)
    return levels


class _Compiler:
    """The state of one :func:`compile_plan`: the step names, the inputs (declared, or
    inferred from parameters when none are declared) and the issues found so far."""

    def __init__(self, steps: Mapping[str, StepDef], declared_inputs: Mapping[str, InputDecl] | None) -> None:
        self.issues: list[SpecIssue] = []
        self.names = set(steps)
        self.inputs: dict[str, InputDecl] = dict(declared_inputs) if declared_inputs is not None else {}
        self.inferred = declared_inputs is None

    def need_input(self, name: str, has_default: bool, default: Any, path: str, param: bool = False) -> bool:
        """Whether ``name`` is (or, inferring, becomes) an input; an issue when it cannot be."""
        inputs, names, issues = self.inputs, self.names, self.issues
        if name in inputs:
            return True
        if self.inferred and param and not has_default and closest(name, names, cutoff=0.85):
            message = (
                f"parameter {name!r} is bound to nothing (did you mean {closest(name, names, cutoff=0.85)!r}?): "
                "name a step, "
                "give it a default, or declare the pipeline's inputs"
            )
            issues.append(SpecIssue(message, path=path))
            return False
        if self.inferred:
            inputs[name] = InputDecl(name=name, required=not has_default, default=default)
            return True
        if param:
            message = (
                f"parameter {name!r} is not set: map it under 'with:' or declare an input or step named {name!r}"
                f"{_hint(name, [*inputs, *names])}"
            )
        else:
            message = f"unknown input {name!r}{_hint(name, inputs)}"
        issues.append(SpecIssue(message, path=path))
        return False

    def step(self, name: str, d: StepDef) -> CompiledStep:
        """One step compiled: its bindings and its dependencies (``soft`` ones only read)."""
        base = f"steps.{name}"
        deps: set[str] = set(d.depends_on)
        soft: set[str] = set()
        for dep in d.depends_on:
            if dep not in self.names:
                self.issues.append(
                    SpecIssue(f"unknown step {dep!r}{_hint(dep, self.names)}", path=f"{base}.depends_on")
                )
        binds = self._binds(name, d, deps, soft)
        when_binds = self._condition(name, d, deps, soft)
        self._loop_deps(name, d, deps)
        deps.discard(name)
        hard = deps - (soft - _hard_uses(d, self.names))
        return CompiledStep(
            d=d, binds=tuple(binds), deps=frozenset(deps), hard_deps=frozenset(hard), when_binds=tuple(when_binds)
        )

    def _binds(self, name: str, d: StepDef, deps: set[str], soft: set[str]) -> list[Bind]:
        """What each parameter (and each argument passed through ``**kwargs``) is bound to."""
        base, names, issues = f"steps.{name}", self.names, self.issues
        binds: list[Bind] = []
        for param in d.params:
            path = f"{base}.with.{param}"
            if param in d.args:
                self._value(name, d, param, d.args[param], path, binds, deps, soft)
            elif d.loop is not None and param == d.loop.carry:
                binds.append((param, CARRY, None))
            elif param in names:
                if param == name:
                    issues.append(SpecIssue(f"step {name!r} takes its own output as parameter {param!r}", path=base))
                    continue
                binds.append((param, STEP, param))
                deps.add(param)
                if param in d.optional:
                    soft.add(param)
            elif param in d.defaults:
                if self.inferred or param in self.inputs:
                    self.need_input(param, True, d.defaults[param], path)
                    binds.append((param, INPUT_OR_DEFAULT, d.defaults[param]))
            elif self.need_input(param, False, None, path, True):
                binds.append((param, INPUT, None))
        for param, value in d.args.items():
            if param not in d.params:  # passed through **kwargs
                self._value(name, d, param, value, f"{base}.with.{param}", binds, deps, soft)
        return binds

    def _value(
        self,
        name: str,
        d: StepDef,
        param: str,
        value: Value,
        path: str,
        binds: list[Bind],
        deps: set[str],
        soft: set[str],
    ) -> None:
        if name in value.steps:
            self.issues.append(SpecIssue(f"step {name!r} references its own output", path=path))
        _check_value(
            value, self.names, self.inputs, self.inferred, self.issues, path, d.loop is not None, self.need_input
        )
        binds.append((param, VALUE, value))
        deps.update(value.steps & self.names)
        if param in d.optional:
            soft.update(value.steps & self.names)

    def _condition(self, name: str, d: StepDef, deps: set[str], soft: set[str]) -> list[Bind]:
        """The steps ``when:`` reads (soft dependencies), and the bindings of a callable condition."""
        base = f"steps.{name}"
        if isinstance(d.when, Expression):
            when_steps = _expr_steps(
                d.when, self.names, self.inputs, self.inferred, self.issues, f"{base}.when", set(), self.need_input
            )
            if name in when_steps:
                self.issues.append(
                    SpecIssue(f"the condition of step {name!r} reads its own output", path=f"{base}.when")
                )
            deps.update(when_steps)
            soft.update(when_steps)
            return []
        if d.when is None:
            return []
        when_binds = _callable_binds(d.when, self.names, self.need_input, f"{base}.when")
        when_deps = {payload for _, kind, payload in when_binds if kind == STEP}
        deps.update(when_deps)
        soft.update(when_deps)
        return when_binds

    def _loop_deps(self, name: str, d: StepDef, deps: set[str]) -> None:
        """The steps a loop's ``until`` reads."""
        if d.loop is None:
            return
        if isinstance(d.loop.until, Expression):
            path = f"steps.{name}.loop.until"
            until_steps = _expr_steps(
                d.loop.until,
                self.names,
                self.inputs,
                self.inferred,
                self.issues,
                path,
                UNTIL_ROOTS | {name},
                self.need_input,
            )
            deps.update(until_steps - {name})
        else:
            deps.update(p for p in _params(d.loop.until) if p in self.names and p != name)


def _link_switches(compiled: dict[str, CompiledStep], issues: list[SpecIssue]) -> None:
    """Make every step a switch's cases name depend on the switch, and record which
    of its cases run it."""
    for name, cs in list(compiled.items()):
        switch = cs.d.fn
        if not isinstance(switch, Switch):
            continue
        cases: dict[str, set[str]] = {}
        for case, targets in switch.branches().items():
            for target in targets:
                path = f"steps.{name}.cases.{case}"
                if target not in compiled:
                    issues.append(
                        SpecIssue(f"unknown step {target!r}{_hint(target, compiled)} in case {case!r}", path=path)
                    )
                elif target == name:
                    issues.append(SpecIssue(f"switch {name!r} names itself in case {case!r}", path=path))
                else:
                    cases.setdefault(target, set()).add(case)
        for target, selected in cases.items():
            branch = compiled[target]
            if branch.branch is not None:
                issues.append(
                    SpecIssue(
                        f"step {target!r} is a case of switches {branch.branch[0]!r} and {name!r}",
                        path=f"steps.{name}",
                    )
                )
                continue
            branch.branch = (name, frozenset(selected))
            branch.deps = branch.deps | {name}
            branch.hard_deps = branch.hard_deps | {name}


def _hard_uses(d: StepDef, names: set[str]) -> set[str]:
    """Steps used by a non-optional parameter (so a `when` use does not soften them)."""
    hard: set[str] = set(d.depends_on)
    for param in (*d.params, *(a for a in d.args if a not in d.params)):
        if param in d.optional:
            continue
        if param in d.args:
            hard.update(d.args[param].steps & names)
        elif param in names:
            hard.add(param)
    return hard


def _check_value(
    value: Value,
    names: set[str],
    inputs: dict[str, InputDecl],
    inferred: bool,
    issues: list[SpecIssue],
    path: str,
    loop: bool,
    need: Callable[[str, bool, Any, str], bool],
) -> None:
    for expr in value.expressions:
        _expr_steps(expr, names, inputs, inferred, issues, path, LOOP_ROOTS if loop else set(), need, strict_roots=True)


def _expr_steps(
    expr: Expression,
    names: set[str],
    inputs: dict[str, InputDecl],
    inferred: bool,
    issues: list[SpecIssue],
    path: str,
    extra: set[str] | frozenset[str],
    need: Callable[[str, bool, Any, str], bool],
    strict_roots: bool = False,
) -> set[str]:
    """Check the names an expression reads; return the steps it depends on.

    In ``${...}`` values only the roots ``inputs``/``steps`` (and ``loop`` in loops)
    exist; conditions may also name steps and inputs directly.
    """
    found: set[str] = set()
    for step in expr.steps:
        if step in names:
            found.add(step)
        else:
            issues.append(SpecIssue(f"unknown step {step!r}{_hint(step, names)} in {expr.source!r}", path=path))
    for inp in expr.fields("inputs"):
        need(inp, False, None, path)
    for name in expr.names:
        if name in SCOPE_ROOTS or name in extra:
            continue
        if not strict_roots and name in names:
            found.add(name)
        elif not strict_roots and name in inputs:
            continue
        else:
            known = sorted(SCOPE_ROOTS | set(extra) | (set() if strict_roots else names | set(inputs)))
            issues.append(SpecIssue(f"unknown name {name!r}{_hint(name, known)} in {expr.source!r}", path=path))
    return found


def _params(fn: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _callable_binds(
    fn: Callable[..., Any], names: set[str], need: Callable[[str, bool, Any, str], bool], path: str
) -> list[Bind]:
    binds: list[Bind] = []
    for param in _params(fn):
        if param in names:
            binds.append((param, STEP, param))
        elif need(param, False, None, path):
            binds.append((param, INPUT, None))
    return binds


def _toposort(steps: dict[str, CompiledStep]) -> tuple[list[str], list[str]]:
    remaining = {name: len([d for d in cs.deps if d in steps]) for name, cs in steps.items()}
    ready = [name for name, n in remaining.items() if n == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for dep in steps[name].dependents:
            remaining[dep] -= 1
            if remaining[dep] == 0:
                ready.append(dep)
    if len(order) == len(steps):
        return order, []
    return order, _find_cycle({n for n in steps if n not in order}, steps)


def _find_cycle(nodes: set[str], steps: dict[str, CompiledStep]) -> list[str]:
    for start in sorted(nodes):
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            nxt = sorted(d for d in steps[node].deps if d in nodes)
            if not nxt:
                break
            node = nxt[0]
        else:
            cycle = path[seen[node] :]
            # report in execution order: a -> b means b needs a
            cycle.reverse()
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            return [*cycle, cycle[0]]
    return sorted(nodes)


def _hint(name: str, candidates: Any) -> str:
    best = closest(name, candidates)
    return f" (did you mean {best!r}?)" if best else ""
